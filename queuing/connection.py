"""The Redis clients, made from ``REDIS_URL``, and waiting for the server as node_redis does.

One factory per kind of client, and nothing else in the project makes one:

- :func:`connect`: the scripts' client, answering str;
- :func:`connect_async`: the same for redis.asyncio;
- :func:`rq_client`: bytes replies, as RQ needs (``decode_responses=True`` breaks RQ);
- :func:`server_client`: the web servers' pooled client, which fails fast on a dead Redis;
- :func:`seat_worker_client`: the seat server's RQ worker thread's.

Each takes a direct URL (``redis://``, ``rediss://``, ``unix://``) or a Sentinel one
(``redis+sentinel://``, ``rediss+sentinel://``): then the client follows the master the
sentinels name (sentinel.py). A failover shows as "not connected": the error replies of a
server that is not the master right now reach callers as ``FailoverInProgress``, a
``redis.ConnectionError`` (failover_errors.py), so every ``except (redis.ConnectionError,
redis.TimeoutError)`` prints the course's not-connected line (or answers 503) and tries
again.

Nothing here connects at import time: a client is made when a script asks for one, and
redis-py only opens a socket on the first command.
"""

from __future__ import annotations

import asyncio
import socket
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.connection import parse_url
from redis.retry import Retry

from queuing import sentinel, settings
from queuing.console import log
from queuing.failover_errors import FailoverInProgress, failover_parser
from queuing.failover_errors import is_not_connected as is_not_connected  # for callers
from queuing.settings import REDIS_URL_ENV, InvalidRedisURL
from queuing.urls import (
    check_redis_url,
    is_sentinel_url,
    parse_sentinel_url,
    raise_refused_setting,
)

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

# Keepalive on every TCP connection: a master that dies without a word (power, network)
# leaves a worker blocked in RQ's dequeue for its whole socket timeout (~7 minutes); TCP
# probes after KEEPALIVE_IDLE seconds of silence, every KEEPALIVE_INTERVAL, find it gone
# after KEEPALIVE_PROBES unanswered ones (~8 s). A URL's socket_keepalive=false wins.
KEEPALIVE_IDLE = 5
KEEPALIVE_INTERVAL = 1
KEEPALIVE_PROBES = 3
# The clients that sit idle (workers): a connection unused this long is PINGed before its
# next command, so a dead one is replaced before it fails a command. A URL's
# health_check_interval wins.
HEALTH_CHECK_SECONDS = 10


def keepalive_options() -> dict[int, int]:
    """TCP keepalive timings (socket option: value), for the platforms that have them."""
    wanted = {"TCP_KEEPIDLE": KEEPALIVE_IDLE, "TCP_KEEPINTVL": KEEPALIVE_INTERVAL,
              "TCP_KEEPCNT": KEEPALIVE_PROBES}
    return {getattr(socket, name): value for name, value in wanted.items()
            if hasattr(socket, name)}


def connect(url: str | None = None, **options) -> redis.Redis:
    """A client for ``url`` (default: ``REDIS_URL``) that answers with str, not bytes."""
    return _from_url(redis.Redis, url, options)


def connect_async(url: str | None = None, **options) -> redis.asyncio.Redis:
    """The asyncio flavour of :func:`connect`."""
    return _from_url(redis.asyncio.Redis, url, options)


def rq_client(url: str | None = None, **options) -> redis.Redis:
    """A client for RQ (default: ``REDIS_URL``): RQ needs bytes replies, not str. Workers
    sit idle on it: idle connections are checked (HEALTH_CHECK_SECONDS)."""
    options.setdefault("health_check_interval", HEALTH_CHECK_SECONDS)
    return connect(url, decode_responses=False, **options)


