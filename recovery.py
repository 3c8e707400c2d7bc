"""Jobs whose worker died (SIGKILL, OOM, a lost machine): run them again, at once.

RQ leaves such a job "started" until its entry in the StartedJobRegistry expires (about
90 s after it started) and some worker's maintenance (every 10 minutes) finds it; then
it fails the job, re-running it only if it had a ``Retry``. Kue lost such jobs outright.

Here a worker's maintenance, which RQ runs when a worker starts and every 10 minutes
after, first looks for started jobs whose worker is known to be dead and puts them back
at the front of their queue: every job of ours is **at least once**. The job functions
are written for that: a seat job takes at most one seat per job id (seats.py), and a
notification may be sent a second time only if its worker died after sending it and
before RQ recorded the job as finished. A job that killed its worker
``MAX_ABANDONED_RUNS`` times is failed instead, with RQ's own clean-up (its failure
callback tells the creator why), so a job that crashes every worker cannot loop.

A worker is known to be dead when it ran on this machine, its process is gone, and it no
longer listens on its RQ command channel. A worker elsewhere cannot be checked from here:
its jobs wait for RQ's own expiry. Jobs a dead worker had taken from the queue but not yet
marked started (RQ's "intermediate queue") go back to the queue when no live worker
listens on it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

import redis
from rq import Queue, SimpleWorker
from rq.command import PUBSUB_CHANNEL_TEMPLATE
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.worker import Worker

from untrusted_jobs import AllowedJob, SkipsUnreadableJobs, fail_unreadable

ABANDONED_RUNS = "abandoned_runs"  # job meta: how many of its workers died running it
MAX_ABANDONED_RUNS = 3


@dataclass
class Recovered:
    """What one recovery did: job ids put back in the queue, and failed."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this machine; a zombie (killed, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def worker_dead(connection: redis.Redis, worker_name: str) -> bool:
    """True only when sure: the worker ran here, its process is gone and it does not
    listen on its command channel (a live worker always does)."""
    if not worker_name:
        return False
    hostname, pid = connection.hmget(Worker.redis_worker_namespace_prefix + worker_name,
                                     "hostname", "pid")
    if hostname is None or pid is None or _text(hostname) != socket.gethostname():
        return False  # unknown, or on another machine: leave it to RQ's expiry
    if process_alive(int(pid)):
        return False
    [(_channel, listeners)] = connection.pubsub_numsub(PUBSUB_CHANNEL_TEMPLATE % worker_name)
    return listeners == 0


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def recover(queue: Queue, me: str = "") -> Recovered:
    """Put back, or fail, the jobs of ``queue`` whose worker died; call it under the
    queue's maintenance lock, so two workers never recover the same job."""
    done = Recovered()
    _recover_started(queue, done)
    if not _live_workers(queue, me):
        _recover_taken(queue, done)
    return done


def _recover_started(queue: Queue, done: Recovered) -> None:
    registry = StartedJobRegistry(queue=queue)
    to_fail = []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        job = _fetch(queue, job_id, started_as=f"{job_id}:{execution_id}")
        if job is None or job.get_status() != JobStatus.STARTED:
            continue
        if not worker_dead(queue.connection, job.worker_name or ""):
            continue
        runs = int(job.meta.get(ABANDONED_RUNS, 0)) + 1
        if runs >= MAX_ABANDONED_RUNS:
            to_fail.append(f"{job_id}:{execution_id}")
            done.failed.append(job_id)
            continue
        job.meta[ABANDONED_RUNS] = runs  # saved with the job by enqueue_job
        with queue.connection.pipeline() as pipe:
            pipe.multi()  # one transaction, as RQ's enqueue_job wants its pipeline
            pipe.zrem(registry.key, f"{job_id}:{execution_id}")
            pipe.lrem(queue.intermediate_queue_key, 0, job_id)  # a multi-queue worker's
            queue.enqueue_job(job, pipeline=pipe, at_front=True)
            pipe.execute()
        done.requeued.append(job_id)
    if to_fail:
        # Expire their entries now and let RQ fail them: it runs their failure callback.
        queue.connection.zadd(registry.key, dict.fromkeys(to_fail, 0), xx=True)
        registry.cleanup()


def _recover_taken(queue: Queue, done: Recovered) -> None:
    """Jobs moved to the intermediate queue by a worker that died before starting them."""
    registry = StartedJobRegistry(queue=queue)
    for job_id in queue.intermediate_queue.get_job_ids():
        job = _fetch(queue, job_id)
        if job is None or job_id in registry or job_id in done.requeued + done.failed:
            continue
        with queue.connection.pipeline() as pipe:
            pipe.multi()
            pipe.lrem(queue.intermediate_queue_key, 1, job_id)
            queue.enqueue_job(job, pipeline=pipe, at_front=True)
            pipe.execute()
        done.requeued.append(job_id)


def _live_workers(queue: Queue, me: str) -> list[Worker]:
    return [worker for worker in Worker.all(queue=queue)
            if worker.name != me and not worker_dead(queue.connection, worker.name)]


def _fetch(queue: Queue, job_id: str, started_as: str | None = None) -> Job | None:
    """The job, or None: gone, or unreadable (then failed, untrusted_jobs.py)."""
    try:
        return queue.fetch_job(job_id)
    except NoSuchJobError:
        return None
    except Exception as error:  # a malformed hash: RQ's Job.restore raises ValueError...
        fail_unreadable(queue, job_id, error, started_as=started_as)
        return None


def recover_locked(queue: Queue, me: str = "") -> Recovered:
    """:func:`recover` under RQ's maintenance lock of ``queue``; nothing if another holds it."""
    if not queue.acquire_maintenance_lock():
        return Recovered()
    try:
        return recover(queue, me)
    finally:
        queue.release_maintenance_lock()


class RecoveringWorker(SkipsUnreadableJobs, SimpleWorker):
    """An RQ SimpleWorker whose maintenance (at start, then every 10 minutes) first puts
    back the jobs of dead workers, then runs RQ's own clean-up. Every worker of the
    project is one: it runs only our job functions (AllowedJob) and fails a job it
    cannot read instead of dying on it (untrusted_jobs.py)."""

    job_class = AllowedJob

    def clean_registries(self) -> None:
        for queue in self.queues:
            recover_locked(queue, me=self.name)
        super().clean_registries()
