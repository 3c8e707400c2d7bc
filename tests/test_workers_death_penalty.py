"""A job over its timeout fails as with RQ's own death penalty (death_penalty.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from rq.job import JobStatus
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty

from queuing.death_penalty import AlarmDeathPenalty
from queuing.lean_worker import LeanWorker
from queuing.recovering_worker import RecoveringWorker

QUEUE = "death_penalty"
ROOT = Path(__file__).resolve().parent.parent


TIMED_OUT = """
    import json, sys
    from rq.serializers import JSONSerializer
    from rq.timeouts import UnixSignalDeathPenalty
    from queuing import jobs
    from queuing.connection import rq_client
    from queuing.lean_worker import LeanWorker
    from queuing.recovering_worker import RecoveringWorker

    worker_class = {"RecoveringWorker": RecoveringWorker, "LeanWorker": LeanWorker}[sys.argv[1]]
    if sys.argv[3] == "rq":
        worker_class = type("WithRQsPenalty", (worker_class,),
                            {"death_penalty_class": UnixSignalDeathPenalty})
    connection = rq_client(sys.argv[2])
    connection.flushdb()
    queue = jobs.json_queue("death_penalty", connection)
    slow = queue.enqueue("time.sleep", 3, job_timeout=1)
    quick = queue.enqueue("builtins.len", [1, 2])
    worker_class([queue], connection=connection, serializer=JSONSerializer).work(burst=True)
    slow = queue.fetch_job(slow.id)
    print(json.dumps([slow.get_status(), slow.latest_result().exc_string,
                      queue.fetch_job(quick.id).get_status()]))
    """


def _timed_out(worker_class: type, redis_url: str, penalty: str) -> list[str]:
    """A job over its 1 s timeout, then one that returns, through ``worker_class`` with
    our penalty or RQ's (``penalty``): the first's status and stored traceback, the
    second's status. In a Python of its own: the alarm is the process's, and nothing
    earlier tests left in pytest's process (threads, handlers) can reach it."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(TIMED_OUT),
                           worker_class.__name__, redis_url, penalty],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("worker_class", [RecoveringWorker, LeanWorker])
def test_a_job_over_its_timeout_fails_as_with_rqs_death_penalty(worker_class, redis_url):
    assert worker_class.death_penalty_class is AlarmDeathPenalty
    status, exc_string, next_status = _timed_out(worker_class, redis_url, "ours")
    rqs_status, rqs_exc_string, rqs_next_status = _timed_out(worker_class, redis_url, "rq")
    assert (status, next_status) == (rqs_status, rqs_next_status)
    # The same exception and message; the traceback has our handler's frame too.
    assert exc_string.splitlines()[-1] == rqs_exc_string.splitlines()[-1]
    assert (status, next_status) == (JobStatus.FAILED, JobStatus.FINISHED)
    assert exc_string.endswith(
        "JobTimeoutException: Task exceeded maximum timeout value (1 seconds)\n")


def _run(code: str) -> subprocess.CompletedProcess:
    """``code`` in a Python of its own: a SIGALRM gone wrong would end pytest itself."""
    prelude = textwrap.dedent("""
        import os, signal, time
        from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
        from queuing import death_penalty
        from queuing.death_penalty import AlarmDeathPenalty
        """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_after_rqs_own_penalty_put_the_default_back_the_handler_is_installed_again():
    done = _run("""
        with AlarmDeathPenalty(5, JobTimeoutException):
            pass
        with UnixSignalDeathPenalty(5, JobTimeoutException):
            pass
        assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
        try:
            with AlarmDeathPenalty(1, JobTimeoutException):
                time.sleep(3)
        except JobTimeoutException as error:
            print(error)
        """)
    assert (done.returncode, done.stdout) == (
        0, "Task exceeded maximum timeout value (1 seconds)\n")


def test_an_alarm_with_no_job_running_ends_the_process_as_the_default_does():
    done = _run("""
        with AlarmDeathPenalty(5, JobTimeoutException):
            pass
        os.kill(os.getpid(), signal.SIGALRM)
        time.sleep(1)
        print("went on")
        """)
    assert (done.returncode, done.stdout) == (-signal.SIGALRM, "")


def test_outside_the_main_thread_it_refuses_as_rqs_does():
    with AlarmDeathPenalty(5, JobTimeoutException):  # the handler is in place
        pass
    errors = []

    def enter(penalty_class: type) -> None:
        try:
            with penalty_class(5, JobTimeoutException):
                pass
        except ValueError as error:
            errors.append(penalty_class)
            assert "main thread" in str(error)

    for penalty_class in (UnixSignalDeathPenalty, AlarmDeathPenalty):
        thread = threading.Thread(target=enter, args=(penalty_class,))
        thread.start()
        thread.join()
    assert errors == [UnixSignalDeathPenalty, AlarmDeathPenalty]
    assert signal.alarm(0) == 0