def server_client(url: str | None = None, decode_responses: bool = True,
                  socket_timeout: float = SERVER_SOCKET_TIMEOUT) -> redis.Redis:
    """The web servers' client: it gives up on a dead Redis within a fraction of a second,
    not 3 s, so a request gets its 503 at once (redis-py 8 retries 10 times by default).

    Its pool waits for a free connection (up to POOL_WAIT_SECONDS) when all POOL_SIZE are
    in use: redis-py's default pool raises at once then, a ConnectionError that would tell
    a client "Redis is not reachable" while Redis is up (the threaded development server
    has a thread per request, however many come)."""
    return _from_url(redis.Redis, url, {
        "max_connections": POOL_SIZE, "timeout": POOL_WAIT_SECONDS,
        "decode_responses": decode_responses, "socket_connect_timeout": 2,
        "socket_timeout": socket_timeout,
        "retry": Retry(ExponentialBackoff(cap=0.1, base=0.02), 2)}, blocking_pool=True)


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


def _from_url(client_class: type, url: str | None, options: dict[str, Any],
              blocking_pool: bool = False) -> Any:
    """The one place a URL becomes a client: ``options`` are the factory's, and the URL's
    own options win over them, as in redis-py's from_url. ``blocking_pool``: a pool that
    waits for a free connection (BlockingConnectionPool), for the servers."""
    url = _checked(url)
    is_async = issubclass(client_class, redis.asyncio.Redis)
    options.setdefault("decode_responses", True)
    if is_sentinel_url(url):
        return sentinel.master_for(client_class, parse_sentinel_url(url), options,
                                   blocking_pool, keepalive_options())
    try:
        from_the_url = parse_url(url)
    except ValueError:
        raise InvalidRedisURL(f"{REDIS_URL_ENV} is not a usable Redis URL") from None
    protocol = from_the_url.get("protocol", options.get("protocol", 2))
    defaults: dict[str, Any] = {"parser_class": failover_parser(protocol, is_async)}
    if not url.startswith("unix://"):
        defaults |= {"socket_keepalive": True, "socket_keepalive_options": keepalive_options()}
    options = {**defaults, **options}
    try:
        if not blocking_pool:
            return client_class.from_url(url, **options)
        pool = redis.BlockingConnectionPool.from_url(url, **options)
    except ValueError:
        raise InvalidRedisURL(f"{REDIS_URL_ENV} is not a usable Redis URL") from None
    client = client_class(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


# What RQ's command line gets (queuing.rq_settings): what the project's workers have.
_RQ_CLI_OPTIONS = {"health_check_interval": HEALTH_CHECK_SECONDS, "decode_responses": False}


def rq_config(env: settings.Env | None = None) -> dict[str, Any]:
    """RQ's settings for ``REDIS_URL`` (its command line's ``-c`` module):
    ``{"REDIS_URL": url}`` for a direct URL, or ``{"SENTINEL": {...}}`` with the keys RQ 3's
    get_redis_from_config reads (rq/cli/helpers.py), for a Sentinel one RQ cannot read.
    ``env``: where REDIS_URL is read (default: the environment, through settings.py)."""
    url = settings.redis_url() if env is None else settings.redis_url(env)
    check_redis_url(url)
    if not is_sentinel_url(url):
        return {"REDIS_URL": url}
    where = parse_sentinel_url(url)
    master, sentinels = sentinel.sentinel_settings(where, dict(_RQ_CLI_OPTIONS),
                                                   keepalive=keepalive_options())
    return {"SENTINEL": {
        "INSTANCES": where.sentinels,
        "MASTER_NAME": where.service,
        "DB": where.db,
        "USERNAME": where.username,
        "PASSWORD": where.password,
        "SOCKET_TIMEOUT": master.get("socket_timeout"),
        "SSL": where.tls,
        "CONNECTION_KWARGS": master,
        "SENTINEL_KWARGS": sentinels,
    }}


def retry_delays() -> Iterator[float]:
    """Growing waits between connection attempts, as node_redis does, capped."""
    delay = FIRST_RETRY_DELAY
    while True:
        yield delay
        delay = min(delay * RETRY_FACTOR, MAX_RETRY_DELAY)


def not_connected_line(error: BaseException) -> str:
    return NOT_CONNECTED.format(error=error)


REPLICA = "the server answers as a replica, not the master (a failover in progress?)"
AT_A_SENTINEL = (f"{REDIS_URL_ENV} points at a Redis Sentinel, not a Redis server: name the "
                 "master through it, as in redis+sentinel://host:26379/mymaster")
AT_A_CLUSTER = (f"{REDIS_URL_ENV} points at a Redis Cluster node; RQ and this project need a "
                "single master or Sentinel (redis+sentinel://...)")


def _is_master(reply: Any) -> bool:
    kind = text(reply[0])
    if kind == "sentinel":
        raise settings.ConfigError(AT_A_SENTINEL)
    return kind == "master"


def _cannot_ask_role(error: redis.ResponseError) -> bool:
    # An ACL user without ROLE (it is an @admin command), or a server older than ROLE:
    # PING is all that can be asked.
    return (isinstance(error, redis.exceptions.NoPermissionError)
            or str(error).lower().startswith("unknown command"))


def ask_master(client: Any) -> None:
    """The connected check: ROLE, for a client that can send it; a replica (a demoted
    master, a URL naming a replica) answers PING too, but takes no writes. Anything else
    (a PubSub in subscribed mode) is asked PING."""
    if not isinstance(client, redis.Redis):
        client.ping()
        return
    try:
        reply = client.role()
    except redis.ResponseError as error:
        if not _cannot_ask_role(error):
            raise
        client.ping()
        return
    if not _is_master(reply):
        # The idle connections go: with a Sentinel URL the next one asks the sentinels
        # again (right after a switch they may still name the old master for a moment).
        client.connection_pool.disconnect(inuse_connections=False)
        raise FailoverInProgress(REPLICA)


_checked_for_cluster: weakref.WeakSet = weakref.WeakSet()


def refuse_cluster(client: Any) -> None:
    """ConfigError if ``client``'s server is a Redis Cluster node (RQ's and the project's
    scripts and transactions take keys of several slots). Asked once per client, at its
    first check (INFO cluster: one round trip); a server that refuses INFO is taken as it is."""
    if not isinstance(client, redis.Redis) or client in _checked_for_cluster:
        return
    try:
        info = client.info("cluster")
    except redis.ResponseError:
        info = {}
    _checked_for_cluster.add(client)
    if str(info.get("cluster_enabled", 0)) == "1":
        raise settings.ConfigError(AT_A_CLUSTER)


async def _refuse_cluster_async(client: Any) -> None:
    if not isinstance(client, redis.asyncio.Redis) or client in _checked_for_cluster:
        return
    try:
        info = await client.info("cluster")
    except redis.ResponseError:
        info = {}
    _checked_for_cluster.add(client)
    if str(info.get("cluster_enabled", 0)) == "1":
        raise settings.ConfigError(AT_A_CLUSTER)


async def _ask_master_async(client: Any) -> None:
    if not isinstance(client, redis.asyncio.Redis):
        await client.ping()
        return
    try:
        reply = await client.role()
    except redis.ResponseError as error:
        if not _cannot_ask_role(error):
            raise
        await client.ping()
        return
    if not _is_master(reply):
        await client.connection_pool.disconnect(inuse_connections=False)
        raise FailoverInProgress(REPLICA)


def wait_until_connected(client: redis.Redis | redis.client.PubSub,
                         check: Callable[[], object] | None = None,
                         sleep: Callable[[float], None] = time.sleep,
                         quiet: bool = False) -> None:
    """Run ``check`` (default: :func:`ask_master`, ROLE) until the server answers, logging
    each failure, then log the connected line (node_redis logs it again on every
    reconnection). A client's first success also checks it is no Cluster node.

    ``quiet``: log the connected line only after a failure, for the scripts whose course
    output has none (the job creators and processors).
    """
    failed = False
    for delay in retry_delays():
        try:
            if check is None:
                ask_master(client)
            else:
                check()
            refuse_cluster(client)
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
    503 until it is): a ConfigError if the server refuses a setting of REDIS_URL, or is a
    Cluster node."""
    try:
        client.ping()
        refuse_cluster(client)
    except (redis.ConnectionError, redis.TimeoutError):
        pass
    except redis.ResponseError as error:
        raise_refused_setting(error)


async def wait_until_connected_async(client: redis.asyncio.Redis) -> None:
    """:func:`wait_until_connected` for redis.asyncio clients."""
    for delay in retry_delays():
        try:
            await _ask_master_async(client)
            await _refuse_cluster_async(client)
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
