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

import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import redis
from rq import Callback, Queue, get_current_job
from rq.defaults import CALLBACK_TIMEOUT
from rq.exceptions import AbandonedJobError, DeserializationError
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import get_call_string, now, utcformat

from queuing import console, jobs
from queuing.connection import not_connected_line, wait_until_connected
from queuing.constants import (
    BATCH_MARKER_KEY,
    BATCH_MARKER_SECONDS,
    JOB_EVENTS_PREFIX,
    JOB_EVENTS_TTL_SECONDS,
)

ENQUEUE_JOBS_LUA = (Path(__file__).parent / "lua" / "enqueue_jobs.lua").read_text()

REPLY_TO = "reply_to"  # the job meta field naming the creator's stream

PROGRESS = "progress"
COMPLETED = "completed"
FAILED = "failed"

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
    """A stream key of one creator's own (random, so creators never read each other's).

    8 URL-safe characters, 48 random bits: as unlikely to collide as 12 hex digits, and
    short, because every pending job holds the key in its meta (README, "Redis settings").
    """
    return f"{JOB_EVENTS_PREFIX}{secrets.token_urlsafe(6)}"


# --- Worker side ------------------------------------------------------------------------

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
    with connection.pipeline(transaction=False) as pipe:
        write_events(pipe, [(reply_to, event)])
        pipe.execute()


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

    A job still running ``HOLD_SECONDS`` after it started is a slow one: its events are
    sent at once from then on, so its creator sees progress live, in order.
    """

    HOLD_SECONDS = 0.1

    def __init__(self) -> None:
        self.events: list[tuple[str, JobEvent]] = []
        self.started = time.monotonic()
        self.connection: redis.Redis | None = None

    def add(self, connection: redis.Redis, reply_to: str, event: JobEvent) -> None:
        self.events.append((reply_to, event))
        self.connection = connection
        if time.monotonic() - self.started > self.HOLD_SECONDS:
            self.send()

    def take(self) -> list[tuple[str, JobEvent]]:
        """The held events, in the order they were written; the outbox is left empty."""
        events, self.events = self.events, []
        return events

    def send(self) -> None:
        """Write the held events now (a slow job, or an end RQ records by itself)."""
        events = self.take()
        if events and self.connection is not None:
            with self.connection.pipeline(transaction=False) as pipe:
                write_events(pipe, events)
                pipe.execute()


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

# Jobs per transaction of the batched enqueue: enough that a round trip and the created
# lines' write are shared by many jobs, few enough that the first lines show at once and
# that other clients wait little behind one transaction (Redis runs it in ~1.5 ms here).
ENQUEUE_BATCH = 500

# The length past which RQ's Job.get_call_string cuts an argument's repr (adding "...").
CALL_STRING_MAX_LENGTH = 75

# JSON without spaces: json.loads (RQ's JSONSerializer) reads it the same, and the hash
# stays small enough for Redis's compact encoding (README, "Redis settings").
_COMPACT = (",", ":")


class JobTemplate(NamedTuple):
    """What every job of one function and one reply stream shares."""

    func_name: str  # as RQ names it: "queuing.notifications.push_tracked_notification"
    fields: list[bytes]  # the job hash's shared fields: field, value, field, value...


def enqueue_reporting(queue: Queue, func: Callable | str, *args: Any, job_id: str,
                      reply_to: str, **options: Any) -> Job:
    """Enqueue ``func(*args)`` as job ``job_id`` whose events go to ``reply_to``."""
    return queue.enqueue(
        func, *args, job_id=job_id, meta={REPLY_TO: reply_to},
        on_success=Callback(job_completed), on_failure=Callback(job_failed), **options,
    )


def require_json_queue(queue: Queue) -> None:
    """Raise ValueError unless ``queue`` serializes jobs with RQ's JSONSerializer: the
    batched enqueue writes JSON job data, and the workers read nothing else."""
    if queue.serializer is not JSONSerializer and type(queue.serializer) is not JSONSerializer:
        raise ValueError(
            f"queue {queue.name} is not a JSON queue (its serializer: "
            f"{getattr(queue.serializer, '__name__', type(queue.serializer).__name__)}); "
            "make it with jobs.json_queue(name, connection)")


def job_template(queue: Queue, func: Callable | str, reply_to: str) -> JobTemplate:
    """The hash fields of a ``func`` job whose events go to ``reply_to``, made once by RQ's
    own Job (``Queue.create_job`` and ``Job.to_dict``, as ``Queue.enqueue`` does), so the
    fields and their values are RQ's. Left out, because RQ reads the job the same without
    them and each costs memory in every pending job:

    - the fields that differ per job (``data``, ``description``, ``created_at``,
      ``enqueued_at``): :func:`enqueue_jobs` adds them;
    - empty fields (``started_at``, ``worker_name``...): RQ reads a missing one as empty;
    - the callbacks' timeouts when they are RQ's default: RQ reads a missing one as it.

    The job's ``timeout`` stays, default or not: RQ's forking ``Worker`` adds 60 to it
    while watching a long job, and would fail on a missing one.
    """
    require_json_queue(queue)
    job = queue.create_job(func, meta={REPLY_TO: reply_to},
                           on_success=Callback(job_completed), on_failure=Callback(job_failed))
    fields = job.to_dict()
    fields["meta"] = json.dumps(job.meta, separators=_COMPACT)
    for per_job in ("data", "description", "created_at", "enqueued_at"):
        fields.pop(per_job, None)
    for name in ("success_callback_timeout", "failure_callback_timeout",
                 "stopped_callback_timeout"):
        if fields.get(name) == CALLBACK_TIMEOUT:
            del fields[name]
    encode = queue.connection.get_encoder().encode
    shared = [encode(part) for name, value in fields.items() if value not in ("", b"")
              for part in (name, value)]
    return JobTemplate(job.func_name, shared)


def job_description(func_name: str, args: Sequence[Any]) -> str:
    """The ``description`` RQ gives a ``func_name(*args)`` job (``Job.create`` takes
    ``Job.get_call_string()``): RQ's log line for each job it takes shows it, coloured
    in a terminal, where a job without one crashes the worker; rq-dashboard names the
    job by it."""
    return get_call_string(func_name, args, {}, max_length=CALL_STRING_MAX_LENGTH)


def enqueue_jobs(queue: Queue, template: JobTemplate,
                 args_per_job: Sequence[Sequence[Any]]) -> list[str]:
    """Enqueue one ``template`` job per ``args`` (its positional arguments), with new
    consecutive ids, and return the ids: the jobs ``Queue.enqueue`` would write (in the
    compact form of :func:`job_template`), in 2 round trips for the whole batch instead
    of 3 per job, and without RQ's Python work per job.

    One INCRBY takes the ids; one Lua script (lua/enqueue_jobs.lua) writes every job hash
    and pushes the ids onto the queue in one RPUSH, so a creator interrupted at any point
    (Ctrl-C) leaves each job in Redis whole and queued, or not at all. The batch's jobs
    share one timestamp (``created_at`` = ``enqueued_at``): they appear at the same
    instant to every reader.

    A Redis restart or stall does not end the creator: it prints the course's
    not-connected line, waits for Redis and tries again. Trying again never writes a job
    twice: the script marks its batch, and does nothing when the mark is there (a reply
    lost after the script ran). A retried INCRBY may skip ids, as Kue's counter could.
    """
    if not args_per_job:
        return []
    connection = queue.connection
    job_ids = through_outages(connection, jobs.reserve_job_ids, connection, len(args_per_job))
    stamp = utcformat(now()).encode()
    fields = [*template.fields, b"created_at", stamp, b"enqueued_at", stamp]
    key_prefix = queue.job_class.redis_job_namespace_prefix
    per_job = []
    for job_id, args in zip(job_ids, args_per_job, strict=True):
        # RQ's job data: [func_name, instance, args, kwargs], serialized by the queue.
        data = json.dumps([template.func_name, None, args, {}], separators=_COMPACT)
        per_job += [job_id, data, job_description(template.func_name, args)]
    keys = [queue.redis_queues_keys, queue.key,
            BATCH_MARKER_KEY.format(first_job_id=job_ids[0]),
            *(key_prefix + job_id for job_id in job_ids)]
    args = [BATCH_MARKER_SECONDS, len(fields), *fields, *per_job]
    script = connection.register_script(ENQUEUE_JOBS_LUA)
    through_outages(connection, script, keys=keys, args=args)
    return job_ids


def through_outages(connection: redis.Redis, call: Callable[..., Any], *args: Any,
                    **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``; while Redis cannot be reached, print the course's
    not-connected line, wait for it (wait_until_connected) and call again. Only
    for calls that can safely run twice."""
    while True:
        try:
            return call(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            console.log(not_connected_line(error))
            wait_until_connected(connection)


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
    failed event saying so, instead of being waited for for ever.
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
    """An XREAD reply: the events since ``last_id``, then a failed event for each pending
    job whose hash is gone (read after the events, so a job deleted at its end, with its
    final event written before, is never taken for lost)."""
    reply = connection.xread({stream: last_id}, count=READ_COUNT)
    if reply:
        return reply
    prefix = Job.redis_job_namespace_prefix
    with connection.pipeline(transaction=False) as pipe:
        for job_id in sorted(pending):
            pipe.exists(prefix + job_id)
        gone = [job_id for job_id, found in zip(sorted(pending), pipe.execute(), strict=True)
                if not found]
    if not gone:
        return []
    return [(stream, [(last_id, JobEvent(job_id, FAILED, error=LOST_JOB).fields())
                      for job_id in gone])]


class JobBatch:
    """Jobs one creator enqueued with one reply stream; iterate to hear their events.

    Use it as a context manager: leaving it deletes the stream, whether every job ended
    or the creator was interrupted (events written later recreate it, with an expiry).
    """

    def __init__(self, queue: Queue, stream: str | None = None) -> None:
        self.queue = queue
        self.stream = stream or new_reply_stream()
        self.job_ids: list[str] = []
        self._templates: dict[Callable | str, JobTemplate] = {}

    def add(self, func: Callable | str, *args: Any, job_id: str, **options: Any) -> Job:
        """One job with an id of the caller's and any of RQ's options, by ``Queue.enqueue``."""
        job = enqueue_reporting(self.queue, func, *args, job_id=job_id, reply_to=self.stream,
                                **options)
        self.job_ids.append(job.id)
        return job

    def add_many(self, func: Callable | str,
                 args_per_job: Sequence[Sequence[Any]]) -> list[str]:
        """One ``func(*args)`` job per ``args``, with new ids, in one transaction
        (:func:`enqueue_jobs`); their ids, in order."""
        template = self._templates.get(func)
        if template is None:
            template = self._templates[func] = job_template(self.queue, func, self.stream)
        job_ids = enqueue_jobs(self.queue, template, args_per_job)
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
