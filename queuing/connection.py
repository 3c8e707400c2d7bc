"""The Redis clients, made from ``REDIS_URL``, and waiting for the server as node_redis does.

One factory per kind of client, and nothing else in the project makes one:

- :func:`connect`: the scripts' client, answering str;
- :func:`connect_async`: the same for redis.asyncio;
- :func:`rq_client`: bytes replies, as RQ needs (``decode_responses=True`` breaks RQ);
- :func:`server_client`: the web servers' pooled client, which fails fast on a dead Redis;
- :func:`seat_worker_client`: the seat server's RQ worker thread's.

Each takes a direct URL (``redis://``, ``rediss://``, ``unix://``) or a Sentinel one
(``redis+sentinel://``, ``rediss+sentinel://``): then the client asks the sentinels where
the master is, on every new connection, so after a failover it follows the new master.
A failover shows as "not connected": the error replies of a server that is not the master
right now (a demoted master's READONLY, ...) reach callers as :class:`FailoverInProgress`,
a ``redis.ConnectionError``, so every ``except (redis.ConnectionError, redis.TimeoutError)``
prints the course's not-connected line (or answers 503) and tries again.

Nothing here connects at import time: a client is made when a script asks for one, and
redis-py only opens a socket on the first command.
"""

from __future__ import annotations

import asyncio
import socket
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis._parsers import (
    _AsyncHiredisParser,
    _AsyncRESP2Parser,
    _AsyncRESP3Parser,
    _HiredisParser,
    _RESP2Parser,
    _RESP3Parser,
)
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url
from redis.retry import Retry
from redis.utils import HIREDIS_AVAILABLE

