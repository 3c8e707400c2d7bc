"""An RQ SimpleWorker that does RQ's own bookkeeping of a job in one round trip.

RQ's SimpleWorker talks to Redis about 23 times per job: that was ~90 % of a worker's
time (bench/README.md). This worker writes the same with two Lua scripts (lua/; their
calls in lean_scripts.py): **start** takes the job at the head of the queue and records
it started (RQ's dequeue, ``prepare_execution``, ``prepare_job_execution``); **end**
records it finished or failed (``handle_job_success``, ``handle_job_failure``) after the
job's events (job_events.Outbox), so a creator never hears "completed" before RQ says
so. The next job's start goes in the end's round trip, unless RQ would do something
first: free the job's rate-limit slot, enqueue its dependents, or stop for ``rq
suspend``. Each reply names the jobs then first in the queue (lean_scripts.HEADS), whose
keys the next start passes in KEYS: when other workers took the first, the next is at the
head, and the start needs no second try. Whatever is not the plain case is RQ's own
code: an empty queue, retries, repeats, a stopped job, a ``Retry``, a TTL of 0, several
queues, a job cancelled or deleted while it ran. Both scripts may run again after a lost reply.

Used only with the RQ release the scripts restate (lean_scripts.RESTATED_RQ; workers.py).
tests/test_lean_worker.py compares it with SimpleWorker; RQ 3.0.0's own test suite (803
tests, tools/rq_suite) gives the same outcomes with this worker as its SimpleWorker as
with RQ's. One difference is by design: RQ starts a job in two transactions (into the
intermediate queue, then started), and a worker killed between them leaves a job there
for recovery; the start script does both at once, so no job of this worker waits there.
"""

from __future__ import annotations

import sys
import time
from contextlib import suppress
from typing import Any

import redis
from rq.callbacks import execute_failure_callback
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.logutils import blue, green
from rq.queue import Queue
from rq.rate_limit import release_slot
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.timeouts import JobTimeoutException
from rq.utils import current_timestamp, now
from rq.worker import WorkerStatus

from queuing import job_events, lean_scripts, tracebacks
from queuing.recovering_worker import RecoveringWorker
from queuing.recovery import hand_back
from queuing.untrusted_jobs import fail_unreadable

# The worker's heartbeat, at most this often while jobs flow.
HOUSEKEEPING_SECONDS = 1.0
# The end script's outcomes (lua/end_job.lua); "ended_before" (a reply lost) is ENDED.
ENDED, TAKEN_BACK, NOT_STARTED = "ended", "taken_back", "not_started"


