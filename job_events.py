"""Kue's job events (progress, completed, failed) for RQ, through a reply stream per creator.

RQ tells nobody when a job progresses or ends; Kue told the process that created it.
Here a creator picks a Redis Stream key (its "reply-to", as in RPC) and stores it in
each job's meta. Whatever worker runs the job appends the job's events to that stream:
progress from inside the job function, completed/failed from RQ's on_success/on_failure
callbacks, which RQ stores in the job itself, so any worker runs them (our processors,
``rq worker``, and RQ's clean-up of jobs whose worker died). The creator reads the stream
with a blocking XREAD from its start, so an event written before it listens is not lost,
and nothing polls a job's status.

Wire format of one event (a stream entry): ``job`` (the job id), ``event`` (``progress``,
``completed`` or ``failed``), and ``progress`` (0-100) or ``error`` (one line).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis
from rq import Callback, Queue, get_current_job
from rq.exceptions import AbandonedJobError, DeserializationError
from rq.job import Job

import common
from constants import JOB_EVENTS_PREFIX, JOB_EVENTS_TTL_SECONDS

REPLY_TO = "reply_to"  # the job meta field naming the creator's stream

PROGRESS = "progress"
COMPLETED = "completed"
FAILED = "failed"

# How long one XREAD blocks. The creator's socket timeout must be longer (redis-py 8
# defaults to 5 s): see LISTEN_SOCKET_TIMEOUT.
BLOCK_MS = 10_000
LISTEN_SOCKET_TIMEOUT = BLOCK_MS / 1000 + 5
READ_COUNT = 1_000


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    kind: str
    progress: int | None = None
    error: str = ""

    @property
    def is_final(self) -> bool:
        return self.kind in (COMPLETED, FAILED)

    def fields(self) -> dict[str, str]:
        fields = {"job": self.job_id, "event": self.kind}
        if self.progress is not None:
            fields[PROGRESS] = str(self.progress)
        if self.error:
            fields["error"] = self.error
        return fields

    @classmethod
    def from_fields(cls, fields: dict) -> JobEvent:
        """Read a stream entry, whether the client decodes replies or not."""
        text = {_text(k): _text(v) for k, v in fields.items()}
        progress = text.get(PROGRESS)
        return cls(text["job"], text["event"],
                   int(progress) if progress is not None else None, text.get("error", ""))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def new_reply_stream() -> str:
    """A stream key of one creator's own (random, so creators never read each other's)."""
    return f"{JOB_EVENTS_PREFIX}{uuid.uuid4().hex}"


# --- Worker side ------------------------------------------------------------------------

def publish(connection: redis.Redis, reply_to: str, event: JobEvent) -> None:
    """Append ``event`` to the creator's stream and push back its expiry: one round trip.

    The EXPIRE is what makes a stream whose creator has gone (Ctrl-C) disappear.
    """
    with connection.pipeline(transaction=False) as pipe:
        pipe.xadd(reply_to, event.fields())
        pipe.expire(reply_to, JOB_EVENTS_TTL_SECONDS)
        pipe.execute()


def _publish_for(job: Job, connection: redis.Redis, event: JobEvent) -> None:
    reply_to = job.meta.get(REPLY_TO)
    if reply_to:  # jobs enqueued by others (`rq enqueue`, a test) have nobody to tell
        publish(connection, reply_to, event)


def report_progress(percent: int) -> None:
    """Kue's ``job.progress(percent, 100)``, for use inside a job function."""
    job = get_current_job()
    if job is not None:
        _publish_for(job, job.connection, JobEvent(job.id, PROGRESS, progress=percent))


def job_completed(job: Job, connection: redis.Redis, result: Any) -> None:
    """RQ's on_success callback: tell the creator the job completed."""
    _publish_for(job, connection, JobEvent(job.id, COMPLETED))


def job_failed(job: Job, connection: redis.Redis, exc_type: type[BaseException] | None,
               exc_value: BaseException | None, traceback: TracebackType | None) -> None:
    """RQ's on_failure callback: tell the creator why the job failed, in one line.

    RQ also calls it for a job whose worker died (AbandonedJobError), when a worker's
    maintenance finds that job.
    """
    reason = failure_reason(exc_type, exc_value)
    _publish_for(job, connection, JobEvent(job.id, FAILED, error=reason))


def failure_reason(exc_type: type[BaseException] | None, exc_value: BaseException | None) -> str:
    """The exception's message only (as Kue's ``failed`` event gives ``err.message``)."""
    if exc_type is not None and issubclass(exc_type, DeserializationError):
        return "job data cannot be read (not valid JSON)"
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        return "the worker running it stopped before it ended"
    if exc_type is not None and issubclass(exc_type, (SystemExit, KeyboardInterrupt)):
        return "its worker was stopped while running it (cold shutdown)"
    lines = str(exc_value or "").strip().splitlines()
    if lines:
        return lines[0]
    return exc_type.__name__ if exc_type is not None else "unknown error"


# --- Creator side -----------------------------------------------------------------------

def enqueue_reporting(queue: Queue, func: Callable | str, *args: Any, job_id: str,
                      reply_to: str, **options: Any) -> Job:
    """Enqueue ``func(*args)`` as job ``job_id`` whose events go to ``reply_to``."""
    return queue.enqueue(
        func, *args, job_id=job_id, meta={REPLY_TO: reply_to},
        on_success=Callback(job_completed), on_failure=Callback(job_failed), **options,
    )


def follow(connection: redis.Redis, stream: str, job_ids: Iterable[str],
           block_ms: int = BLOCK_MS) -> Iterator[JobEvent]:
    """Yield the events of ``job_ids`` in the order the workers wrote them, until each job
    has completed or failed.

    Reading starts at the stream's first entry, so events written before the call are
    seen too. One XREAD returns every event written since the previous one: the cost is
    per batch of events, not per job. An idle wait costs one XREAD per ``block_ms``.
    """
    pending = set(job_ids)
    last_id = "0"
    while pending:
        try:
            reply = connection.xread({stream: last_id}, count=READ_COUNT, block=block_ms)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            # Redis went away (a restart): say so in the course's words, wait for it, and
            # read on from the last event heard; the stream is in Redis, nothing is missed.
            common.log(common.not_connected_line(error))
            common.wait_until_connected(connection)
            continue
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                last_id = entry_id
                event = JobEvent.from_fields(fields)
                if event.job_id not in pending:
                    continue  # not ours, or already final (a duplicate)
                if event.is_final:
                    pending.discard(event.job_id)
                yield event


class JobBatch:
    """Jobs one creator enqueued with one reply stream; iterate to hear their events.

    Use it as a context manager: leaving it deletes the stream, whether every job ended
    or the creator was interrupted (events written later recreate it, with an expiry).
    """

    def __init__(self, queue: Queue, stream: str | None = None) -> None:
        self.queue = queue
        self.stream = stream or new_reply_stream()
        self.job_ids: list[str] = []

    def add(self, func: Callable | str, *args: Any, job_id: str, **options: Any) -> Job:
        job = enqueue_reporting(self.queue, func, *args, job_id=job_id, reply_to=self.stream,
                                **options)
        self.job_ids.append(job.id)
        return job

    def events(self, block_ms: int = BLOCK_MS) -> Iterator[JobEvent]:
        return follow(self.queue.connection, self.stream, self.job_ids, block_ms)

    def close(self) -> None:
        with suppress(redis.RedisError):  # it would expire anyway
            self.queue.connection.delete(self.stream)

    def __enter__(self) -> JobBatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
