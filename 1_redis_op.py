"""Task 2: basic operations (SET with a confirmation, GET)."""

import redis

import common


def set_new_school(client: redis.Redis, school_name: str, value: str) -> None:
    """Set ``school_name`` to ``value`` and confirm it as ``redis.print`` does."""
    common.redis_print(client.set(school_name, value))


def display_school_value(client: redis.Redis, school_name: str) -> None:
    """Print the value stored under ``school_name`` (``None`` when there is none)."""
    common.log(client.get(school_name))


def main() -> None:
    client = common.connect()
    common.wait_until_connected(client)
    display_school_value(client, "Holberton")
    set_new_school(client, "HolbertonSanFrancisco", "100")
    display_school_value(client, "HolbertonSanFrancisco")


if __name__ == "__main__":
    common.run(main)
