"""The course's job processors as RQ workers: JSON jobs, N at a time, quiet, clean Ctrl-C.

Each worker is an RQ ``SimpleWorker`` (it runs jobs in its own process, without forking
one per job), so it shows in ``rq info`` and rq-dashboard like any other; it is
lean_worker's, which writes RQ's own bookkeeping in one round trip per job. "Two jobs at
a time" is two worker processes: an RQ worker runs one job at a time.

Ctrl-C or SIGTERM asks each worker for RQ's warm shutdown: it ends the job it is running,
then deregisters. In a terminal Ctrl-C reaches every process of the group, and the parent
passes it on too (for a SIGINT sent to it alone); RQ ignores the second copy that arrives
within a second, as it does for its own WorkerPool.

The wait is bounded (WORKER_SHUTDOWN_GRACE, 30 s): a job still running then is stopped
as by a second signal, fails, and its creator hears why. At start, and in RQ's maintenance
every 10 minutes, the jobs of workers that died (SIGKILL) go back to their queue
(recovery.py). While Redis is away, waiting workers print the course's not-connected line.

RQ logs every job it takes and every job that fails (with a traceback, though the creator
hears why). That is hidden unless ``RQ_VERBOSE=1``: then RQ logs as ``rq worker`` does.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from contextlib import suppress

import redis
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.serializers import JSONSerializer

import common
import config
import jobs
import recovery
from lean_worker import LeanWorker

VERBOSE_ENV = "RQ_VERBOSE"
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
# How long a stop signal waits for the running job before it stops it (cold shutdown).
SHUTDOWN_GRACE_ENV = "WORKER_SHUTDOWN_GRACE"
DEFAULT_SHUTDOWN_GRACE_SECONDS = 30.0


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").lower() not in ("", "0", "false", "no")


def logging_level() -> str:
    """INFO (RQ's own default) when RQ_VERBOSE is set, else errors of the worker itself."""
    return "INFO" if verbose() else "ERROR"


def _not_a_job_failure(record: logging.LogRecord) -> bool:
    """Drop the ERROR record RQ writes for each failed job (it carries a ``job_id``)."""
    return not hasattr(record, "job_id")


def configure_logging() -> None:
    """Quiet RQ, unless RQ_VERBOSE asks for its logs."""
    level = logging_level()
    logging.getLogger("rq").setLevel(level)
    if not verbose():
        logging.getLogger("rq.worker").addFilter(_not_a_job_failure)


def shutdown_grace() -> float:
    """WORKER_SHUTDOWN_GRACE, checked when a processor starts (a bad value exits 2)."""
    return config.positive_number(SHUTDOWN_GRACE_ENV, DEFAULT_SHUTDOWN_GRACE_SECONDS)


# RQ's log line when its worker loses Redis while waiting for a job (it then retries).
_LOST_REDIS = "Worker %s: could not connect to Redis instance"


class _CourseLines(logging.LoggerAdapter):
    """RQ's worker log, where losing Redis becomes the course's not-connected line."""

    def error(self, msg: object, *args: object, **kwargs: object) -> None:
        if isinstance(msg, str) and msg.startswith(_LOST_REDIS) and len(args) > 1:
            self.extra["worker"].lost_redis(args[1])
        else:
            self.logger.error(msg, *args, **kwargs)


class ProcessorWorker(LeanWorker):
    """A worker whose warm shutdown is bounded: a job still running ``shutdown_grace()``
    seconds after the stop signal is stopped as a second signal would (it fails, and its
    creator hears why), so a stopped processor always exits.

    When Redis goes away while it waits for a job, it prints the course's not-connected
    line and retries as node_redis does (at most 5 s apart, not RQ's 60 s), then prints
    the connected line."""

    max_connection_wait_time = common.MAX_RETRY_DELAY

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_grace = shutdown_grace()
        self.log = _CourseLines(self.log, {"worker": self})
        self._redis_lost = False

    def lost_redis(self, error: object) -> None:
        common.log(common.not_connected_line(error))
        self._redis_lost = True

    def heartbeat(self, *args: object, **kwargs: object) -> None:
        super().heartbeat(*args, **kwargs)
        if self._redis_lost:  # the first command since Redis came back
            self._redis_lost = False
            common.log(common.CONNECTED)

    def handle_exception(self, job: Job, *exc_info: object) -> None:
        """RQ logs a failed job's traceback here; unless RQ_VERBOSE, not even formatted
        (the creator hears the one-line reason, and RQ's failed registry keeps it)."""
        if verbose():
            super().handle_exception(job, *exc_info)
        else:
            call_exception_handlers(self._exc_handlers, job, *exc_info)

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        if _stop_signalled:  # a stop came before, and its KeyboardInterrupt was lost
            self._stop_requested = True

    def request_stop(self, signum: int, frame: object) -> None:
        super().request_stop(signum, frame)
        # RQ takes a second signal within 1 s for a copy of the first (a terminal sends one
        # to each process of the group), so the grace is never shorter.
        grace = max(self.shutdown_grace, 1.5)
        timer = threading.Timer(grace, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True  # a worker that ends sooner does not wait for it
        timer.start()


def make_worker(queue_name: str, connection: redis.Redis) -> ProcessorWorker:
    return ProcessorWorker([queue_name], connection=connection, serializer=JSONSerializer)


# A stop signal that came before RQ installed its handlers. Its KeyboardInterrupt can be
# lost (raised inside a __del__ that Python is running, it is only printed), so the
# worker also looks at this once RQ's handlers are in place.
_stop_signalled = False


def _interrupt(signum: int, frame: object) -> None:
    global _stop_signalled
    _stop_signalled = True
    raise KeyboardInterrupt


def work(queue_name: str, url: str | None = None) -> int:
    """Run one worker on ``queue_name`` in this process until Ctrl-C or SIGTERM."""
    # Until RQ installs its own handlers, SIGTERM too ends the worker as Ctrl-C does.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    worker = None
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by run_workers
        configure_logging()
        worker = make_worker(queue_name, jobs.rq_connection(url))
        worker.work(logging_level=logging_level())
    except KeyboardInterrupt:
        # Stopped before RQ installed its signal handlers: undo the registration, if any,
        # on new connections (one interrupted while connecting cannot be used again).
        if worker is not None:
            worker.connection.connection_pool.disconnect(inuse_connections=False)
            with suppress(redis.RedisError):
                worker.register_death()
    except redis.ConnectionError as error:
        print(f"Cannot reach Redis: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


def _work_in_child(queue_name: str, url: str | None) -> None:
    sys.exit(work(queue_name, url))


def recover_before_start(queue_name: str, url: str | None = None) -> None:
    """Put back the jobs of dead workers before ours start: with none of ours running,
    even a job a dead worker had taken but not started can be told apart (recovery.py)."""
    connection = jobs.rq_connection(url)
    try:
        recovery.recover_locked(jobs.json_queue(queue_name, connection))
    finally:
        connection.close()


def run_workers(queue_name: str, count: int = 1, url: str | None = None) -> int:
    """Run ``count`` workers on ``queue_name`` (in this process when there is one) until
    Ctrl-C or SIGTERM; return 0, or 1 when a worker could not run."""
    shutdown_grace()  # a bad setting ends the processor now, not at Ctrl-C
    waiting = jobs.rq_connection(url)
    common.wait_until_connected(waiting, quiet=True)  # started before Redis: wait for it
    waiting.close()
    if count == 1:
        return work(queue_name, url)  # its worker's first maintenance recovers
    try:
        recover_before_start(queue_name, url)
    except redis.ConnectionError as error:
        print(f"Cannot reach Redis: {error}", file=sys.stderr, flush=True)
        return 1
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_work_in_child, args=(queue_name, url),
                                 name=f"{queue_name} worker {number}")
                 for number in range(1, count + 1)]

    def pass_on(signum: int, frame: object) -> None:
        for process in processes:
            with suppress(ProcessLookupError):  # already ended
                os.kill(process.pid, signum)

    # A stop signal that comes while the workers start waits until every one can hear it.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        for process in processes:
            process.start()
        previous = {signum: signal.signal(signum, pass_on) for signum in STOP_SIGNALS}
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        for process in processes:
            process.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if all(process.exitcode == 0 for process in processes) else 1
