"""The creator's side of the job events: a batch of jobs and the reply stream it hears.

A creator enqueues its jobs with one reply stream (:class:`JobBatch`) and reads their
events back in the order the workers wrote them (:func:`follow`), through Redis restarts,
ending jobs whose hash is gone instead of waiting for them for ever.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from typing import Any

import redis
from rq import Callback, Queue
from rq.job import Job, JobStatus
from rq.utils import utcparse

from queuing import replication
from queuing.connection import text, through_outages
from queuing.constants import (
    JOB_EVENTS_PREFIX,
)
from queuing.fast_enqueue import (
    ENQUEUE_BATCH,
    JobTemplate,
    enqueue_jobs,
    job_template,
)
from queuing.job_events import (
    COMPLETED,
    FAILED,
    REPLY_TO,
    JobEvent,
    job_completed,
    job_failed,
)

# How long one XREAD blocks. The creator's socket timeout must be longer (redis-py 8
# defaults to 5 s): see LISTEN_SOCKET_TIMEOUT.
BLOCK_MS = 10_000
LISTEN_SOCKET_TIMEOUT = BLOCK_MS / 1000 + 5
READ_COUNT = 1_000
# While events flow, a creator reads at most once per READ_PAUSE_SECONDS, so that one
# XREAD brings many events rather than each one (lines are printed at most 5 ms later).
READ_PAUSE_SECONDS = 0.005
# The failure a creator reports for a job whose hash vanished before it ended.
LOST_JOB = "its job is no longer in Redis (Redis lost its data?)"
# A job that ended this long ago (by Redis's clock) without its final event reaching the
# stream lost that event (a failover can keep the job's end and lose the event, written by
# another command); the creator reports the end it finds. Until then the event may still
# come: a worker writes it just after recording the end.
EVENT_LOST_AFTER_SECONDS = 5
LOST_FAILURE = "it failed, and its reason was lost (a Redis failover?)"
_ENDS = {JobStatus.FINISHED.value: COMPLETED, JobStatus.FAILED.value: FAILED,
         JobStatus.STOPPED.value: FAILED, JobStatus.CANCELED.value: FAILED}


def new_reply_stream() -> str:
    """A stream key of one creator's own (random, so creators never read each other's).

    8 URL-safe characters, 48 random bits: as unlikely to collide as 12 hex digits, and
    short, because every pending job holds the key in its meta (README, "Redis settings").
    """
    return f"{JOB_EVENTS_PREFIX}{secrets.token_urlsafe(6)}"


def reporting_options(reply_to: str) -> dict[str, Any]:
    """The options of RQ's ``Queue.enqueue`` that make a job report its events to the
    stream ``reply_to``: the stream's name in the job's meta (progress events read it), and
    the callbacks that write the job's completed or failed event there."""
    return {"meta": {REPLY_TO: reply_to}, "on_success": Callback(job_completed),
            "on_failure": Callback(job_failed)}


def enqueue_reporting(queue: Queue, func: Callable | str, *args: Any, job_id: str,
                      reply_to: str, **options: Any) -> Job:
    """Enqueue ``func(*args)`` as job ``job_id`` whose events go to ``reply_to``."""
    return queue.enqueue(func, *args, job_id=job_id, **reporting_options(reply_to), **options)


