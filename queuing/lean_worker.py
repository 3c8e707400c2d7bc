"""An RQ SimpleWorker that does RQ's own bookkeeping of a job in one round trip.

RQ's SimpleWorker talks to Redis about 23 times per job (state, three heartbeats, the
dequeue, the job hash, two transactions to start the job, one to end it, and more), and
packs and parses some 60 commands in Python: that was ~90 % of a worker's time
(bench/README.md). This worker writes the same things with two Lua scripts
(lean_scripts.py):

1. **start**: take the next job id (as RQ's ``LMOVE``), read the job, and record it
   started exactly as RQ's ``prepare_execution`` and ``prepare_job_execution`` do;
2. **end**: record it finished or failed as RQ's ``handle_job_success`` or
   ``handle_job_failure`` do, with the job's events (job_events.Outbox) in the same
   script, so a creator never hears "completed" before RQ says so; then start the next
   waiting job, as the start script would. While jobs wait, that is one round trip per
   job; a worker that stops puts a job started that way back at the front of the queue.

Jobs stay RQ jobs, in RQ's registries, seen by ``rq info`` and the dashboard. Whatever is
not the plain case goes through RQ's own code: an empty queue (RQ's blocking dequeue, and
RQ's start of the job it returns), retries, repeats, a stopped job, a ``Retry`` result, a TTL of 0,
dependents, several queues. The worker's heartbeat and the ``rq suspend`` check run once
a second, not once per job. Both scripts can be run again after a reply lost to a Redis
restart. tests/test_lean_worker.py compares what this worker and RQ's SimpleWorker leave
in Redis for the same jobs.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import suppress
from datetime import datetime
from typing import Any, NamedTuple
from uuid import uuid4

import redis
from rq.defaults import DEFAULT_FAILURE_TTL, DEFAULT_WORKER_TTL
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.rate_limit import release_slot
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.timeouts import JobTimeoutException
from rq.utils import current_timestamp, now, utcformat
from rq.worker import WorkerStatus

from queuing import job_events
from queuing.connection import wait_until_connected
from queuing.constants import JOB_EVENTS_TTL_SECONDS
from queuing.lean_scripts import END_JOB, START_JOB
from queuing.recovery import RecoveringWorker
from queuing.untrusted_jobs import fail_unreadable

# The worker's heartbeat and the suspension check, at most this often while jobs flow.
HOUSEKEEPING_SECONDS = 1.0


class StartRequest(NamedTuple):
    """What start_job (lean_scripts.py) is called with, and the time it records."""

    keys: list[str]
    args: list[str]
    at: datetime


class LeanWorker(RecoveringWorker):
    """RQ's SimpleWorker, one round trip per job (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_job = self.connection.register_script(START_JOB)
        self._end_job = self.connection.register_script(END_JOB)
        self._outbox: job_events.Outbox | None = None
        self._last_heartbeat = self._last_suspension_check = float("-inf")
        self._registry_keys: dict[tuple[type, str], str] = {}
        self._next: Job | None = None  # started by the last end script, not yet run

    def _lean(self) -> bool:
        return len(self.queues) == 1

    def _registry_key(self, registry_class: type, queue: Queue) -> str:
        """A registry's key, made once (RQ's registry objects are slow to build)."""
        key = (registry_class, queue.name)
        if key not in self._registry_keys:
            self._registry_keys[key] = registry_class(queue=queue).key
        return self._registry_keys[key]

    # --- start ----------------------------------------------------------------------

    def dequeue_job_and_maintain_ttl(self, timeout: int | None,
                                     max_idle_time: int | None = None) -> tuple[Job, Queue] | None:
        """The job the last end script started, or a waiting job started in one round
        trip; RQ's own blocking dequeue when none waits."""
        if self._next is not None:
            started, self._next = self._next, None
            return started, self.queues[0]
        if self._lean() and not self._stop_requested:
            # Busy meanwhile, so that a stop signal (RQ's _shutdown) asks rather than
            # interrupts: a job the script starts is then run, not left "started".
            state, self._state = self._state, WorkerStatus.BUSY
            while True:
                request = self._start_request(self.queues[0])
                reply = self._run_again_after_restarts(self._start_job, request.keys,
                                                       request.args, stoppable=True)
                if not reply:
                    break
                job = self._started(reply, request)
                if job is not None:
                    return job, self.queues[0]
            self._state = state
            if self._stop_requested:
                raise StopRequested
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def _run_again_after_restarts(self, script: Any, keys: list[str], args: list[str],
                                  stoppable: bool = False) -> Any:
        """Run a lean script; when Redis goes away (a restart), wait for it and run the
        same call again. Both scripts are written to be run twice: a second call after a
        reply was lost returns what the first did, without doing it again. A stop signal
        ends the wait for a ``stoppable`` call (a start: nothing to record yet)."""
        while True:
            try:
                return script(keys=keys, args=args)
            except (redis.ConnectionError, redis.TimeoutError):
                sleep = self._sleep_unless_stopping if stoppable else time.sleep
                wait_until_connected(self.connection, sleep=sleep, quiet=True)

    def _sleep_unless_stopping(self, seconds: float) -> None:
        if self._stop_requested:
            raise StopRequested
        time.sleep(seconds)

    def _start_request(self, queue: Queue) -> StartRequest:
        """The keys and arguments of lean_scripts' start_job for the next job of ``queue``."""
        at = now()
        return StartRequest(
            keys=[queue.key, queue.intermediate_queue_key, self.key, self.executions_key,
                  self._registry_key(StartedJobRegistry, queue)],
            args=[self.job_class.redis_job_namespace_prefix, uuid4().hex,
                  repr(at.timestamp()), str(current_timestamp()), utcformat(at), self.name,
                  str(DEFAULT_WORKER_TTL)],
            at=at)

    def _started(self, reply: list, request: StartRequest) -> Job | None:
        """The job start_job started, as RQ has it after prepare_job_execution; None for
        a job deleted while queued (RQ's dequeue skips those too)."""
        job_id, fields = reply[0].decode(), reply[1]
        if len(reply) > 2:  # its key is not a hash
            error = redis.ResponseError(f"WRONGTYPE its key holds a {reply[2].decode()}")
            self._fail_unreadable(job_id, error)
            return None
        if not fields:
            return None
        execution_id = request.args[1]
        job = self.job_class(job_id, connection=self.connection, serializer=self.serializer)
        try:
            job.restore(dict(zip(fields[::2], fields[1::2], strict=True)))
        except Exception as error:  # a malformed hash (untrusted_jobs.py): fail it, go on
            self._unregister_execution(job_id, execution_id)
            self._fail_unreadable(job_id, error, started_as=f"{job_id}:{execution_id}")
            return None
        job._status = JobStatus.STARTED
        job.worker_name, job.started_at, job.last_heartbeat = self.name, request.at, request.at
        job.redis_server_version = self.get_redis_server_version()
        execution = Execution(execution_id, job_id, self.connection, worker_name=self.name)
        execution.created_at = execution.last_heartbeat = request.at
        self.executions[execution_id] = execution
        self._state = WorkerStatus.BUSY
        self.log.info("Worker %s: %s: %s", self.name, job.origin, job.id)
        return job

    def _fail_unreadable(self, job_id: str, error: Exception,
                         started_as: str | None = None) -> None:
        reason = fail_unreadable(self.queues[0], job_id, error, started_as=started_as)
        if reason is not None:
            self.report_unreadable(job_id, reason)

    def _unregister_execution(self, job_id: str, execution_id: str) -> None:
        """Undo the start script's execution records of a job that will not run."""
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.delete(f"rq:execution:{job_id}:{execution_id}")
            pipe.zrem(f"rq:executions:{job_id}", execution_id)
            pipe.srem(self.executions_key, f"{job_id}:{execution_id}")
            pipe.hset(self.key, "state", WorkerStatus.IDLE)
            pipe.execute()

    def execute_job(self, job: Job, queue: Queue) -> None:
        """SimpleWorker.execute_job, holding the job's events for the end script. A job
        RQ's own blocking dequeue took is started by RQ's own code."""
        if not self._lean():
            super().execute_job(job, queue)
            return
        execution = self._execution_of(job)
        rq_start = execution is None
        if rq_start:
            execution = self.prepare_execution(job)
        with job_events.holding_events() as self._outbox:
            try:
                self._perform(job, queue, execution, rq_start)
            finally:
                self._outbox = None

    def _execution_of(self, job: Job) -> Execution | None:
        return next((e for e in self.executions.values() if e.job_id == job.id), None)

    def _perform(self, job: Job, queue: Queue, execution: Execution, rq_start: bool) -> None:
        """RQ's perform_job; its prepare_job_execution was done by the start script,
        unless ``rq_start``."""
        try:
            if rq_start:
                self.prepare_job_execution(job, remove_from_intermediate_queue=True)
            self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")
            job.started_at = now()
            timeout = job.timeout or self.queue_class.DEFAULT_TIMEOUT
            with self.death_penalty_class(timeout, JobTimeoutException, job_id=job.id):
                return_value = job.perform()
            self._finalize_success(job, queue, execution, return_value)
        except:  # noqa: E722 (as RQ's perform_job: whatever the job raised fails it)
            self._finalize_failure(job, queue, execution, sys.exc_info())

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """RQ writes the job's last heartbeat here; the end script writes it."""
        job.ended_at = job.last_heartbeat = now()

    # --- end ------------------------------------------------------------------------

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry,
                           execution: Execution) -> None:
        """RQ's handle_job_success, in the end script."""
        ttl = job.get_result_ttl(self.default_result_ttl)
        if self._outbox is None or ttl == 0 or job.repeats_left:
            self._rq_end(job)
            super().handle_job_success(job, queue, started_job_registry, execution)
            self.set_state(WorkerStatus.IDLE)  # as SimpleWorker.execute_job does
            return
        result = Result(job.id, Result.Type.SUCCESSFUL, self.connection,
                        return_value=job._result, worker_name=self.name,
                        serializer=job.serializer, execution_id=execution.id,
                        execution_started_at=execution.created_at,
                        execution_ended_at=job.ended_at)
        score = ttl if ttl < 0 else current_timestamp() + ttl  # FinishedJobRegistry.add
        job._status = JobStatus.FINISHED
        self._end(job, queue, execution, self._registry_key(FinishedJobRegistry, queue), result,
                  result_ttl=ttl, ttl=ttl, score="+inf" if score == -1 else score,
                  counter="successful_job_count")
        release_slot(job)
        self.log.info("Successfully completed job %s in %ss on worker %s",
                      job.id, job.ended_at - job.started_at, self.name)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry: Any = None,
                           exc_string: str = "", execution: Execution | None = None) -> None:
        """RQ's handle_job_failure, in the end script, for a job that is not retried, not
        stopped on request, and whose failure RQ's default handler records."""
        ttl = job.failure_ttl
        if (self._outbox is None or execution is None or job.should_retry or ttl == 0
                or self._stopped_job_id == job.id or self.disable_default_exception_handler):
            self._rq_end(job)
            super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
            self.set_state(WorkerStatus.IDLE)  # as SimpleWorker.execute_job does
            return
        result = Result(job.id, Result.Type.FAILED, self.connection, exc_string=exc_string,
                        worker_name=self.name, serializer=job.serializer,
                        execution_id=execution.id, execution_started_at=execution.created_at,
                        execution_ended_at=job.ended_at)
        registry_ttl = DEFAULT_FAILURE_TTL if ttl is None else ttl  # FailedJobRegistry.add
        score = registry_ttl if registry_ttl < 0 else current_timestamp() + registry_ttl
        job._status = JobStatus.FAILED
        try:
            self._end(job, queue, execution, self._registry_key(FailedJobRegistry, queue), result,
                      result_ttl=ttl, ttl=registry_ttl, score=score, counter="failed_job_count")
        except Exception:  # as RQ: log it; RQ's clean-up finds the job later
            self.log.exception("Worker %s: failed to persist failure of job %s", self.name, job.id)
            return
        job.send_webhooks(JobStatus.FAILED, exc_string=exc_string)
        self._release_slot_safely(job)

    def _end(self, job: Job, queue: Queue, execution: Execution, registry_key: str,
             result: Result, *, result_ttl: int | None, ttl: int, score: Any,
             counter: str) -> None:
        """Run the end script, then enqueue the job's dependents as RQ would."""
        events = self._outbox.take() if self._outbox else []
        payload = {
            "job_id": job.id,
            "job": _flat({"status": job._status, "started_at": utcformat(job.started_at),
                          "ended_at": utcformat(job.ended_at),
                          "last_heartbeat": utcformat(job.last_heartbeat),
                          "worker_name": self.name}),
            "result": _flat(result.serialize()), "result_ttl": result_ttl, "ttl": ttl,
            "score": score, "counter": counter,
            "working_time": repr((job.ended_at - job.started_at).total_seconds()),
            "composite": execution.composite_key, "execution_id": execution.id,
            "events": [[stream, _flat(event.fields())] for stream, event in events],
            "streams": list(dict.fromkeys(stream for stream, _event in events)),
            "events_ttl": JOB_EVENTS_TTL_SECONDS,
            "next": None,
        }
        # Start the next job in the same script, unless the worker is stopping.
        request = None if self._stop_requested else self._start_request(queue)
        if request is not None:
            payload["next"] = [request.keys, request.args]
        keys = [job.key, self.key, self.executions_key,
                self._registry_key(StartedJobRegistry, queue), registry_key,
                Result.get_key(job.id), execution.key, f"rq:executions:{job.id}",
                job.dependents_key, job.dependencies_key]
        dependents, started = self._run_again_after_restarts(self._end_job, keys,
                                                             [json.dumps(payload)])
        self.executions.pop(execution.id, None)
        self._state = WorkerStatus.IDLE
        if started:
            self._next = self._started(started, request)
        if dependents:
            self._enqueue_dependents_safely(queue, job)

    def _rq_end(self, job: Job) -> None:
        """Before RQ's own end: what the lean path would have written with it."""
        if self._outbox is not None:
            self._outbox.send()
        job.heartbeat(job.last_heartbeat or now(), 0)  # RQ's handle_execution_ended

    def teardown(self) -> None:
        """Before RQ deregisters the worker: a job the last end script started but that
        will not run now (a stop, an error) goes back to the front of its queue."""
        job, self._next = self._next, None
        if job is not None:
            queue = self.queues[0]
            # If Redis is away, recovery puts it back later (recovery.py).
            with suppress(redis.RedisError), self.connection.pipeline() as pipe:
                pipe.multi()
                self.cleanup_execution(job, pipeline=pipe, execution=self._execution_of(job))
                queue.enqueue_job(job, pipeline=pipe, at_front=True)
                pipe.execute()
        super().teardown()

    # --- once a second, not once per job -----------------------------------------------

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat; the one RQ sends after every job is sent once a second."""
        if timeout is None and pipeline is None:
            if time.monotonic() - self._last_heartbeat < HOUSEKEEPING_SECONDS:
                return
            self._last_heartbeat = time.monotonic()
            with suppress(redis.ConnectionError, redis.TimeoutError):  # RQ's dequeue waits
                super().heartbeat(timeout, pipeline)
            return
        super().heartbeat(timeout, pipeline)

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's ``rq suspend`` check, once a second between jobs."""
        if time.monotonic() - self._last_suspension_check < HOUSEKEEPING_SECONDS:
            return
        self._last_suspension_check = time.monotonic()
        with suppress(redis.ConnectionError, redis.TimeoutError):  # RQ's dequeue waits
            super().check_for_suspension(burst)


def _flat(fields: dict[str, Any]) -> list[str]:
    """A hash's fields as HSET/XADD take them, each value encoded as redis-py would."""
    return [part for key, value in fields.items() for part in (key, _encoded(value))]


def _encoded(value: Any) -> str:
    if isinstance(value, str):  # JobStatus too: a str whose str() is its name
        return str.__str__(value)
    return repr(value) if isinstance(value, float) else str(value)
