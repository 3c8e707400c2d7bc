"""The ``reserve_seat`` worker that runs inside a seat server, started by ``GET /process``.

It is an RQ SimpleWorker in a thread. Outside the main thread RQ can install no signal
handlers and its SIGALRM job timeouts fail silently, so this worker uses RQ's
timer-based death penalty and skips signal setup. Its server stops it when it exits
(:meth:`WorkerThread.stop`): the worker ends its current job, then leaves RQ's worker
registry, so ``rq info`` and rq-dashboard show no idle worker of a server that is gone.
To notice that stop, it waits for jobs in slices of ``DEQUEUE_SLICE`` seconds.

A job that meets Redis away, or whose take the replicas have not confirmed (the
replicated mode, seats.confirm_outcome), neither completes nor fails: it goes back to
the front of its queue and runs again, taking a seat only if its first take is gone.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util
import threading
from types import TracebackType

import redis
from rq import Queue
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from queuing import console, recovery
from queuing.connection import not_connected_line
from queuing.constants import RESERVE_SEAT_QUEUE
from queuing.failover_errors import is_not_connected
from queuing.recovering_worker import RecoveringWorker
from queuing.replication import NotReplicated
from queuing.untrusted_jobs import GuardedQueue

RESTART_SECONDS = 1.0
DEQUEUE_SLICE = 1  # seconds, RQ's smallest blocking wait
STOP_TIMEOUT = 10.0  # a job of ours takes milliseconds; the wait is only a bound


class SeatWorker(RecoveringWorker):
    death_penalty_class = TimerDeathPenalty
    queue_class = GuardedQueue  # RQ's maintenance meets unreadable jobs safely
    max_connection_wait_time = 2.0  # retry a lost Redis every 2 s, not up to 60 s

    def __init__(self, *args, stop: threading.Event | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stop = stop or threading.Event()

    def _install_signal_handlers(self) -> None:
        """Signals belong to the main thread: the server's, not this worker's."""

    def report_unreadable(self, job_id: str, reason: str) -> None:
        """A job RQ could not read, or that is not ours to run, failed: the course's line."""
        console.log(f"Seat reservation job {job_id} failed: {reason}")

    def handle_exception(self, job, exc_type, exc_value, traceback) -> None:
        """No traceback on the console: the job's failure callback prints the course's
        line; a job without ours (one not written by a seat server) gets it here."""
        if job.failure_callback is None:
            self.report_unreadable(job.id, str(exc_value))

    def _finalize_failure(self, job: Job, queue: Queue, execution: Execution,
                          exc_info: tuple[type[BaseException] | None, BaseException | None,
                                          TracebackType | None]) -> None:
        """RQ's end of a job that raised, except for a job that must run again: its
        failure callback would tell the reservation failed, and it has not."""
        error = exc_info[1]
        if error is None or not runs_again(error):
            super()._finalize_failure(job, queue, execution, exc_info)
            return
        if isinstance(error, NotReplicated):
            console.log(f"Reservation {job.id} not confirmed yet: {error}; its job runs again")
        else:
            console.log(not_connected_line(error))
        self.through_restarts(self.put_back, job, queue, execution)

    def put_back(self, job: Job, queue: Queue, execution: Execution) -> None:
        """``job`` back at the front of its queue to run again, unless it is no longer
        this worker's (recovery.hand_back)."""
        recovery.hand_back(self, queue, job, execution)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """RQ's wait for a job, in slices, until :attr:`stop` is set; then RQ's work loop
        ends as on Ctrl-C (StopRequested) and its teardown deregisters the worker."""
        if timeout is None:  # burst mode: RQ does not block, and returns None when empty
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while not self.stop.is_set():
            # With max_idle_time RQ returns None once the slice has passed with no job.
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time=DEQUEUE_SLICE)
            if result is not None:
                return result
        raise StopRequested


def runs_again(error: BaseException) -> bool:
    """Whether a job that raised ``error`` is put back rather than failed: Redis was away
    (its take may or may not have happened) or did not confirm it to the replicas."""
    return isinstance(error, NotReplicated) or is_not_connected(error)


class WorkerThread:
    """At most one worker thread per process: the first :meth:`start` starts it, and
    :meth:`stop` (run at the process's exit) stops it."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> bool:
        """Start processing ``reserve_seat`` unless this process already does (or is
        stopping); True if started."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return False
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="reserve_seat worker")
            self._thread.start()
            atexit.register(self.stop)
            if multiprocessing.parent_process() is not None:
                # A worker process started by multiprocessing (granian's workers are) ends
                # with os._exit, which skips atexit; multiprocessing's own exit hooks run.
                multiprocessing.util.Finalize(None, self.stop, exitpriority=1)
            return True

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Let the worker finish its job and deregister; True once its thread has ended."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        # RQ's work loop quits on some Redis errors (one during a job's bookkeeping, say):
        # start a new worker then, so processing resumes when Redis is back.
        while not self._stop.is_set():
            try:
                worker = SeatWorker([RESERVE_SEAT_QUEUE], connection=self.connection,
                                    serializer=JSONSerializer, stop=self._stop)
                worker.work(logging_level="WARNING")
            except redis.RedisError:
                pass
            self._stop.wait(RESTART_SECONDS)