def in_batches(items: Iterable[Any], size: int = ENQUEUE_BATCH) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last one shorter), read as they are needed."""
    items = iter(items)
    while batch := list(itertools.islice(items, size)):
        yield batch


def follow(connection: redis.Redis, stream: str, job_ids: Iterable[str],
           block_ms: int = BLOCK_MS) -> Iterator[JobEvent]:
    """Yield the events of ``job_ids`` in the order the workers wrote them, until each job
    has completed or failed.

    Reading starts at the stream's first entry, so events written before the call are
    seen too. One XREAD returns every event written since the previous one: the cost is
    per batch of events, not per job, and while events flow the reads are at least
    READ_PAUSE_SECONDS apart. An idle wait costs one XREAD per ``block_ms``.

    When Redis goes away (a restart), the course's not-connected line is printed and the
    reading goes on from the last event heard once it is back. After an idle wait, jobs
    whose hash is gone from Redis (its data was lost, or someone deleted them) end with a
    failed event saying so, and jobs that ended without their final event (a failover
    lost it) end as Redis recorded them: none is waited for for ever.
    """
    pending = set(job_ids)
    last_id = "0"
    while pending:
        reply = through_outages(connection, connection.xread, {stream: last_id},
                                count=READ_COUNT, block=block_ms)
        if not reply:
            # Nothing for a while: read what may have come meanwhile, then check the jobs.
            reply = through_outages(connection, _read_now_and_find_lost, connection, stream,
                                    last_id, pending)
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                last_id = entry_id
                event = JobEvent.from_fields(fields)
                if event.job_id not in pending:
                    continue  # not ours, or already final (a duplicate)
                if event.is_final:
                    pending.discard(event.job_id)
                yield event
            if pending and len(entries) < READ_COUNT:
                time.sleep(READ_PAUSE_SECONDS)  # let the next events gather


def _read_now_and_find_lost(connection: redis.Redis, stream: str, last_id: str,
                            pending: set[str]) -> list:
    """An XREAD reply: the events since ``last_id``; else a failed event for each pending
    job whose hash is gone, and the end of each that ended EVENT_LOST_AFTER_SECONDS ago
    without its event (read after the events, so a job deleted or ended just after its
    final event was written is never taken for lost)."""
    reply = connection.xread({stream: last_id}, count=READ_COUNT)
    if reply:
        return reply
    ids = sorted(pending)
    with connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(Job.redis_job_namespace_prefix + job_id, "status", "ended_at")
        pipe.time()
        *found, (seconds, _micro) = pipe.execute()
    events = []
    for job_id, (status, ended_at) in zip(ids, found, strict=True):
        if status is None:
            events.append(JobEvent(job_id, FAILED, error=LOST_JOB))
        elif _ended_long_ago(status, ended_at, seconds):
            kind = _ENDS[text(status)]
            events.append(JobEvent(job_id, kind, error=LOST_FAILURE if kind == FAILED else ""))
    return [(stream, [(last_id, event.fields()) for event in events])] if events else []


def _ended_long_ago(status: bytes | str, ended_at: bytes | str | None, now: int) -> bool:
    if text(status) not in _ENDS or not ended_at:
        return False
    try:
        ended = utcparse(text(ended_at)).timestamp()
    except ValueError:
        return False
    return now - ended >= EVENT_LOST_AFTER_SECONDS


class JobBatch:
    """Jobs one creator enqueued with one reply stream; iterate to hear their events.

    Use it as a context manager: leaving it deletes the stream, whether every job ended
    or the creator was interrupted (events written later recreate it, with an expiry).
    """

    def __init__(self, queue: Queue, stream: str | None = None) -> None:
        replication.check_settings(queue.connection)
        self.queue = queue
        self.stream = stream or new_reply_stream()
        self.job_ids: list[str] = []
        self._templates: dict[Callable | str, JobTemplate] = {}

    def reporting(self) -> dict[str, Any]:
        """The options that make a job of ``Queue.enqueue`` report to this batch's stream
        (:func:`reporting_options`); then :meth:`listen_for` the job."""
        return reporting_options(self.stream)

    def listen_for(self, job_id: str) -> None:
        """Hear the events of job ``job_id`` too: :meth:`events` ends once it has ended."""
        self.job_ids.append(job_id)

    def add(self, func: Callable | str, *args: Any, job_id: str, **options: Any) -> Job:
        """One job with an id of the caller's and any of RQ's options, by ``Queue.enqueue``.

        In the replicated mode it returns once the required replicas have the job, or
        raises replication.NotReplicated naming it; the batch hears its events either
        way (the job is on the master, and may run or be found lost)."""
        job = enqueue_reporting(self.queue, func, *args, job_id=job_id, reply_to=self.stream,
                                **options)
        self.job_ids.append(job.id)
        try:
            replication.confirm(self.queue.connection, written=[job.key])
        except replication.NotReplicated as error:
            raise error.for_jobs([job.id]) from None
        return job

    def add_many(self, func: Callable | str,
                 args_per_job: Sequence[Sequence[Any]]) -> list[str]:
        """One ``func(*args)`` job per ``args``, with new ids, in one transaction
        (:func:`enqueue_jobs`); their ids, in order.

        In the replicated mode a batch the replicas did not confirm raises
        replication.NotReplicated naming its jobs; the batch hears their events anyway."""
        template = self._templates.get(func)
        if template is None:
            template = self._templates[func] = job_template(self.queue, func, self.stream)
        try:
            job_ids = enqueue_jobs(self.queue, template, args_per_job)
        except replication.NotReplicated as error:
            self.job_ids.extend(error.job_ids)
            raise
        self.job_ids.extend(job_ids)
        return job_ids

    def events(self, block_ms: int = BLOCK_MS) -> Iterator[JobEvent]:
        return follow(self.queue.connection, self.stream, self.job_ids, block_ms)

    def close(self) -> None:
        with suppress(redis.RedisError):  # it would expire anyway
            self.queue.connection.delete(self.stream)

    def __enter__(self) -> JobBatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
