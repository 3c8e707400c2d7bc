"""Task 5, terminal 2: publish the course's four messages, 100 ms apart, then exit."""

import time

import redis

import common

CHANNEL = "holberton school channel"
MESSAGES = [
    ("Holberton Student #1 starts course", 100),
    ("Holberton Student #2 starts course", 200),
    ("KILL_SERVER", 300),
    ("Holberton Student #3 starts course", 400),
]


def publish_message(client: redis.Redis, message: str, time_ms: int,
                    since: float | None = None) -> None:
    """Wait ``time_ms`` (counted from ``since``, a time.monotonic() value, or from now),
    then announce the message and publish it.

    The course calls publishMessage four times at once, each with its own setTimeout;
    giving every call the same ``since`` keeps that timing: 100, 200, 300 and 400 ms.
    """
    start = time.monotonic() if since is None else since
    time.sleep(max(0.0, start + time_ms / 1000 - time.monotonic()))
    common.log(f"About to send {message}")
    client.publish(CHANNEL, message)


def main() -> None:
    client = common.connect()
    common.wait_until_connected(client)
    start = time.monotonic()
    for message, time_ms in MESSAGES:
        publish_message(client, message, time_ms, since=start)


if __name__ == "__main__":
    common.run(main)
