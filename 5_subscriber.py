"""Task 5, terminal 1: print every message on the channel until KILL_SERVER.

Start it before 5_publisher.py: pub/sub delivers only to those listening at the time.
"""

import redis

import common

CHANNEL = "holberton school channel"
KILL_MESSAGE = "KILL_SERVER"
POLL_SECONDS = 1.0


def subscribe(pubsub: redis.client.PubSub) -> None:
    """Subscribe and wait for the server's confirmation, so no message sent after it is missed."""
    pubsub.subscribe(CHANNEL)
    reply = None
    while reply is None or reply["type"] != "subscribe":
        reply = pubsub.get_message(timeout=POLL_SECONDS)


def listen(pubsub: redis.client.PubSub) -> None:
    """Print each message; on KILL_SERVER print it too, unsubscribe and return.

    If the server goes away, wait for it as at start; redis-py subscribes again on
    reconnection (messages sent while it was away are gone: pub/sub keeps nothing).
    """
    while True:
        try:
            message = pubsub.get_message(timeout=POLL_SECONDS)
        except (redis.ConnectionError, redis.TimeoutError):
            common.wait_until_connected(pubsub, check=pubsub.ping)
            continue
        if message is None or message["type"] != "message":
            continue
        common.log(message["data"])
        if message["data"] == KILL_MESSAGE:
            pubsub.unsubscribe(CHANNEL)
            return


def main() -> None:
    client = common.connect()
    with client.pubsub() as pubsub:
        common.wait_until_connected(client, check=lambda: subscribe(pubsub))
        listen(pubsub)


if __name__ == "__main__":
    common.run(main)
