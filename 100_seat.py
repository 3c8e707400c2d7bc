"""Task 13: the seat server on PORT (default 1245); the app itself lives in seats.py.

It waits for Redis first, since starting (or joining) the sale of 50 seats needs it.
"""

from queuing import stopping

# A Ctrl-C or SIGTERM while the modules below load stops the server at once, quietly and
# with status 0, as a stop later does (web.serve).
stopping.exit_at_once()

# isort: split
import contextlib  # noqa: E402

import common  # noqa: E402
from queuing import connection, seats, web  # noqa: E402


def main() -> None:
    at = web.address()  # a bad HOST or PORT stops it now, not once Redis is up
    stopping.interrupt_on_signals()
    with contextlib.suppress(KeyboardInterrupt):  # a stop before serving; exit hooks run
        client = connection.server_client()
        common.wait_until_connected(client)
        web.serve(seats.create_app(client), at)


if __name__ == "__main__":
    common.run(main)
