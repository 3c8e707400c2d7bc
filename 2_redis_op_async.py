"""Task 3: the same operations as task 2, with redis.asyncio and async/await."""

import asyncio

import redis.asyncio

import common


async def set_new_school(client: redis.asyncio.Redis, school_name: str, value: str) -> None:
    """Set ``school_name`` to ``value`` and confirm it as ``redis.print`` does."""
    common.redis_print(await client.set(school_name, value))


async def display_school_value(client: redis.asyncio.Redis, school_name: str) -> None:
    """Print the value stored under ``school_name`` (``None`` when there is none)."""
    common.log(await client.get(school_name))


async def amain() -> None:
    client = common.connect_async()
    try:
        await common.wait_until_connected_async(client)
        await display_school_value(client, "Holberton")
        await set_new_school(client, "HolbertonSanFrancisco", "100")
        await display_school_value(client, "HolbertonSanFrancisco")
    finally:
        await client.aclose()


def main() -> None:
    asyncio.run(amain())


if __name__ == "__main__":
    common.run(main)