from queuing import settings
from queuing.console import log
from queuing.settings import REDIS_URL_ENV, InvalidRedisURL
from queuing.urls import (
    SentinelURL,
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
# The sentinels' own connections: they answer at once, and a dead one must not hold up
# asking the next, whatever the master's timeouts are.
SENTINEL_TIMEOUT = 2.0
# How often a Sentinel URL's pool asks the sentinels which master is current, at most.
MASTER_CHECK_SECONDS = 0.5


class FailoverInProgress(redis.ConnectionError):
    """The server answered, but it is not the master right now: a demoted master (READONLY),
    a replica cut off from its master (MASTERDOWN), a master without the replicas it needs
    (NOREPLICAS), a blocked command cut short by a switch of role (UNBLOCKED), a server still
    loading its data (LOADING). None of these ran the command, so trying again is safe;
    being a ConnectionError, redis-py drops the connection (the next one asks the sentinels
    for the master again) and the project's retry loops treat it as not connected."""

    def __str__(self) -> str:
        message = super().__str__()
        return f"{self.status_code} {message}" if self.status_code else message


class _StillLoading(FailoverInProgress, redis.BusyLoadingError):
    """LOADING: what redis-py calls BusyLoadingError, and a failover step too."""


# Error reply codes that mean "the master is not here right now".
FAILOVER_REPLIES: dict[str, type[FailoverInProgress]] = {
    "READONLY": FailoverInProgress,
    "MASTERDOWN": FailoverInProgress,
    "NOREPLICAS": FailoverInProgress,
    "UNBLOCKED": FailoverInProgress,
    "LOADING": _StillLoading,
}
_EXCEPTION_CLASSES = {**_RESP2Parser.EXCEPTION_CLASSES, **FAILOVER_REPLIES}


# redis-py's parsers, hiredis included (it calls parse_error for every error reply), turn
# an error reply into the class EXCEPTION_CLASSES names for its code: these map the codes
# above to FailoverInProgress, for the clients made here only.
class _FailoverHiredisParser(_HiredisParser):
    EXCEPTION_CLASSES = _EXCEPTION_CLASSES


class _FailoverRESP2Parser(_RESP2Parser):
    EXCEPTION_CLASSES = _EXCEPTION_CLASSES


class _FailoverRESP3Parser(_RESP3Parser):
    EXCEPTION_CLASSES = _EXCEPTION_CLASSES


class _FailoverAsyncHiredisParser(_AsyncHiredisParser):
    EXCEPTION_CLASSES = _EXCEPTION_CLASSES


class _FailoverAsyncRESP2Parser(_AsyncRESP2Parser):
    EXCEPTION_CLASSES = _EXCEPTION_CLASSES


class _FailoverAsyncRESP3Parser(_AsyncRESP3Parser):
    EXCEPTION_CLASSES = _EXCEPTION_CLASSES


def failover_parser(protocol: int = 2, is_async: bool = False) -> type:
    """The parser class for a client's connections. redis-py swaps only its own RESP2
    parser for RESP3 when protocol=3, so the protocol picks the Python parser here."""
    if HIREDIS_AVAILABLE:
        return _FailoverAsyncHiredisParser if is_async else _FailoverHiredisParser
    if protocol == 3:
        return _FailoverAsyncRESP3Parser if is_async else _FailoverRESP3Parser
    return _FailoverAsyncRESP2Parser if is_async else _FailoverRESP2Parser


def is_not_connected(error: BaseException) -> bool:
    """Whether ``error`` means Redis cannot take commands right now (and a retry may work):
    a lost connection, a timeout, or a failover's error reply, also from a client not made
    here (redis-py's ReadOnlyError, ...) or returned inside a pipeline's replies."""
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
        return True
    if isinstance(error, redis.ResponseError):
        code = error.status_code or str(error).split(" ", 1)[0]
        return code in FAILOVER_REPLIES
    return False


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


class _FollowingSentinelPool(redis.sentinel.SentinelConnectionPool):
    """A Sentinel URL's pool that leaves a demoted master within MASTER_CHECK_SECONDS.

    After a failover the old master goes on taking writes on connections already open to
    it until the sentinels turn it into a replica, 10-15 s later, and then throws them
    away (measured: 899 writes acknowledged in 10 s, none on the new master). redis-py's
    pool asks the sentinels only when it opens a connection. This one asks them at most
    every MASTER_CHECK_SECONDS when it hands a connection out, and closes one that is
    open to another server first: the command then connects to the current master.
    """

    _master: tuple[str, int] | None = None
    _next_check = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> redis.connection.Connection:
        connection = super().get_connection(*args, **kwargs)
        master = self._current_master()
        if master is not None and getattr(connection, "_sock", None) is not None \
                and (connection.host, connection.port) != master:
            connection.disconnect()
        return connection

    def _current_master(self) -> tuple[str, int] | None:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + MASTER_CHECK_SECONDS
            # It also closes the idle connections to an old master (redis-py's own).
            with suppress(redis.RedisError):  # the sentinels unreachable: the last known
                self._master = self.proxy.get_master_address()
        return self._master


class _BlockingSentinelPool(_FollowingSentinelPool, redis.BlockingConnectionPool):
    """The servers' pool for a Sentinel URL: it follows the master as its base does, and
    waits for a free connection as :func:`server_client`'s direct pool does."""


def _url_options(query: dict[str, str]) -> dict[str, Any]:
    # Typed as redis-py's parse_url types a URL's query.
    return {name: URL_QUERY_ARGUMENT_PARSERS.get(name, str)(value)
            for name, value in query.items()}


def _from_url(client_class: type, url: str | None, options: dict[str, Any],
              blocking_pool: bool = False) -> Any:
    """The one place a URL becomes a client: ``options`` are the factory's, and the URL's
    own options win over them, as in redis-py's from_url. ``blocking_pool``: a pool that
    waits for a free connection (BlockingConnectionPool), for the servers."""
    url = _checked(url)
    is_async = issubclass(client_class, redis.asyncio.Redis)
    options.setdefault("decode_responses", True)
    if is_sentinel_url(url):
        return _master_for(client_class, parse_sentinel_url(url), options, blocking_pool)
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


def sentinel_settings(where: SentinelURL, options: dict[str, Any] | None = None,
                      is_async: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyword arguments of a Sentinel URL's master connections (``options``, a
    factory's, under the URL's own) and of its sentinels' connections, as redis-py's
    Sentinel takes them (``sentinel_kwargs``): for the factories and RQ's command line."""
    from_the_url = _url_options(where.options)
    tls = {name: value for name, value in from_the_url.items() if name.startswith("ssl_")}
    master = {"socket_keepalive": True, "socket_keepalive_options": keepalive_options(),
              **(options or {}), **from_the_url, "db": where.db, "ssl": where.tls}
    if where.username:
        master["username"] = where.username
    if where.password:
        master["password"] = where.password
    master["parser_class"] = failover_parser(master.get("protocol", 2), is_async)
    sentinels = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT,
                 "socket_keepalive": master["socket_keepalive"],
                 "socket_keepalive_options": keepalive_options(),
                 "password": where.sentinel_password,
                 # The next sentinel is the retry: a dead one is not tried again and again.
                 "retry": (AsyncRetry if is_async else Retry)(NoBackoff(), 0)}
    if where.tls:
        sentinels |= {"ssl": True, **tls}
    return master, sentinels


def _master_for(client_class: type, where: SentinelURL, options: dict[str, Any],
                blocking_pool: bool) -> Any:
    """A client on the master the sentinels name (redis-py's Sentinel.master_for), with the
    options a direct client of the same factory has."""
    is_async = issubclass(client_class, redis.asyncio.Redis)
    master, sentinels = sentinel_settings(where, options, is_async)
    if is_async:
        manager = redis.asyncio.sentinel.Sentinel(where.sentinels, sentinel_kwargs=sentinels)
        pool_class = redis.asyncio.sentinel.SentinelConnectionPool
    else:
        manager = redis.sentinel.Sentinel(where.sentinels, sentinel_kwargs=sentinels)
        pool_class = _BlockingSentinelPool if blocking_pool else _FollowingSentinelPool
    if not blocking_pool:
        master.pop("timeout", None)
    return manager.master_for(where.service, redis_class=client_class,
                              connection_pool_class=pool_class, **master)


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
    master, sentinels = sentinel_settings(where, dict(_RQ_CLI_OPTIONS))
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
