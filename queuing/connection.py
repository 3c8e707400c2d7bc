"""The Redis clients, made from ``REDIS_URL``, and waiting for the server as node_redis does.

One factory per kind of client, and nothing else in the project makes one:

- :func:`connect`: the scripts' client, answering str;
- :func:`connect_async`: the same for redis.asyncio;
- :func:`rq_client`: bytes replies, as RQ needs (``decode_responses=True`` breaks RQ);
- :func:`server_client`: the web servers' pooled client, which fails fast on a dead Redis;
- :func:`seat_worker_client`: the seat server's RQ worker thread's.

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
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

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

# The servers' client: how long it waits for an answer; its connections, and how long a
# request waits for one when all are in use: longer than a command can hold one (3 tries
# of SERVER_SOCKET_TIMEOUT), so only a Redis that does not answer makes a request wait.
SERVER_SOCKET_TIMEOUT = 5.0
POOL_SIZE = 100
POOL_WAIT_SECONDS = 20
# The seat worker's: RQ raises a client's socket timeout below worker_ttl - 5 = 415 s to
# that anyway.
SEAT_WORKER_SOCKET_TIMEOUT = 420


def connect(url: str | None = None, **options) -> redis.Redis:
    """A client for ``url`` (default: ``REDIS_URL``) that answers with str, not bytes."""
    return _from_url(redis.Redis, url, options)


def connect_async(url: str | None = None, **options) -> redis.asyncio.Redis:
    """The asyncio flavour of :func:`connect`."""
    return _from_url(redis.asyncio.Redis, url, options)


def rq_client(url: str | None = None, **options) -> redis.Redis:
    """A client for RQ (default: ``REDIS_URL``): RQ needs bytes replies, not str."""
    return connect(url, decode_responses=False, **options)


def server_client(url: str | None = None, decode_responses: bool = True,
                  socket_timeout: float = SERVER_SOCKET_TIMEOUT) -> redis.Redis:
    """The web servers' client: it gives up on a dead Redis within a fraction of a second,
    not 3 s, so a request gets its 503 at once (redis-py 8 retries 10 times by default).

    Its pool waits for a free connection (up to POOL_WAIT_SECONDS) when all POOL_SIZE are
    in use: redis-py's default pool raises at once then, a ConnectionError that would tell
    a client "Redis is not reachable" while Redis is up (the threaded development server
    has a thread per request, however many come)."""
    url = _checked(url)
    try:
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=POOL_WAIT_SECONDS,
            decode_responses=decode_responses, socket_connect_timeout=2,
            socket_timeout=socket_timeout, retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), 2))
    except ValueError:
        raise InvalidRedisURL(f"{REDIS_URL_ENV} is not a usable Redis URL") from None
    client = redis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


def seat_worker_client(url: str | None = None) -> redis.Redis:
    """The seat server's worker thread's: bytes (RQ) with RQ's own socket timeout."""
    return rq_client(url, socket_timeout=SEAT_WORKER_SOCKET_TIMEOUT, socket_connect_timeout=2)


def socket_timeout(client: redis.Redis) -> float:
    """The seconds ``client`` waits for an answer before it gives up (or retries)."""
    return client.connection_pool.connection_kwargs.get("socket_timeout") or SERVER_SOCKET_TIMEOUT


def text(value: str | bytes) -> str:
    """A reply as str, whether the client decodes replies (str) or not (bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def _checked(url: str | None) -> str:
    url = settings.redis_url() if url is None else url
    check_redis_url(url)
    return url


def _from_url(client_class, url: str | None, options: dict):
    url = _checked(url)
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
