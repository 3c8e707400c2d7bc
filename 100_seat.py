"""Task 13: the seat server on PORT (default 1245); the app itself lives in seats.py.

It waits for Redis first, since starting (or joining) the sale of 50 seats needs it.
"""

import contextlib
import os
import signal

# A Ctrl-C or SIGTERM while the modules below load stops the server at once, quietly and
# with status 0, as a stop later does (web.serve). Nothing needs cleaning up yet, and an
# exception raised inside the import machinery could be swallowed: leave at once.
for _signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_signum, lambda signum, frame: os._exit(0))

import common  # noqa: E402
from queuing import seats, web  # noqa: E402


def main() -> None:
    web.stop_on_signals()
    with contextlib.suppress(KeyboardInterrupt):  # a stop before serving; exit hooks run
        client = web.web_client()
        common.wait_until_connected(client)
        web.serve(seats.create_app(client))


if __name__ == "__main__":
    common.run(main)
