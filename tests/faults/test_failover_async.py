"""Failover under an asyncio client (connection.connect_async, as 2_redis_op_async.py has):
after ``SENTINEL FAILOVER`` the old master goes on taking writes on the connections open
to it for 10-15 s, then throws them away; the client must leave it within about a second."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from queuing import connection
from queuing.local_redis import SentinelRig

pytestmark = pytest.mark.redis_server

# How soon after the sentinels name the new master the client's writes land there
# (its pool asks them at most every sentinel.MASTER_CHECK_SECONDS).
SWITCH_BOUND_SECONDS = 2.0
# Writes that follow the first one on the new master: every one must be there too.
WRITES_AFTER = 20


def open_ports(client: redis.asyncio.Redis) -> list[int]:
    """The ports of the idle connections ``client``'s pool holds open."""
    return [conn.port for conn in client.connection_pool._available_connections
            if conn.is_connected]


async def write_until_on(client: redis.asyncio.Redis, port: int, bound: float) -> float:
    """Seconds until a write of ``client`` is on the server of ``port``; every write is
    checked there at once (each check paces the next write). Fails after ``bound``."""
    direct = redis.asyncio.Redis(port=port, socket_timeout=2)
    started = time.monotonic()
    number = 0
    try:
        while time.monotonic() < started + bound:
            number += 1
            try:
                await client.rpush("written", number)
            except redis.RedisError as error:
                assert connection.is_not_connected(error), error
                continue
            if await direct.lpos("written", number) is not None:
                return time.monotonic() - started
        pytest.fail(f"no write on the new master {bound}s after the switch ({number} tried)")
    finally:
        await direct.aclose()


def test_an_async_client_writes_to_the_new_master_soon_after_the_switch(sentinel_rig: SentinelRig):
    async def scenario() -> None:
        client = connection.connect_async(sentinel_rig.url)
        try:
            await client.set("before", 1)
            old = sentinel_rig.master_port()
            assert open_ports(client) == [old]  # a connection already open to the old master
            new = await asyncio.to_thread(sentinel_rig.failover)
            assert new != old
            await write_until_on(client, new, SWITCH_BOUND_SECONDS)
            for number in range(WRITES_AFTER):
                await client.set(f"after-{number}", number)
            direct = redis.Redis(port=new)
            assert direct.mget([f"after-{n}" for n in range(WRITES_AFTER)]) == [
                str(n).encode() for n in range(WRITES_AFTER)]
            direct.close()
        finally:
            await client.aclose()

    asyncio.run(scenario())
