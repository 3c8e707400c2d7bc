"""The course's job processors as RQ workers: JSON jobs, N at a time, quiet, clean Ctrl-C.

Each worker is an RQ ``SimpleWorker`` (it runs jobs in its own process, without forking
one per job), so it shows in ``rq info`` and rq-dashboard like any other. It is
lean_worker's, which writes RQ's own bookkeeping in one round trip per job, when the
installed RQ is the release its scripts restate and LEAN_WORKER is on; otherwise RQ's own
(recovering_worker.RecoveringWorker). "Two jobs at a time" is two worker processes.

Ctrl-C or SIGTERM asks each worker for RQ's warm shutdown: it ends the job it is running,
then deregisters. The signals follow stopping.py's policy, not RQ's handlers (which raise
from the handler wherever the worker is): a worker waiting for a job waits a second at a
time and looks for a stop before each wait. In a terminal Ctrl-C reaches every process
of the group, and the parent passes it on too (for a signal sent to it alone); a copy
that arrives within a second of the first is ignored.

The wait is bounded (WORKER_SHUTDOWN_GRACE, 30 s): a job still running then is stopped
as by a second signal, fails, and its creator hears why. The jobs of workers that died
(SIGKILL) go back to their queue (recovery.py). While Redis is away, waiting workers
print the course's not-connected line. Each failed job prints one line with its reason
on stderr, except the failures the course expects (jobs.ExpectedJobFailure), which only
its creator hears; a job with RQ's ``Retry`` says whether it will be tried again. RQ's
own log is hidden unless ``RQ_VERBOSE=1``.

A worker is named after its process type, for ``rq info`` and rq-dashboard: ``DYNO``
(Heroku's ``worker.1``) or ``HONCHO_PROCESS_NAME`` (honcho's), else the queue and host;
then the PID (``worker.1.4242``, ``sms.myhost.4242``). With
``with_scheduler`` it also runs RQ's scheduler, in a thread rather than RQ's forked
process (nothing is left behind when the worker is killed): the jobs RQ's ``Retry``
delays come back on time.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import socket
import sys
import threading
import traceback
from contextlib import suppress
from datetime import timedelta
from typing import Any

import redis
from rq.exceptions import StopRequested
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import Worker

from queuing import console, job_events, jobs, lean_scripts, recovery, settings, stopping
from queuing.connection import (
    CONNECTED,
    MAX_RETRY_DELAY,
    not_connected_line,
    rq_client,
    wait_until_connected,
)
from queuing.constants import FAILURE_META, RETRIES_META, WORKER_LEASE_KEY
from queuing.job_events import failure_reason
from queuing.lean_worker import LeanWorker
from queuing.recovering_worker import RecoveringWorker
from queuing.thread_scheduler import ThreadScheduler
from queuing.untrusted_jobs import GuardedQueue

NOTIFICATION_JOB = "Notification job"
# How long a stopping worker waits for its scheduler thread.
SCHEDULER_STOP_SECONDS = 5
# How long an idle worker's blocking wait for a job lasts before it looks for a stop.
IDLE_WAIT_SECONDS = 1


def logging_level() -> str:
    """INFO (RQ's own default) when RQ_VERBOSE is set, else errors of the worker itself."""
    return "INFO" if settings.rq_verbose() else "ERROR"


def _not_a_job_failure(record: logging.LogRecord) -> bool:
    """Drop the ERROR record RQ writes for each failed job (it carries a ``job_id``)."""
    return not hasattr(record, "job_id")


def configure_logging() -> None:
    """Quiet RQ, unless RQ_VERBOSE asks for its logs."""
    logging.getLogger("rq").setLevel(logging_level())
    if not settings.rq_verbose():
        logging.getLogger("rq.worker").addFilter(_not_a_job_failure)


# RQ's log lines when its worker loses Redis while waiting for a job (it then retries),
# and when its work loop quits on an exception (with its traceback).
_LOST_REDIS = "Worker %s: could not connect to Redis instance"
_QUITTING = "Worker %s: found an unhandled exception, quitting..."


def _where(error: BaseException | None) -> str:
    """`` (in work > execute_job > heartbeat)``: RQ's and our calls that led from the work
    loop to ``error``, so the one line says where the worker met it."""
    frames = traceback.extract_tb(error.__traceback__) if error is not None else []
    names = [frame.name for frame in frames
             if "/rq/" in frame.filename or "/queuing/" in frame.filename]
    return f" (in {' > '.join(names[:8])})" if names else ""


class _CourseLines(logging.LoggerAdapter):
    """RQ's worker log, where losing Redis becomes the course's not-connected line, and a
    work loop that quits on an error one line saying why (the traceback with RQ_VERBOSE)."""

    def error(self, msg: object, *args: object, **kwargs: object) -> None:
        if isinstance(msg, str) and msg.startswith(_LOST_REDIS) and len(args) > 1:
            self.extra["worker"].lost_redis(args[1])
        elif msg == _QUITTING and not settings.rq_verbose():
            error = sys.exc_info()[1]
            detail = str(error).strip().splitlines()
            console.log_error(f"Worker {args[0] if args else ''} stopped on an error: "
                             f"{type(error).__name__}{': ' + detail[0] if detail else ''}"
                             f"{_where(error)}")
        else:
            self.logger.error(msg, *args, **kwargs)


class StoppableQueue(GuardedQueue):
    """RQ's queue, whose dequeue (an idle worker's wait for a job) first looks whether
    the process was asked to stop: that is where an idle worker stops, with no job taken."""

    @classmethod
    def dequeue_any(cls, *args: Any, **kwargs: Any) -> Any:
        if stopping.requested():
            raise StopRequested
        return super().dequeue_any(*args, **kwargs)


def worker_name(connection: redis.Redis, role: str, env: settings.Env | None = None) -> str:
    """A name that says which process runs the worker: ``DYNO`` when the platform sets it
    (``worker.1``), else ``role`` and the host; then the PID, as two workers of one process
    type run in one dyno or host. A name still held in Redis (by a worker killed without
    deregistering: a PID is used again in a restarted container; or by a worker of a
    look-alike container starting at the same moment) gets a random suffix: RQ refuses a
    live duplicate, and recovery.py must not take a new worker for a dead one."""
    dyno = settings.dyno() if env is None else settings.dyno(env)
    base = dyno or f"{role}.{socket.gethostname().split('.')[0]}"
    name = f"{base}.{os.getpid()}"
    while not _claim_name(connection, name):
        name = f"{base}.{os.getpid()}.{secrets.token_hex(2)}"
    return name


def _claim_name(connection: redis.Redis, name: str) -> bool:
    """Take ``name``'s lease, unless a live RQ worker has that name or someone holds its
    lease. Taking the lease (SET NX) is what makes the name ours: of two workers asking at
    once, one gets it. The worker renews that lease from its start on (recovering_worker)."""
    key = Worker.redis_worker_namespace_prefix + name
    with connection.pipeline(transaction=False) as pipe:
        pipe.exists(key)
        pipe.hexists(key, "death")  # deregistered: RQ lets the name be used again
        registered, deregistered = pipe.execute()
    if registered and not deregistered:
        return False
    return bool(connection.set(WORKER_LEASE_KEY.format(name=name), 1, nx=True,
                               ex=recovery.LEASE_SECONDS))


class ProcessorBehaviour:
    """A processor's worker: it stops on stopping.py's policy, prints one line per failed
    job, and its warm shutdown is bounded: a job still running WORKER_SHUTDOWN_GRACE seconds
    after the stop signal is stopped as by a second signal, so a processor always exits.
    While Redis is away it prints the course's lines and retries at most 5 s apart."""

    max_connection_wait_time = MAX_RETRY_DELAY
    queue_class = StoppableQueue

    def __init__(self, *args: Any, job_label: str = NOTIFICATION_JOB, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_grace = settings.worker_shutdown_grace()
        self.job_label = job_label
        self.log = _CourseLines(self.log, {"worker": self})
        self._redis_lost = False
        self._drained = False  # a burst worker found its queue empty
        self._stopping = False
        self._remove_stop_hook: Any = None

    @property
    def dequeue_timeout(self) -> int:
        return IDLE_WAIT_SECONDS

    @property
    def stopped_as_asked(self) -> bool:
        """Its loop ended on a stop request or an empty queue in burst mode, not on an
        error (RQ's loop quits on an unexpected exception or a Redis timeout)."""
        return self._stop_requested or self._drained or stopping.requested()

    def dequeue_job_and_maintain_ttl(self, timeout: int | None,
                                     max_idle_time: int | None = None) -> Any:
        result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        self._drained = result is None
        return result

    def lost_redis(self, error: object) -> None:
        console.log(not_connected_line(error))
        self._redis_lost = True

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        super().heartbeat(*args, **kwargs)
        if self._redis_lost:  # the first command since Redis came back
            self._redis_lost = False
            console.log(CONNECTED)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """One line per failed job, with the reason its creator hears. RQ's own log of it
        (with a traceback) only with RQ_VERBOSE; the failed registry keeps it anyway."""
        exc_type, exc_value = exc_info[0], exc_info[1]
        reason = failure_reason(exc_type, exc_value)
        if not (exc_type is not None and issubclass(exc_type, jobs.ExpectedJobFailure)):
            console.log_error(f"{self.job_label} {job.id} failed{self._retry_note(job)}: {reason}")
        if job.retries_left is not None:  # for whoever asks how the job is doing
            job.meta[FAILURE_META] = reason
            with suppress(redis.RedisError):
                job.save_meta()
        if settings.rq_verbose():
            super().handle_exception(job, *exc_info)
        else:
            call_exception_handlers(self._exc_handlers, job, *exc_info)

    def _retry_note(self, job: Job) -> str:
        """`` (retry 1 of 3 in 10s)`` or `` (gave up after 3 retries)`` for a job with RQ's
        Retry (RQ retries it after this), else nothing."""
        if job.retries_left is None or self._stopped_job_id == job.id:
            return ""
        total = max(int(job.meta.get(RETRIES_META, 0)), job.retries_left)
        if job.retries_left == 0:
            return f" (gave up after {total} retr{'y' if total == 1 else 'ies'})"
        return (f" (retry {total - job.retries_left + 1} of {total} "
                f"in {job.get_retry_interval()}s)")

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         *args: Any, **kwargs: Any) -> None:
        """RQ's, with the scheduler in a thread (ThreadScheduler) when not in burst mode."""
        self.scheduler = ThreadScheduler(self.queues, connection=self.connection,
                                         logging_level=logging_level or "INFO",
                                         serializer=self.serializer)
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return  # another worker's scheduler has the queue; maintenance asks again
        if burst:
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()
        else:
            self.scheduler.start()

    def stop_scheduler(self) -> None:
        if self.scheduler is not None and self.scheduler._process is not None:
            self.scheduler.request_stop()
            self.scheduler._process.join(SCHEDULER_STOP_SECONDS)

    def report_taken_back(self, job: Job) -> None:
        """This worker was taken for dead (cut off from Redis longer than its lease) and
        its job went back to the queue: its line."""
        console.log_error(f"{self.job_label} {job.id} was taken back while this worker was "
                          "cut off from Redis: its end here is not recorded, its next run's is")

    def report_unreadable(self, job_id: str, reason: str) -> None:
        """A job whose hash could not be read was failed (untrusted_jobs.py): its line."""
        console.log_error(f"{self.job_label} {job_id} failed: {reason}")

    def _install_signal_handlers(self) -> None:
        """Instead of RQ's handlers: stopping.py's policy, with this worker's hook."""
        self._remove_stop_hook = stopping.on_signal(self._on_stop_signal)

    def _on_stop_signal(self, signum: int | None, first: bool) -> None:
        if not self._stopping:  # the first signal, maybe before this hook was in place
            # _stopping last: a copy of the signal handled inside this call (Python may run
            # the next handler between any two lines) must find the date RQ compares it with.
            self._shutdown_requested_date = now() - timedelta(seconds=stopping.since_request())
            self._stop_requested = True
            self._stopping = True
            # RQ takes a second signal within 1 s for a copy of the first, so the grace is
            # never shorter; the timer's SIGTERM is then the second signal.
            grace = max(self.shutdown_grace, stopping.COPY_SECONDS + 0.5)
            timer = threading.Timer(grace, os.kill, (os.getpid(), signal.SIGTERM))
            timer.daemon = True  # a worker that ends sooner does not wait for it
            timer.start()
        elif not first:
            self.request_force_stop(signum or signal.SIGTERM, None)

    def teardown(self) -> None:
        if self._remove_stop_hook is not None:
            self._remove_stop_hook()
        super().teardown()


class ProcessorWorker(ProcessorBehaviour, RecoveringWorker):
    """A processor's worker on RQ's own SimpleWorker code."""

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        # RQ calls a job's success or failure callback before it records the job's end:
        # the events are held until then, so a creator that hears "completed" and asks
        # RQ finds the job finished (job_events.Outbox).
        with job_events.holding_events():
            return super().perform_job(job, queue, *args, **kwargs)


class LeanProcessorWorker(ProcessorBehaviour, LeanWorker):
    """A processor's worker on lean_worker's scripts."""


def processor_worker_class() -> type[ProcessorWorker] | type[LeanProcessorWorker]:
    """The lean worker only where it is proven: with the RQ release its scripts restate,
    and LEAN_WORKER on (a bad LEAN_WORKER raises settings.ConfigError)."""
    if settings.lean_worker() and lean_scripts.restates_installed_rq():
        return LeanProcessorWorker
    return ProcessorWorker


def make_worker(queue_name: str, connection: redis.Redis, serializer: Any = JSONSerializer,
                job_label: str = NOTIFICATION_JOB) -> ProcessorWorker | LeanProcessorWorker:
    return processor_worker_class()([queue_name], connection=connection,
                                    name=worker_name(connection, queue_name),
                                    serializer=serializer, job_label=job_label)


def work(queue_name: str, url: str | None = None, *, serializer: Any = JSONSerializer,
         job_label: str = NOTIFICATION_JOB, burst: bool = False,
         with_scheduler: bool = False) -> int:
    """Run one worker on ``queue_name`` in this process until Ctrl-C or SIGTERM (or, with
    ``burst``, until the queue is empty); 0, or 1 when the worker quit on an error.
    ``with_scheduler``: it also queues the jobs whose delay is over (RQ's ``Retry``)."""
    if stopping.requested():  # before it registers: nothing to undo
        return 0
    configure_logging()
    try:
        worker = make_worker(queue_name, rq_client(url), serializer, job_label)
        worker.work(burst=burst, logging_level=logging_level(), with_scheduler=with_scheduler)
    except redis.ConnectionError as error:
        console.log_error(f"Cannot reach Redis: {error}")
        return 1
    return 0 if worker.stopped_as_asked else 1


def _work_in_child(queue_name: str, url: str | None, options: dict[str, Any]) -> None:
    sys.exit(work(queue_name, url, **options))


def recover_before_start(queue_name: str, url: str | None = None,
                         job_label: str = NOTIFICATION_JOB) -> None:
    """Put back the jobs of dead workers before ours start: with none of ours running,
    even a job a dead worker had taken but not started can be told apart (recovery.py)."""
    connection = rq_client(url)
    try:
        done = recovery.recover_locked(jobs.json_queue(queue_name, connection))
    finally:
        connection.close()
    for job_id, reason in done.unreadable:
        console.log_error(f"{job_label} {job_id} failed: {reason}")


def run_workers(queue_name: str, count: int = 1, url: str | None = None,
                **options: Any) -> int:
    """Run ``count`` workers on ``queue_name`` (in this process when there is one) until
    Ctrl-C or SIGTERM; return 0, or 1 when a worker could not run or quit on an error
    (then the others are stopped too: a processor does not run on at half strength).
    ``options`` go to :func:`work`."""
    settings.worker_shutdown_grace()  # a bad setting ends the processor now, not at Ctrl-C
    processor_worker_class()
    waiting = rq_client(url)
    try:  # started before Redis: wait for it (a stop meanwhile ends the wait)
        wait_until_connected(waiting, quiet=True, sleep=stopping.sleep)
    except stopping.Stopped:
        return 0
    finally:
        waiting.close()
    if count == 1:
        return work(queue_name, url, **options)  # its worker's first maintenance recovers
    try:
        recover_before_start(queue_name, url, options.get("job_label", NOTIFICATION_JOB))
    except redis.ConnectionError as error:
        console.log_error(f"Cannot reach Redis: {error}")
        return 1
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_work_in_child, args=(queue_name, url, options),
                                 name=f"{queue_name} worker {number}")
                 for number in range(1, count + 1)]

    def pass_on(signum: int | None, first: bool) -> None:
        """Each stop signal to every worker started: they tell copies apart. A worker
        forked after a stop was asked for starts stopped (stopping.py)."""
        for process in processes:
            if process.pid is not None:
                with suppress(ProcessLookupError):  # already ended
                    os.kill(process.pid, signum or signal.SIGTERM)

    remove = stopping.on_signal(pass_on)
    try:
        with stopping.signals_held():  # a stop that comes meanwhile reaches every worker
            for process in processes:
                process.start()
        running = list(processes)
        while running:
            ended = multiprocessing.connection.wait([process.sentinel for process in running])
            for process in [process for process in running if process.sentinel in ended]:
                process.join()
                running.remove(process)
                if process.exitcode != 0:  # a worker died: the processor has failed
                    pass_on(signal.SIGTERM, True)
    finally:
        remove()
    return 0 if all(process.exitcode == 0 for process in processes) else 1
