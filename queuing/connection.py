"""The Redis clients, made from ``REDIS_URL``, and waiting for the server as node_redis does.

Nothing here connects at import time: a client is made when a script asks for one, and
redis-py only opens a socket on the first command.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
import redis.asyncio

from queuing import settings
from queuing.console import log
from queuing.settings import REDIS_URL_ENV, InvalidRedisURL
from queuing.urls import check_redis_url, raise_refused_setting

CONNECTED = "Redis client connected to the server"
NOT_CONNECTED = "Redis client not connected to the server: {error}"

# node_redis waits about 0.2 s before its first reconnection and 1.7 times longer each time.
FIRST_RETRY_DELAY = 0.2
RETRY_FACTOR = 1.7
MAX_RETRY_DELAY = 5.0


def connect(url: str | None = None, **options) -> redis.Redis:
    """A client for ``url`` (default: ``REDIS_URL``) that answers with str, not bytes."""
    return _from_url(redis.Redis, url, options)


def connect_async(url: str | None = None, **options) -> redis.asyncio.Redis:
    """The asyncio flavour of :func:`connect`."""
    return _from_url(redis.asyncio.Redis, url, options)


def _from_url(client_class, url: str | None, options: dict):
    url = settings.redis_url() if url is None else url
    check_redis_url(url)
    options.setdefault("decode_responses", True)
    try:
        return client_class.from_url(url, **options)
    except ValueError:
        raise InvalidRedisURL(f"{REDIS_URL_ENV} is not a usable Redis URL") from None


def retry_delays() -> Iterator[float]:
    """Growing waits between connection attempts, as node_redis does, capped."""
    delay = FIRST_RETRY_DELAY
    while True:
        yield delay
        delay = min(delay * RETRY_FACTOR, MAX_RETRY_DELAY)


def not_connected_line(error: BaseException) -> str:
    return NOT_CONNECTED.format(error=error)


def wait_until_connected(client: redis.Redis | redis.client.PubSub,
                         check: Callable[[], object] | None = None,
                         sleep: Callable[[float], None] = time.sleep,
                         quiet: bool = False) -> None:
    """Run ``check`` (default: the client's PING) until the server answers, logging each
    failure, then log the connected line (node_redis logs it again on every reconnection).

    ``quiet``: log the connected line only after a failure, for the scripts whose course
    output has none (the job creators and processors).
    """
    failed = False
    for delay in retry_delays():
        try:
            (check or client.ping)()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log(not_connected_line(error))
            failed = True
            sleep(delay)
        except redis.ResponseError as error:
            raise_refused_setting(error)
        else:
            if failed or not quiet:
                log(CONNECTED)
            return


def check_server_accepts(client: redis.Redis) -> None:
    """One PING, for a server process that starts whether Redis is up or not (it answers
    503 until it is): a ConfigError if the server refuses a setting of REDIS_URL."""
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError):
        pass
    except redis.ResponseError as error:
        raise_refused_setting(error)


async def wait_until_connected_async(client: redis.asyncio.Redis) -> None:
    """:func:`wait_until_connected` for redis.asyncio clients."""
    for delay in retry_delays():
        try:
            await client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log(not_connected_line(error))
            await asyncio.sleep(delay)
        except redis.ResponseError as error:
            raise_refused_setting(error)
        else:
            log(CONNECTED)
            return


def through_outages(connection: redis.Redis, call: Callable[..., Any], *args: Any,
                    **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``; while Redis cannot be reached, print the course's
    not-connected line, wait for it (wait_until_connected) and call again. Only
    for calls that can safely run twice."""
    while True:
        try:
            return call(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log(not_connected_line(error))
            wait_until_connected(connection)
