"""Clients of a Sentinel URL: the master the sentinels name, followed through failovers.

``redis+sentinel://h1:26379,h2,h3/mymaster`` (urls.py) names sentinels, not a server:
redis-py's Sentinel asks them where the master is. Its pool asks only when it opens a
connection, and after a failover the old master goes on taking writes on the connections
already open to it until the sentinels make it a replica, 10-15 s later, which throws them
away; the pools here follow the master within MASTER_CHECK_SECONDS instead. connection.py's
factories call :func:`master_for` with the options a direct client of theirs would have.
"""

from __future__ import annotations

import time
from contextlib import suppress
from typing import Any

import redis
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.retry import Retry

from queuing.failover_errors import failover_parser
from queuing.urls import SentinelURL

# The sentinels' own connections: they answer at once, and a dead one must not hold up
# asking the next, whatever the master's timeouts are.
SENTINEL_TIMEOUT = 2.0
# How often a Sentinel URL's pool asks the sentinels which master is current, at most.
MASTER_CHECK_SECONDS = 0.5


class _MasterCheck:
    """When a Sentinel URL's pool asks the sentinels next which master is current (at most
    every MASTER_CHECK_SECONDS), and the master they named last."""

    _master: tuple[str, int] | None = None
    _next_check = 0.0

    def _check_is_due(self) -> bool:
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + MASTER_CHECK_SECONDS
        return True

    def _elsewhere(self, connection: Any) -> bool:
        """Whether ``connection`` is to a server other than the current master (as far as
        the sentinels were last heard)."""
        return self._master is not None and (connection.host, connection.port) != self._master


class _FollowingConnection(redis.sentinel.SentinelManagedConnection):
    """A Sentinel URL's connection that asks the sentinels where the master is whenever it
    connects. redis-py's asks them only when its pool opens it: a connection dropped under
    a command (a subscriber's UNSUBSCRIBE, when RQ's worker stops) is opened again at its
    last address, the dead master's, and the command fails with "Connection refused"."""

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        if self._sock is None and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(*args, **kwargs)


class _FollowingSSLConnection(_FollowingConnection, redis.sentinel.SentinelManagedSSLConnection):
    """:class:`_FollowingConnection` over TLS."""


class _FollowingSentinelPool(_MasterCheck, redis.sentinel.SentinelConnectionPool):
    """A Sentinel URL's pool that leaves a demoted master within MASTER_CHECK_SECONDS.

    After a failover the old master goes on taking writes on connections already open to
    it until the sentinels turn it into a replica, 10-15 s later, and then throws them
    away (measured: 899 writes acknowledged in 10 s, none on the new master). redis-py's
    pool asks the sentinels only when it opens a connection. This one asks them at most
    every MASTER_CHECK_SECONDS when it hands a connection out, and closes one that is
    open to another server first: the command then connects to the current master.
    """

    def get_connection(self, *args: Any, **kwargs: Any) -> redis.connection.Connection:
        connection = super().get_connection(*args, **kwargs)
        if self._check_is_due():
            # It also closes the idle connections to an old master (redis-py's own).
            with suppress(redis.RedisError):  # the sentinels unreachable: the last known
                self._master = self.proxy.get_master_address()
        if getattr(connection, "_sock", None) is not None and self._elsewhere(connection):
            connection.disconnect()
        return connection


class _FollowingAsyncSentinelPool(_MasterCheck, redis.asyncio.sentinel.SentinelConnectionPool):
    """The asyncio flavour of :class:`_FollowingSentinelPool`. A closed connection is
    opened again here, through the sentinels: redis.asyncio reopens one a command finds
    closed at its last address, the old master's."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = await super().get_connection(*args, **kwargs)
        try:
            if self._check_is_due():
                # It also closes the idle connections to an old master (redis-py's own).
                with suppress(redis.RedisError):  # the sentinels unreachable: the last known
                    self._master = await self.get_master_address()
            if connection.is_connected and self._elsewhere(connection):
                await connection.disconnect()
                await connection.connect()  # SentinelManagedConnection's: asks the sentinels
        except BaseException:
            await self.release(connection)
            raise
        return connection


class _BlockingSentinelPool(_FollowingSentinelPool, redis.BlockingConnectionPool):
    """The servers' pool for a Sentinel URL: it follows the master as its base does, and
    waits for a free connection as :func:`server_client`'s direct pool does."""


def url_options(query: dict[str, str]) -> dict[str, Any]:
    """A URL's query options, typed as redis-py's parse_url types them."""
    return {name: URL_QUERY_ARGUMENT_PARSERS.get(name, str)(value)
            for name, value in query.items()}


def sentinel_settings(where: SentinelURL, options: dict[str, Any] | None = None,
                      is_async: bool = False, keepalive: dict[int, int] | None = None
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyword arguments of a Sentinel URL's master connections (``options``, a
    factory's, under the URL's own) and of its sentinels' connections, as redis-py's
    Sentinel takes them (``sentinel_kwargs``): for the factories and RQ's command line.
    ``keepalive``: the TCP keepalive timings of both (connection.keepalive_options)."""
    keepalive = keepalive or {}
    from_the_url = url_options(where.options)
    tls = {name: value for name, value in from_the_url.items() if name.startswith("ssl_")}
    master = {"socket_keepalive": True, "socket_keepalive_options": keepalive,
              **(options or {}), **from_the_url, "db": where.db, "ssl": where.tls}
    if where.username:
        master["username"] = where.username
    if where.password:
        master["password"] = where.password
    master["parser_class"] = failover_parser(master.get("protocol", 2), is_async)
    sentinels = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT,
                 "socket_keepalive": master["socket_keepalive"],
                 "socket_keepalive_options": keepalive,
                 "password": where.sentinel_password,
                 # The next sentinel is the retry: a dead one is not tried again and again.
                 "retry": (AsyncRetry if is_async else Retry)(NoBackoff(), 0)}
    if where.tls:
        sentinels |= {"ssl": True, **tls}
    return master, sentinels


def master_for(client_class: type, where: SentinelURL, options: dict[str, Any],
               blocking_pool: bool, keepalive: dict[int, int] | None = None) -> Any:
    """A client on the master the sentinels name (redis-py's Sentinel.master_for), with the
    options a direct client of the same factory has."""
    is_async = issubclass(client_class, redis.asyncio.Redis)
    master, sentinels = sentinel_settings(where, options, is_async, keepalive)
    if is_async:
        manager = redis.asyncio.sentinel.Sentinel(where.sentinels, sentinel_kwargs=sentinels)
        pool_class = _FollowingAsyncSentinelPool
    else:
        manager = redis.sentinel.Sentinel(where.sentinels, sentinel_kwargs=sentinels)
        pool_class = _BlockingSentinelPool if blocking_pool else _FollowingSentinelPool
        master["connection_class"] = _FollowingSSLConnection if where.tls else _FollowingConnection
    if not blocking_pool:
        master.pop("timeout", None)
    return manager.master_for(where.service, redis_class=client_class,
                              connection_pool_class=pool_class, **master)
