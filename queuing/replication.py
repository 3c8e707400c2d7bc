"""The replicated mode (``REDIS_MIN_REPLICAS=N``): a write is confirmed once N replicas have it.

Redis replicates asynchronously: a master that fails right after answering can take the
write with it, and the replica promoted in its place never had it. In the default mode
(0) that is what a failover can lose. With N > 0, every write the project confirms to
someone (a job "created", "Reservation confirmed", a seat reservation "in process", a seat
job's take or refusal before its job ends) is confirmed only after Redis's ``WAIT`` says
N replicas have it; otherwise the creator reports the jobs, the servers answer 503 and a
seat job runs again. With 0 nothing is sent: no cost at all.

How :func:`confirm` asks, and why so:

- ``WAIT`` counts the writes of the connection it runs on, and redis-py's pool may lend
  any of its connections to the next command. So :func:`confirm` sends, in one pipeline
  (one connection, one round trip), a fence and the ``WAIT``: the fence is a ``PUBLISH``
  to a channel nobody reads, a command every Redis propagates to its replicas, so the
  ``WAIT`` waits for the replication stream up to the fence, which holds every write
  the master took before it, whichever connection made it.
- ``EXISTS`` of keys the write made (or ``SISMEMBER`` of members it added to a shared
  set) goes first in the same pipeline: the fence proves nothing about a write that is
  not on this server (a retry that reached a new master after a failover that lost it).
  A missing key or member is reported as not replicated.
- The pipeline is not a transaction: inside MULTI, Redis answers ``WAIT`` at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from queuing import connection, settings

FENCE_CHANNEL = "queuing:replication:fence"
# How a replica refuses WAIT.
WAIT_ON_REPLICA = "WAIT cannot be used with replica instances"


class NotReplicated(Exception):
    """Fewer replicas than required acknowledged a write before the timeout (or the write
    is not on the master any more). The write may still be on the master: it is not lost
    yet, only not confirmed. ``job_ids``: the jobs it concerns, when it is an enqueue."""

    def __init__(self, acknowledged: int, required: int, *, missing: bool = False,
                 job_ids: Sequence[str] = ()) -> None:
        self.acknowledged = acknowledged
        self.required = required
        self.missing = missing
        self.job_ids = list(job_ids)
        super().__init__(
            "the write is not on Redis's master (lost in a failover?)" if missing else
            f"only {acknowledged} of {required} replicas have the write")

    def for_jobs(self, job_ids: Sequence[str]) -> NotReplicated:
        """The same failure, naming the jobs it concerns."""
        return NotReplicated(self.acknowledged, self.required, missing=self.missing,
                             job_ids=job_ids)


def check_settings(client: redis.Redis) -> None:
    """Raise settings.ConfigError now, at start, for a ``REDIS_MIN_REPLICAS`` or
    ``REDIS_MIN_REPLICAS_TIMEOUT`` that is unusable, rather than at the first write: a
    timeout must be shorter than ``client``'s socket timeout, or the client gives up on
    every ``WAIT`` the replicas do not answer in time ("not connected", retried)."""
    if settings.min_replicas() == 0:
        return
    timeout = settings.min_replicas_timeout()
    limit = connection.socket_timeout(client)
    if timeout >= limit:
        raise settings.ConfigError(
            f"{settings.MIN_REPLICAS_TIMEOUT_ENV} must be shorter than the Redis client's "
            f"socket timeout ({limit:g} s), not {timeout:g}")


def required_replicas(replicas: int | None = None) -> int:
    """``replicas``, or ``REDIS_MIN_REPLICAS`` when None."""
    return settings.min_replicas() if replicas is None else replicas


def confirm(client: redis.Redis, replicas: int | None = None, timeout: float | None = None,
            *, written: Sequence[str | bytes] = (),
            in_sets: Sequence[tuple[str | bytes, str | bytes]] = ()) -> None:
    """Return once ``replicas`` replicas (default ``REDIS_MIN_REPLICAS``) have every write
    the master took so far; raise :class:`NotReplicated` when fewer acknowledged within
    ``timeout`` seconds (default ``REDIS_MIN_REPLICAS_TIMEOUT``), or when a key of
    ``written`` (keys the write made, that nothing deletes soon) is not on the server, or
    a ``(set, member)`` of ``in_sets`` (members the write added to a set that other writes
    share, where EXISTS would prove nothing) is not in its set. With 0 replicas it sends
    nothing.

    One round trip (see the module's docstring) plus the replicas' acknowledgement. The
    timeout must stay under ``client``'s socket timeout, else the client gives up first
    (a TimeoutError, "not connected").
    """
    required = required_replicas(replicas)
    if required <= 0:
        return
    seconds = settings.min_replicas_timeout() if timeout is None else timeout
    with client.pipeline(transaction=False) as pipe:
        if written:
            pipe.exists(*written)
        for key, member in in_sets:
            pipe.sismember(key, member)
        pipe.publish(FENCE_CHANNEL, b"")
        pipe.wait(required, max(1, round(seconds * 1000)))
        try:
            replies = pipe.execute()
        except redis.ResponseError as error:
            if WAIT_ON_REPLICA not in str(error):
                raise
            # The server was demoted to a replica (a failover) since the write: not the
            # master, so "not connected", as its READONLY answers are.
            raise redis.ConnectionError("Redis is a replica now, not the master") from None
    if written and replies[0] != len(written):
        raise NotReplicated(0, required, missing=True)
    checked = replies[1 if written else 0:-2]  # the SISMEMBER replies, before PUBLISH, WAIT
    if not all(checked):
        raise NotReplicated(0, required, missing=True)
    if replies[-1] < required:
        raise NotReplicated(int(replies[-1]), required)


def confirm_or_unavailable(client: redis.Redis, what: str, *,
                           written: Sequence[str | bytes] = ()) -> None:
    """:func:`confirm` for a server: a write that is not replicated is answered 503
    ``{"status":"Service Unavailable","reason":"<what> not confirmed: only 0 of 1
    replicas have the write"}`` (web.Unavailable)."""
    try:
        confirm(client, written=written)
    except NotReplicated as error:
        # Imported here: web loads Flask, which the creators (importing this module
        # through fast_enqueue) do not need.
        from queuing import web
        raise web.Unavailable(f"{what} not confirmed: {error}") from None
