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

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis
from rq import get_current_job
from rq.exceptions import AbandonedJobError, DeserializationError
from rq.job import Job

from queuing.connection import text, wait_until_connected
from queuing.constants import (
    JOB_EVENTS_TTL_SECONDS,
)

REPLY_TO = "reply_to"  # the job meta field naming the creator's stream

PROGRESS = "progress"
COMPLETED = "completed"
FAILED = "failed"

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
        read = {text(k): text(v) for k, v in fields.items()}
        progress = read.get(PROGRESS)
        return cls(read["job"], read["event"],
                   int(progress) if progress is not None else None, read.get("error", ""))


def publish(connection: redis.Redis, reply_to: str, event: JobEvent) -> None:
    """Append ``event`` to the creator's stream and push back its expiry: one round trip.

    The EXPIRE is what makes a stream whose creator has gone (Ctrl-C) disappear. While
    this thread's worker holds a job's events (:func:`holding_events`), the event waits
    in the outbox instead.
    """
    outbox = getattr(_held, "outbox", None)
    if outbox is not None:
        outbox.add(connection, reply_to, event)
        return
    _write_through_outages(connection, [(reply_to, event)])


def _write_through_outages(connection: redis.Redis, events: list[tuple[str, JobEvent]]) -> None:
    """Write ``events``; while Redis is away (a restart), print the course's not-connected
    line, wait for it and write them again: a worker's job is not failed for it. A reply
    lost after the write repeats the events, which a creator reads by job id."""
    while True:
        try:
            with connection.pipeline(transaction=False) as pipe:
                write_events(pipe, events)
                pipe.execute()
            return
        except (redis.ConnectionError, redis.TimeoutError):
            wait_until_connected(connection, quiet=True)


def write_events(pipe: redis.client.Pipeline, events: list[tuple[str, JobEvent]]) -> None:
    """Queue the XADD of each ``(stream, event)`` on ``pipe``, then one EXPIRE per stream."""
    for stream, event in events:
        pipe.xadd(stream, event.fields())
    for stream in dict.fromkeys(stream for stream, _event in events):
        pipe.expire(stream, JOB_EVENTS_TTL_SECONDS)


class Outbox:
    """The events of the job a worker is running, held so the worker can write them in
    the same transaction that records the job's end: one round trip instead of one per
    event, and the creator never hears "completed" before RQ says so.

    A job still running ``HOLD_SECONDS`` after it started is a slow one: its progress
    events are sent at once from then on, so its creator sees progress live, in order; its
    completed or failed event still waits for the record of its end.
    """

    HOLD_SECONDS = 0.1

    def __init__(self) -> None:
        self.events: list[tuple[str, JobEvent]] = []
        self.started = time.monotonic()
        self.connection: redis.Redis | None = None

    def add(self, connection: redis.Redis, reply_to: str, event: JobEvent) -> None:
        self.events.append((reply_to, event))
        self.connection = connection
        # The final event always waits for the job's end to be recorded.
        if not event.is_final and time.monotonic() - self.started > self.HOLD_SECONDS:
            self.send()

    def take(self) -> list[tuple[str, JobEvent]]:
        """The held events, in the order they were written; the outbox is left empty."""
        events, self.events = self.events, []
        return events

    def send(self) -> None:
        """Write the held events now (a slow job, or an end RQ records by itself)."""
        events = self.take()
        if events and self.connection is not None:
            _write_through_outages(self.connection, events)


_held = threading.local()


@contextmanager
def holding_events() -> Iterator[Outbox]:
    """Hold the events published in this thread until the caller writes them (see Outbox).

    Whatever is still held at the end is sent then, so leaving the block never loses one.
    """
    outbox = _held.outbox = Outbox()
    try:
        yield outbox
    finally:
        _held.outbox = None
        outbox.send()


def drop_held() -> None:
    """Forget the events this thread holds: the job's end they announce is not recorded
    (its worker had it taken back, recovering_worker.RecoveringWorker)."""
    outbox = getattr(_held, "outbox", None)
    if outbox is not None:
        outbox.take()


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