class LeanWorker(RecoveringWorker):
    """RQ's SimpleWorker, one round trip per job (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scripts = lean_scripts.Scripts(self.connection)
        self._outbox: job_events.Outbox | None = None
        self._last_heartbeat = float("-inf")
        self._registry_keys: dict[tuple[type, str], str] = {}
        self._heads: list[str] = []  # the job ids last seen first in the queue
        self._next: Job | None = None  # started by the last end's round trip, not yet run

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
        """The job the last end started, or a waiting job started in one round trip;
        RQ's own blocking dequeue when none waits."""
        if self._next is not None:
            started, self._next = self._next, None
            return started, self.queues[0]
        if self._lean() and not self._stop_requested:
            # Busy meanwhile, so that a stop signal (RQ's _shutdown) asks rather than
            # interrupts: a job the script starts is then run, not left "started".
            state, self._state = self._state, WorkerStatus.BUSY
            job = self._start_waiting_job(self.queues[0], burst=timeout is None)
            if job is not None:
                return job, self.queues[0]
            self._state = state
            if self._stop_requested:
                raise StopRequested
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def _start_waiting_job(self, queue: Queue, burst: bool) -> Job | None:
        """Start the job at the head of ``queue``; None when it is empty."""
        while not self._stop_requested:
            if not self._heads:
                heads = self.through_restarts(self.connection.lrange, queue.key, 0,
                                              lean_scripts.HEADS - 1, stoppable=True)
                if not heads:
                    return None
                self._heads = [head.decode() for head in heads]
            start = self._start_call(queue, self._heads)
            [reply] = self.through_restarts(self._scripts.run, [start.call], stoppable=True)
            outcome, job = self._started(reply, start, queue)
            if job is not None:
                return job
            if outcome == "empty":
                return None
            if outcome == "held":  # suspended: wait as RQ's loop does, then try again
                self._wait_while_suspended(burst)
        return None

    def _start_call(self, queue: Queue, job_ids: list[str],
                    wait_for: str | None = None) -> lean_scripts.StartCall:
        return lean_scripts.start_call(self, queue.key, queue.intermediate_queue_key,
                                       self._registry_key(StartedJobRegistry, queue), job_ids,
                                       wait_for)

    def _started(self, reply: list, start: lean_scripts.StartCall,
                 queue: Queue) -> tuple[str, Job | None]:
        """The start script's outcome, and the job it started, as RQ has it after
        prepare_job_execution (None for a job that will not run)."""
        outcome, job_id, detail, *heads = (part.decode() if isinstance(part, bytes) else part
                                           for part in reply)
        self._heads = [head for head in heads if head]
        if outcome == "not_hash":
            error = redis.ResponseError(f"WRONGTYPE its key holds a {detail}")
            self._fail_unreadable(job_id, error)
        if outcome != "started":
            return outcome, None
        try:
            job = lean_scripts.started_job(self, job_id, reply[2], start)
        except Exception as error:  # a malformed hash (untrusted_jobs.py): fail it, go on
            lean_scripts.undo_start(self, job_id, start.execution_id)
            self._fail_unreadable(job_id, error, started_as=f"{job_id}:{start.execution_id}")
            return "unreadable", None
        self._state = WorkerStatus.BUSY
        if self.log_job_description:  # as RQ's dequeue_job_and_maintain_ttl logs it
            self.log.info("Worker %s: %s: %s (%s)", self.name, green(queue.name),
                          blue(job.description), job.id)
        else:
            self.log.info("Worker %s: %s: %s", self.name, green(queue.name), job.id)
        return outcome, job

    def _fail_unreadable(self, job_id: str, error: Exception,
                         started_as: str | None = None) -> None:
        reason = fail_unreadable(self.queues[0], job_id, error, started_as=started_as)
        if reason is not None:
            self.report_unreadable(job_id, reason)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """SimpleWorker.execute_job, holding the job's events for the end script. A job
        RQ's own blocking dequeue took is started by RQ's own code."""
        if not self._lean():
            super().execute_job(job, queue)
            return
        execution = next((e for e in self.executions.values() if e.job_id == job.id), None)
        rq_start = execution is None
        if rq_start:
            execution = self.prepare_execution(job)
        with job_events.holding_events() as self._outbox:
            try:
                self._perform(job, queue, execution, rq_start)
            finally:
                self._outbox = None

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

    def _finalize_failure(self, job: Job, queue: Queue, execution: Execution,
                          exc_info: tracebacks.ExcInfo) -> None:
        """RQ 3.0's _finalize_failure, whose traceback text (what RQ stores) is made by
        tracebacks.format_exc_info: the same text, for a fraction of the CPU."""
        self.log.debug("Worker %s: job %s raised an exception.", self.name, job.id)
        job._status = JobStatus.FAILED
        self.handle_execution_ended(job, queue, job.failure_callback_timeout)
        try:
            execute_failure_callback(job, self.death_penalty_class, *exc_info)
        except:  # noqa: E722 (as RQ: a failing callback's error is the job's failure)
            exc_info = sys.exc_info()
        self.handle_exception(job, *exc_info)
        self.handle_job_failure(job=job, exc_string=tracebacks.format_exc_info(exc_info),
                                queue=queue, started_job_registry=queue.started_job_registry,
                                execution=execution)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """RQ writes the job's last heartbeat here; the end script writes it."""
        job.ended_at = job.last_heartbeat = now()

    # --- end ------------------------------------------------------------------------

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry,
                           execution: Execution) -> None:
        """RQ's handle_job_success, in the end script."""
        ttl = job.get_result_ttl(self.default_result_ttl)
        result = self._result(job, execution, Result.Type.SUCCESSFUL, return_value=job._result)
        score = ttl if ttl < 0 else current_timestamp() + ttl  # FinishedJobRegistry.add
        job._status = JobStatus.FINISHED
        outcome = "rq"
        if not (self._outbox is None or ttl == 0 or job.repeats_left):
            outcome = self._end(job, queue, execution, FinishedJobRegistry, result,
                                result_ttl=ttl, ttl=ttl, score="+inf" if score == -1 else score,
                                counter="successful_job_count")
        if outcome == TAKEN_BACK:
            return
        if outcome != ENDED:
            self._rq_end(job)
            super().handle_job_success(job, queue, started_job_registry, execution)
            self.set_state(WorkerStatus.IDLE)  # as SimpleWorker.execute_job does
            return
        release_slot(job)
        self.log.info("Successfully completed %s in %ss on worker %s",
                      f"{job.description} job" if self.log_job_description else f"job {job.id}",
                      job.ended_at - job.started_at, self.name)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry: Any = None,
                           exc_string: str = "", execution: Execution | None = None) -> None:
        """RQ's handle_job_failure, in the end script, for a job that is not retried, not
        stopped on request, and whose failure RQ's default handler records."""
        ttl, outcome = job.failure_ttl, "rq"
        if not (self._outbox is None or execution is None or job.should_retry or ttl == 0
                or self._stopped_job_id == job.id or self.disable_default_exception_handler):
            result = self._result(job, execution, Result.Type.FAILED, exc_string=exc_string)
            registry_ttl = DEFAULT_FAILURE_TTL if ttl is None else ttl  # FailedJobRegistry.add
            job._status = JobStatus.FAILED
            try:
                outcome = self._end(job, queue, execution, FailedJobRegistry, result,
                                  result_ttl=ttl, ttl=registry_ttl, counter="failed_job_count",
                                  score=registry_ttl if registry_ttl < 0
                                  else current_timestamp() + registry_ttl)
            except Exception:  # as RQ: log it; RQ's clean-up finds the job later
                self.log.exception("Worker %s: failed to persist failure of job %s",
                                   self.name, job.id)
                return
        if outcome == TAKEN_BACK:
            return
        if outcome != ENDED:
            self._rq_end(job)
            super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
            self.set_state(WorkerStatus.IDLE)  # as SimpleWorker.execute_job does
            return
        job.send_webhooks(JobStatus.FAILED, exc_string=exc_string)
        self._release_slot_safely(job)

    def _result(self, job: Job, execution: Execution, result_type: Result.Type,
                **value: Any) -> Result:
        """RQ's Result of ``execution``. The job's serializer is resolved already: Result()
        would check it again against RQ's typing.Protocol (~10 us a job), so it is set after."""
        result = Result(job.id, result_type, self.connection, worker_name=self.name,
                        execution_id=execution.id, execution_started_at=execution.created_at,
                        execution_ended_at=job.ended_at, **value)
        result.serializer = job.serializer
        return result

    def _end(self, job: Job, queue: Queue, execution: Execution, registry_class: type,
             result: Result, **end: Any) -> str:
        """Run the end script (and the next start), then enqueue the job's dependents as
        RQ would; ENDED, or TAKEN_BACK (nothing written: the job's next run ends it), or
        NOT_STARTED for a job cancelled or deleted while it ran: RQ's own code ends it."""
        started_registry = self._registry_key(StartedJobRegistry, queue)
        calls = [lean_scripts.end_call(
            job, self, execution, started_registry, self._registry_key(registry_class, queue),
            result, events=self._outbox.take() if self._outbox else [], **end)]
        start = None
        if not self._stop_requested and self._heads and not job.has_rate_limit:
            start = self._start_call(queue, self._heads, wait_for=job.dependents_key)
            calls.append(start.call)
        replies = self.through_restarts(self._scripts.run, calls)
        outcome, dependents = replies[0][0].decode(), replies[0][1]
        if start is not None:
            self._next = self._started(replies[1], start, queue)[1]
        if outcome == NOT_STARTED:
            return outcome
        self.executions.pop(execution.id, None)
        self._state = WorkerStatus.IDLE
        if outcome == TAKEN_BACK:
            self.report_taken_back(job)
            return outcome
        if dependents:
            self._enqueue_dependents_safely(queue, job)
        return ENDED

    def _rq_end(self, job: Job) -> None:
        """Before RQ's own end: what the lean path would have written with it."""
        if self._outbox is not None:
            self._outbox.send()
        job.heartbeat(job.last_heartbeat or now(), 0)  # RQ's handle_execution_ended

    def teardown(self) -> None:
        """Before RQ deregisters the worker: a job the last end started but that will not
        run now (a stop, an error) goes back to the front of its queue, as never taken."""
        job, self._next = self._next, None
        if job is not None:
            job.started_at = job.worker_name = job.last_heartbeat = None
            execution = next(e for e in self.executions.values() if e.job_id == job.id)
            with suppress(redis.RedisError):  # Redis away: recovery puts it back later
                hand_back(self, self.queues[0], job, execution)
        super().teardown()
        self._scripts.release()

    # --- between jobs ------------------------------------------------------------------

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        """RQ's heartbeat; the one RQ sends after every job is sent once a second."""
        if not args and not kwargs:
            if time.monotonic() - self._last_heartbeat < HOUSEKEEPING_SECONDS:
                return
            self._last_heartbeat = time.monotonic()
        super().heartbeat(*args, **kwargs)

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's ``rq suspend`` check, in the start script instead (it starts nothing while
        RQ's flag is set): a job started before the suspension runs, and no round trip is
        spent on the flag between jobs."""
        if not self._lean():
            self._wait_while_suspended(burst)

    def _wait_while_suspended(self, burst: bool) -> None:
        super().check_for_suspension(burst)

