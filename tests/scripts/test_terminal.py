"""The processors, and RQ's own workers, in a terminal: idle first, then a creator's jobs.

RQ colours its log line for each job it takes (``job.description``) only when stdout is
a TTY, so a job RQ cannot describe crashes a worker in a terminal and never through a
pipe: these tests run the worker in a pseudo-terminal (tests/terminal.py), as a learner
does, let it go idle, then run the creator, and stop the worker with Ctrl-C.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import pytest
import redis
from rq.worker import Worker, WorkerStatus

from queuing.constants import (
    JOB_ID_KEY,
    PUSH_NOTIFICATION_QUEUE,
    PUSH_NOTIFICATION_QUEUE_2,
    PUSH_NOTIFICATION_QUEUE_3,
)
from tests.processes import load_script
from tests.terminal import Terminal

pytestmark = pytest.mark.redis_server

creator_6 = load_script("6_job_creator")
creator_7 = load_script("7_job_creator")
BLACKLISTED = ("4153518780", "4153518781")
RQ = [sys.executable, "-m", "rq.cli"]
SIMPLE_JSON = ["-w", "rq.worker.SimpleWorker", "-S", "json"]
# What the docs tell an operator to add: RQ's CLI then runs only the project's functions.
ALLOWED_JOBS = ["--job-class", "queuing.untrusted_jobs.AllowedJob"]


def sending(data: dict) -> str:
    return f"Sending notification to {data['phoneNumber']}, with message: {data['message']}"


@dataclass(frozen=True)
class Case:
    processor: list[str] | str  # a script's name, or an argv (RQ's CLI reads REDIS_URL)
    workers: int
    creator: str
    queue: str
    jobs: list[dict]

    def fails(self, data: dict) -> bool:
        """Task 6's job sends to any number; the later tasks' fail blacklisted ones."""
        return self.creator != "6_job_creator" and data["phoneNumber"] in BLACKLISTED

    def processor_terminal(self, redis_url: str) -> Terminal:
        if isinstance(self.processor, str):
            return Terminal(self.processor, redis_url)
        return Terminal(self.processor[3], redis_url, argv=self.processor)


CASES = {
    "6_job_processor": Case("6_job_processor", 1, "6_job_creator", PUSH_NOTIFICATION_QUEUE,
                            [creator_6.JOB_DATA]),
    "7_job_processor": Case("7_job_processor", 2, "7_job_creator", PUSH_NOTIFICATION_QUEUE_2,
                            creator_7.JOBS),
    "rq-worker": Case([*RQ, "worker", *SIMPLE_JSON, PUSH_NOTIFICATION_QUEUE_2],
                      1, "7_job_creator", PUSH_NOTIFICATION_QUEUE_2, creator_7.JOBS),
    "rq-worker-pool": Case([*RQ, "worker-pool", "-n", "2", *SIMPLE_JSON, *ALLOWED_JOBS,
                            PUSH_NOTIFICATION_QUEUE_2],
                           2, "7_job_creator", PUSH_NOTIFICATION_QUEUE_2, creator_7.JOBS),
    "rq-worker-8_job": Case([*RQ, "worker", *SIMPLE_JSON, *ALLOWED_JOBS,
                             PUSH_NOTIFICATION_QUEUE_3],
                            1, "8_job", PUSH_NOTIFICATION_QUEUE_3,
                            [{"phoneNumber": "4153518780",
                              "message": "This is the code 1234 to verify your account"}]),
}


def wait_until_idle(connection: redis.Redis, count: int, processor: Terminal,
                    timeout: float = 30) -> None:
    """Until ``count`` workers are registered and each waits for a job (state idle)."""
    deadline = time.monotonic() + timeout
    while True:
        workers = Worker.all(connection=connection)
        if len(workers) == count and all(
                worker.get_state() == WorkerStatus.IDLE for worker in workers):
            return
        if time.monotonic() > deadline or processor.process.poll() is not None:
            raise AssertionError(f"{len(workers)} of {count} workers idle; "
                                 f"screen:\n{processor.text}")
        time.sleep(0.05)


def finish_while_running(creator: Terminal, processor: Terminal, timeout: float = 60) -> int:
    """The creator's exit status once it ends; fail at once if the processor ends first."""
    deadline = time.monotonic() + timeout
    while creator.process.poll() is None:
        if processor.process.poll() is not None:
            raise AssertionError(f"the processor ended (status {processor.process.poll()}) "
                                 f"before the creator; processor's screen:\n{processor.text}"
                                 f"\ncreator's screen:\n{creator.text}")
        if time.monotonic() > deadline:
            raise AssertionError(f"creator still running {timeout}s later; "
                                 f"screen:\n{creator.text}")
        time.sleep(0.05)
    return creator.finish()


def expected_creator_lines(case: Case, first_id: int) -> list[list[str]]:
    """Each job's lines in order (the jobs interleave when two run at a time)."""
    per_job = []
    for number, data in enumerate(case.jobs, start=first_id):
        if case.creator == "6_job_creator":
            per_job.append([f"Notification job created: {number}", "Notification job completed"])
            continue
        job = f"Notification job {'' if case.creator == '8_job' else '#'}{number}"
        if case.fails(data):
            end = [f"{job} failed: Phone number {data['phoneNumber']} is blacklisted"]
        else:
            end = [f"{job} 50% complete", f"{job} completed"]
        per_job.append([f"Notification job created: {number}", f"{job} 0% complete", *end])
    return per_job


def unexpected_tracebacks(screen: str) -> int:
    """Tracebacks on ``screen`` other than the one RQ's own workers log for each job that
    fails (a blacklisted number), which our quiet processors do not show."""
    return screen.count("Traceback") - screen.count("notifications.BlacklistedNumber: ")


def in_order(lines: list[str], wanted: list[str]) -> bool:
    positions = [lines.index(line) for line in wanted]
    return positions == sorted(positions)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.job_workers
def test_an_idle_processor_in_a_terminal_runs_a_creators_jobs(redis_url, case):
    connection = redis.Redis.from_url(redis_url)
    connection.set(JOB_ID_KEY, 38)  # as in the course's sample output: jobs #39...
    processor = case.processor_terminal(redis_url)
    creator = None
    try:
        wait_until_idle(connection, case.workers, processor)
        creator = Terminal(case.creator, redis_url)
        status = finish_while_running(creator, processor)
        sent = [data for data in case.jobs if not case.fails(data)]
        for data in sent:
            processor.wait_for(sending(data))
        assert processor.process.poll() is None, processor.text  # still running

        per_job = expected_creator_lines(case, first_id=39)
        assert sorted(creator.lines) == sorted(line for lines in per_job for line in lines)
        for lines in per_job:
            assert in_order(creator.lines, lines), creator.text
        assert status == 0, creator.text

        info = Terminal("rq info", redis_url, argv=[*RQ, "info"])
        assert info.finish() == 0, info.text
        failed = len(case.jobs) - len(sent)
        assert f"{case.queue} | 0, 0 executing, {len(sent)} finished, {failed} failed" in (
            info.text.replace("\u2588", "")), info.text

        assert processor.interrupt() == 0, processor.text
        assert unexpected_tracebacks(processor.text) == 0, processor.text
        assert [sending(data) for data in sent] == [
            line for line in processor.lines if line.startswith("Sending")] or case.workers > 1
    finally:
        processor.close()
        if creator is not None:
            creator.close()
        connection.close()
