"""Task 12: the stock server on PORT (default 1245); the app itself lives in stock.py."""

import os
import signal

# A Ctrl-C or SIGTERM while the modules below load stops the server at once, quietly and
# with status 0, as a stop later does (web.serve). Nothing needs cleaning up yet, and an
# exception raised inside the import machinery could be swallowed: leave at once.
for _signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_signum, lambda signum, frame: os._exit(0))

import common  # noqa: E402
from queuing import stock, web  # noqa: E402


def main() -> None:
    web.serve(stock.create_app())


if __name__ == "__main__":
    common.run(main)
