"""Jobs whose worker died (SIGKILL, OOM, a lost machine): run them again, at once.

RQ leaves such a job "started" until its StartedJobRegistry entry expires (~90 s) and
some worker's maintenance (every 10 minutes) fails it, re-running it only with a
``Retry``; Kue lost such jobs outright. Here a worker's maintenance (at its start, then
RQ's) and its heartbeat first put started jobs whose worker is known to be dead back at
the front of their queue: every job of ours is **at least once** (a seat job takes at
most one seat per job id; a notification may be sent twice only if its worker died
between sending it and RQ recording its end). A job that killed its worker
``MAX_ABANDONED_RUNS`` times is failed instead, by RQ's own clean-up (its failure callback
tells the creator why), so a job that crashes every worker cannot loop.

A worker is known to be dead when its lease (``queuing:lease:NAME``, renewed every few
seconds, expiring by Redis's clock) has lapsed and it no longer listens on its RQ command
channel: Redis's view, true for a worker on any host, resting on no hostname or PID. A
job counts as its worker's from the moment RQ puts it in the started registry (a kill
between RQ's two start steps leaves it "queued" there). Jobs a dead worker had taken
from the queue but not started (RQ's "intermediate queue") go back when no live worker
listens on it. The workers themselves are in recovering_worker.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis
from rq import Queue
from rq.command import PUBSUB_CHANNEL_TEMPLATE
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.worker import Worker

from queuing.connection import text
from queuing.constants import RECOVERY_LOCK_KEY, WORKER_LEASE_KEY
from queuing.untrusted_jobs import fail_unreadable

ABANDONED_RUNS = "abandoned_runs"  # job meta: how many of its workers died running it
MAX_ABANDONED_RUNS = 3
# A worker renews its lease every RENEW_SECONDS; one not renewed for LEASE_SECONDS has
# lapsed. Each worker looks for jobs of dead workers every RECOVERY_SECONDS, so such a
# job runs again within about LEASE_SECONDS + RECOVERY_SECONDS of its worker's death.
LEASE_SECONDS = 10
RENEW_SECONDS = 3
RECOVERY_SECONDS = 5
RECOVERY_LOCK_SECONDS = 10
# A job taken off its queue and still not started this long after is its dead taker's.
STUCK_SECONDS = LEASE_SECONDS


@dataclass
class Recovered:
    """What one recovery did: job ids put back in the queue, and failed; and the jobs it
    found unreadable and failed (untrusted_jobs.fail_unreadable), with the reason."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def worker_dead(connection: redis.Redis, worker_name: str) -> bool:
    """True only when sure: the worker's lease has lapsed and it does not listen on its
    command channel (a live RQ worker always does)."""
    if not worker_name or connection.exists(WORKER_LEASE_KEY.format(name=worker_name)):
        return False
    [(_channel, listeners)] = connection.pubsub_numsub(PUBSUB_CHANNEL_TEMPLATE % worker_name)
    return listeners == 0


def _worker_of(queue: Queue, job: Job, execution_id: str) -> str:
    """The worker that took ``job`` as ``execution_id``: RQ records it with the execution
    first, and in the job only at its second start step."""
    try:
        return Execution.fetch(execution_id, job.id, queue.connection).worker_name or ""
    except Exception:  # no such execution (expired), or unreadable
        return job.worker_name or ""


def recover(queue: Queue, me: str = "", taken: bool = True,
            seen_taken: dict[str, float] | None = None) -> Recovered:
    """Put back, or fail, the jobs of ``queue`` whose worker died, under the queue's
    recovery lock. ``taken``: also the jobs taken and not started, when no other worker
    lives (only a worker holding no such job may ask: at its start or in maintenance).
    ``seen_taken`` (a worker's memory between calls): instead, those still not started
    STUCK_SECONDS after it first saw them, which no live worker leaves so long."""
    done = Recovered()
    _recover_started(queue, done)
    if taken and not _live_workers(queue, me):
        _recover_taken(queue, done)
    elif seen_taken is not None:
        _recover_taken(queue, done, seen_taken)
    return done


def _recover_started(queue: Queue, done: Recovered) -> None:
    registry = StartedJobRegistry(queue=queue)
    to_fail = []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        job = _fetch(queue, job_id, done, started_as=f"{job_id}:{execution_id}")
        if job is None or job.get_status() not in (JobStatus.STARTED, JobStatus.QUEUED):
            continue
        if not worker_dead(queue.connection, _worker_of(queue, job, execution_id)):
            continue
        runs = int(job.meta.get(ABANDONED_RUNS, 0)) + 1
        if runs >= MAX_ABANDONED_RUNS:
            to_fail.append(f"{job_id}:{execution_id}")
            done.failed.append(job_id)
            continue
        job.meta[ABANDONED_RUNS] = runs  # saved with the job by enqueue_job
        take_back(queue, job, execution_id)
        done.requeued.append(job_id)
    if to_fail:
        # Expire their entries now and let RQ fail them: it runs their failure callback.
        queue.connection.zadd(registry.key, dict.fromkeys(to_fail, 0), xx=True)
        registry.cleanup()


