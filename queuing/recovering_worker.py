"""The base of every worker of the project: RQ's SimpleWorker with recovery and leases.

It renews its lease (``queuing:lease:NAME``), looks for jobs of dead workers at its start
and from its heartbeat (recovery.py), fails a job it cannot read instead of dying
(untrusted_jobs.py), and waits through a Redis restart where RQ's own worker would quit
with a job in hand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.worker import WorkerStatus

from queuing import job_events
from queuing.connection import text, wait_until_connected
from queuing.constants import WORKER_LEASE_KEY
from queuing.death_penalty import AlarmDeathPenalty
from queuing.recovery import (
    LEASE_SECONDS,
    RECOVERY_SECONDS,
    RENEW_SECONDS,
    recover_locked,
    taken_back,
)
from queuing.untrusted_jobs import AllowedJob, SkipsUnreadableJobs


class RecoveringWorker(SkipsUnreadableJobs, SimpleWorker):
    """An RQ SimpleWorker that keeps a lease while it lives and puts back the jobs of dead
    workers: in its maintenance (at start, then RQ's every 10 minutes, before RQ's own
    clean-up) and with its heartbeat every RECOVERY_SECONDS. Every worker of the project
    is one: it runs only our job functions (AllowedJob) and fails a job it cannot read
    instead of dying on it (untrusted_jobs.py)."""

    job_class = AllowedJob
    death_penalty_class = AlarmDeathPenalty  # RQ's job timeout, its handler installed once
    _last_recovery = float("-inf")
    _forced_stop = False

    # --- through a Redis restart: RQ's own loop quits on a lost connection ----------

    def through_restarts(self, call: Callable[..., Any], *args: Any, stoppable: bool = False,
                         **kwargs: Any) -> Any:
        """``call(*args, **kwargs)``, again once Redis is back from a restart (the course's
        lines meanwhile), so a job in hand is recorded, not left "started" by a worker that
        quit. Only for calls that may run twice. A stop ends a ``stoppable`` wait."""
        while True:
            try:
                return call(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError):
                sleep = self._sleep_unless_stopping if stoppable else self._sleep_unless_forced
                wait_until_connected(self.connection, sleep=sleep, quiet=True)

    def _sleep_unless_stopping(self, seconds: float) -> None:
        if self._stop_requested:
            raise StopRequested
        self._sleep_unless_forced(seconds)

    def _sleep_unless_forced(self, seconds: float) -> None:
        # A forced stop raises SystemExit where the worker is; RQ takes it, raised inside
        # the recording of a job's end, for the job's own failure, and records that: a
        # wait here for a Redis that is gone must not swallow the stop.
        if self._forced_stop:
            raise SystemExit(1)
        time.sleep(seconds)

    def request_force_stop(self, signum: int, frame: Any) -> None:
        """RQ's cold shutdown (SystemExit), remembered so that no wait for Redis outlives it."""
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            self._forced_stop = True
            raise

    def execute_job(self, job: Job, queue: Queue) -> None:
        """SimpleWorker.execute_job, whose bookkeeping waits for Redis to come back."""
        execution, retried = None, False
        while execution is None:
            try:
                if retried:  # a write whose reply was lost leaves an execution: drop it
                    self._drop_executions_of(job)
                execution = self.prepare_execution(job)
            except (redis.ConnectionError, redis.TimeoutError):
                wait_until_connected(self.connection, quiet=True)
                retried = True
        self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)  # it waits through a restart itself

    def _drop_executions_of(self, job: Job) -> None:
        for member in self.connection.smembers(self.executions_key):
            composite = text(member)
            if composite.startswith(f"{job.id}:"):
                execution = Execution.from_composite_key(composite, self.connection)
                execution.worker_name = self.name
                with self.connection.pipeline() as pipe:
                    execution.delete(job=job, pipeline=pipe)
                    pipe.execute()

    def prepare_job_execution(self, *args: Any, **kwargs: Any) -> None:
        self.through_restarts(super().prepare_job_execution, *args, **kwargs)

    def handle_execution_ended(self, *args: Any, **kwargs: Any) -> None:
        self.through_restarts(super().handle_execution_ended, *args, **kwargs)

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: Any,
                           execution: Execution) -> None:
        if not self._taken_back(job, queue, execution):
            self.through_restarts(super().handle_job_success, job, queue,
                                  started_job_registry, execution)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry: Any = None,
                           exc_string: str = "", execution: Execution | None = None) -> None:
        if not self._taken_back(job, queue, execution):
            self.through_restarts(super().handle_job_failure, job, queue,
                                  started_job_registry, exc_string, execution)

    def _taken_back(self, job: Job, queue: Queue, execution: Execution | None) -> bool:
        """True, with the job's held events dropped, when recovery took the job back while
        it ran here (recovery.taken_back): its end is not recorded, its next run's is.
        (lua/end_job.lua checks the same in the script that records the end; here the
        check and RQ's record are two steps, a recovery in between is not caught.)"""
        if execution is None or not self.through_restarts(
                taken_back, self.connection, job, queue.started_job_registry.key,
                execution.id):
            return False
        job_events.drop_held()
        self.through_restarts(self._forget_execution, job, execution)
        self.report_taken_back(job)
        return True

    def _forget_execution(self, job: Job, execution: Execution) -> None:
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.execute()

    def report_taken_back(self, job: Job) -> None:
        """The line for a job taken back from this worker; processors print their own."""
        self.log.warning("Worker %s: job %s was taken back while this worker was cut off "
                         "from Redis; its end here is not recorded", self.name, job.id)

    def check_for_suspension(self, burst: bool) -> None:
        self.through_restarts(super().check_for_suspension, burst, stoppable=True)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        # RQ's wait for a job starts by marking the worker idle, outside the part of it
        # that waits through a lost connection: Redis going away then stopped the worker.
        if pipeline is not None:
            super().set_state(state, pipeline)
        else:
            self.through_restarts(super().set_state, state, stoppable=True)

    def run_maintenance_tasks(self) -> None:
        # RQ's loop quits on any error of its maintenance: Redis stopping in its middle
        # ("Connection closed by server") stopped the worker, and its processor with it.
        self.through_restarts(super().run_maintenance_tasks, stoppable=True)

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            self._heartbeat(*args, **kwargs)
            return
        with suppress(redis.ConnectionError, redis.TimeoutError):  # RQ's dequeue waits for it
            self._heartbeat()

    def _heartbeat(self, *args: Any, **kwargs: Any) -> None:
        super().heartbeat(*args, **kwargs)
        if time.monotonic() - self._last_recovery >= RECOVERY_SECONDS:
            self._last_recovery = time.monotonic()
            for queue in self.queues:
                self._recover(queue, taken=False)  # it may hold a job just taken

    def _recover(self, queue: Queue, taken: bool = True) -> None:
        seen = self.__dict__.setdefault("_seen_taken", {})
        done = recover_locked(queue, me=self.name, taken=taken, seen_taken=seen)
        for job_id, reason in done.unreadable:
            self.report_unreadable(job_id, reason)

    def register_birth(self) -> None:
        """Take the worker's lease before RQ registers it, and keep it renewed."""
        self._lease_stopped = threading.Event()
        self._renew_lease()
        threading.Thread(target=self._keep_lease, daemon=True,
                         name=f"{self.name} lease").start()
        super().register_birth()

    def register_death(self) -> None:
        super().register_death()
        stopped = getattr(self, "_lease_stopped", None)
        if stopped is not None:
            stopped.set()
        with suppress(redis.RedisError):  # else it lapses by itself
            self.connection.delete(WORKER_LEASE_KEY.format(name=self.name))

    def _renew_lease(self) -> None:
        self.connection.set(WORKER_LEASE_KEY.format(name=self.name), 1, ex=LEASE_SECONDS)

    def _keep_lease(self) -> None:
        while not self._lease_stopped.wait(RENEW_SECONDS):
            # While Redis is away the lease is not renewed; it is once Redis is back.
            with suppress(redis.RedisError):
                self._renew_lease()

    def clean_registries(self) -> None:
        self._last_recovery = time.monotonic()
        for queue in self.queues:
            self._recover(queue)
        super().clean_registries()
