"""Task 13: the seat server on PORT (default 1245); the app itself lives in seats.py.

It waits for Redis first, since starting (or joining) the sale of 50 seats needs it.
"""

import common
import seats
import web


def main() -> None:
    client = web.web_client()
    common.wait_until_connected(client)
    web.serve(seats.create_app(client))


if __name__ == "__main__":
    common.run(main)