def _recover_taken(queue: Queue, done: Recovered,
                   seen: dict[str, float] | None = None) -> None:
    """Jobs moved to the intermediate queue by a worker that died before starting them;
    with ``seen``, only those that were there STUCK_SECONDS ago already."""
    registry = StartedJobRegistry(queue=queue)
    job_ids = queue.intermediate_queue.get_job_ids()
    if seen is not None:
        now = time.monotonic()
        for job_id in set(seen) - set(job_ids):
            del seen[job_id]  # started, or gone
        stuck = [job_id for job_id in job_ids if now - seen.setdefault(job_id, now)
                 >= STUCK_SECONDS]
        job_ids = [job_id for job_id in stuck if job_id not in registry]
    for job_id in job_ids:
        job = _fetch(queue, job_id, done)
        if job is None or job_id in registry or job_id in done.requeued + done.failed:
            continue
        with queue.connection.pipeline() as pipe:
            pipe.multi()
            pipe.lrem(queue.intermediate_queue_key, 1, job_id)
            put_back(queue, job, pipe)
            pipe.execute()
        done.requeued.append(job_id)


def take_back(queue: Queue, job: Job, execution_id: str) -> None:
    """Take ``job`` from its worker's execution ``execution_id`` and put it back at the
    front of ``queue``, in one transaction. Should that worker come back after all (cut
    off from Redis longer than its lease, not dead), its end is refused (:func:`taken_back`)."""
    with queue.connection.pipeline() as pipe:
        pipe.multi()  # one transaction, as RQ's enqueue_job wants its pipeline
        pipe.zrem(StartedJobRegistry(queue=queue).key, f"{job.id}:{execution_id}")
        pipe.lrem(queue.intermediate_queue_key, 0, job.id)  # a multi-queue worker's
        put_back(queue, job, pipe)
        pipe.execute()


def hand_back(worker: Worker, queue: Queue, job: Job, execution: Execution) -> bool:
    """A job ``worker`` started but will not end (it must run again, or the worker stops)
    back at the front of ``queue``, once, its execution gone, in one transaction; unless
    the started registry no longer holds ``execution``: recovery took the job back, or a
    failover lost its start, and it runs where it is now. True when handed back.

    The transaction watches the job's hash, not the busy started registry: whoever takes
    the job back or starts it writes the hash in the same step."""
    started = queue.started_job_registry.key
    with queue.connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(job.key)
                if pipe.zscore(started, execution.composite_key) is None:
                    return False
                pipe.multi()
                worker.cleanup_execution(job, pipeline=pipe, execution=execution)
                pipe.lrem(queue.key, 0, job.id)
                pipe.lrem(queue.intermediate_queue_key, 0, job.id)
                put_back(queue, job, pipe)
                pipe.execute()
                return True
            except redis.WatchError:
                continue  # the job changed hands meanwhile: look again


def taken_back(connection: redis.Redis, job: Job, started_registry: str,
               execution_id: str) -> bool:
    """True when ``job`` was taken back from the execution ``execution_id`` (its worker was
    taken for dead): then the job is queued again, or another worker runs or ran it, and
    that run's end is the one to record. A job cancelled, stopped or deleted while it ran
    is not taken back: RQ's own code ends it. lua/end_job.lua makes the same check."""
    if connection.zscore(started_registry, f"{job.id}:{execution_id}") is not None:
        return False
    status = connection.hget(job.key, "status")
    return status is not None and text(status) not in (JobStatus.CANCELED, JobStatus.STOPPED)


def put_back(queue: Queue, job: Job, pipeline: redis.client.Pipeline) -> None:
    """``job`` back at the front of ``queue``, in ``pipeline``'s transaction, as RQ's
    enqueue_job puts it there. A rate-limited job keeps the slot it holds: RQ's
    enqueue_job would wait for a new one, and refuses a pipeline for it."""
    if job.has_rate_limit:
        queue._enqueue_job(job, pipeline=pipeline, at_front=True)
    else:
        queue.enqueue_job(job, pipeline=pipeline, at_front=True)


def _live_workers(queue: Queue, me: str) -> list[Worker]:
    return [worker for worker in Worker.all(queue=queue)
            if worker.name != me and not worker_dead(queue.connection, worker.name)]


def _fetch(queue: Queue, job_id: str, done: Recovered,
           started_as: str | None = None) -> Job | None:
    """The job, or None: gone, or unreadable (then failed, untrusted_jobs.py)."""
    try:
        job = queue.job_class.fetch(job_id, connection=queue.connection,
                                    serializer=queue.serializer)
    except NoSuchJobError:
        return None
    except Exception as error:  # a malformed hash: RQ's Job.restore raises ValueError...
        reason = fail_unreadable(queue, job_id, error, started_as=started_as)
        if reason is not None:
            done.unreadable.append((job_id, reason))
        return None
    return job if job.origin == queue.name else None


def recover_locked(queue: Queue, me: str = "", taken: bool = True,
                   seen_taken: dict[str, float] | None = None) -> Recovered:
    """:func:`recover` under the queue's recovery lock; nothing if another worker holds it.

    The lock is short-lived (RECOVERY_LOCK_SECONDS), not RQ's 15-minute maintenance lock:
    a worker killed while it recovers must not stop every other from recovering."""
    lock = RECOVERY_LOCK_KEY.format(queue=queue.name)
    if not queue.connection.set(lock, me or "1", nx=True, ex=RECOVERY_LOCK_SECONDS):
        return Recovered()
    try:
        return recover(queue, me, taken, seen_taken)
    finally:
        queue.connection.delete(lock)
