"""The course's job processors as RQ workers: JSON jobs, N at a time, quiet, clean Ctrl-C.

Each worker is an RQ ``SimpleWorker`` (it runs jobs in its own process, without forking
one per job), so it shows in ``rq info`` and rq-dashboard like any other. "Two jobs at a
time" is two worker processes: an RQ worker runs one job at a time.

Ctrl-C or SIGTERM asks each worker for RQ's warm shutdown: it ends the job it is running,
then deregisters. In a terminal Ctrl-C reaches every process of the group, and the parent
passes it on too (for a SIGINT sent to it alone); RQ ignores the second copy that arrives
within a second, as it does for its own WorkerPool.

RQ logs every job it takes and every job that fails (with a traceback, though the creator
hears why). That is hidden unless ``RQ_VERBOSE=1``: then RQ logs as ``rq worker`` does.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from contextlib import suppress

import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

import jobs

VERBOSE_ENV = "RQ_VERBOSE"
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


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


def make_worker(queue_name: str, connection: redis.Redis) -> SimpleWorker:
    return SimpleWorker([queue_name], connection=connection, serializer=JSONSerializer)


def _interrupt(signum: int, frame: object) -> None:
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
        # Stopped before RQ installed its signal handlers: undo the registration, if any.
        if worker is not None:
            with suppress(redis.RedisError):
                worker.register_death()
    except redis.ConnectionError as error:
        print(f"Cannot reach Redis: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


def _work_in_child(queue_name: str, url: str | None) -> None:
    sys.exit(work(queue_name, url))


def run_workers(queue_name: str, count: int = 1, url: str | None = None) -> int:
    """Run ``count`` workers on ``queue_name`` (in this process when there is one) until
    Ctrl-C or SIGTERM; return 0, or 1 when a worker could not run."""
    if count == 1:
        return work(queue_name, url)
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
