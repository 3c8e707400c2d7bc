"""Task 12: the stock server on PORT (default 1245); the app itself lives in stock.py."""

from queuing import stopping

# A Ctrl-C or SIGTERM while the modules below load stops the server at once, quietly and
# with status 0, as a stop later does (web.serve).
stopping.exit_at_once()

# isort: split
import common  # noqa: E402
from queuing import stock, web  # noqa: E402


def main() -> None:
    at = web.address()  # a bad HOST or PORT stops it now, before it touches Redis
    web.serve(stock.create_app(), at)


if __name__ == "__main__":
    common.run(main)
