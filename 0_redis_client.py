"""Task 1: connect to Redis and say whether it worked.

With no server it prints the not-connected line and keeps trying, waiting a little
longer each time, as node_redis does; it prints the connected line as soon as a
server answers, then exits. Ctrl-C stops it at any moment.
"""

import common


def main() -> None:
    common.wait_until_connected(common.connect())


if __name__ == "__main__":
    common.run(main)
