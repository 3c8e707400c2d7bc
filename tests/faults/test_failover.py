"""Failover: a highly available Redis (a master, an AOF replica, three sentinels; the
``sentinel_rig`` fixture) switches master under the processors, the creators and the
servers, all connected through ``redis+sentinel://``. Processing and serving resume
within seconds; nothing crashes; every created job ends once or is reported lost."""

from __future__ import annotations

import json
import os
import queue
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import get_current_job

from queuing import notifications, settings
from queuing.constants import PUSH_NOTIFICATION_QUEUE_2
from queuing.job_batch import LOST_JOB
from queuing.local_redis import SentinelRig
from tests.processes import Script, wait_until

pytestmark = pytest.mark.redis_server

# Jobs per creator (two creators). The figure is 1,000; a few hundred keep each
# scenario well under a minute, and still straddle the switch (JOB_PACE_SECONDS).
JOBS_PER_CREATOR = 300
# Each job takes this long, so that two workers are still busy when the master switches.
JOB_PACE_SECONDS = 0.01
RESUME_BOUND = 10.0  # seconds after the switch: processing resumes within them
CREATOR_BOUND = 60.0  # a creator has heard every job end (or reported it) within them
RUN_LOG_ENV = "FAILOVER_RUN_LOG"
FINISHED_KEY = f"rq:finished:{PUSH_NOTIFICATION_QUEUE_2}"
FINAL_LINE = re.compile(r"Notification job #(\d+) (completed|failed: (.*))$")
CREATED_LINE = re.compile(r"Notification job created: (\d+)$")
NOT_CONNECTED = "Redis client not connected to the server: "

# A creator as 7_job_creator.py, with JOBS_PER_CREATOR jobs of paced_notification: every
# 100th goes to a blacklisted number and fails.
CREATOR = """
import sys
from functools import partial

import common
from queuing import jobs, notifications
from queuing.connection import rq_client
from queuing.constants import PUSH_NOTIFICATION_QUEUE_2
from queuing.job_batch import LISTEN_SOCKET_TIMEOUT, JobBatch

def main():
    count, blacklisted = int(sys.argv[1]), sys.argv[2]
    connection = rq_client(socket_timeout=LISTEN_SOCKET_TIMEOUT)
    common.wait_until_connected(connection, quiet=True)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    data = [{"phoneNumber": blacklisted if n % 100 == 0 else f"41550{n:05d}",
             "message": f"This is the code {n} to verify your account"} for n in range(count)]
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(
            batch, data, "tests.faults.test_failover.paced_notification")
        notifications.print_events(batch, partial(notifications.lifecycle_line, id_prefix="#"))

common.run(main)
"""


def paced_notification(data: Any) -> None:
    """A tracked notification that takes JOB_PACE_SECONDS, and notes each run of its job in
    the file RUN_LOG_ENV names (one line, appended: the test counts runs per job)."""
    log = os.environ.get(RUN_LOG_ENV)
    if log:
        with open(log, "a") as runs:
            runs.write(f"{get_current_job().id}\n")
    time.sleep(JOB_PACE_SECONDS)
    notifications.push_tracked_notification(data)


def job_env(run_log: Path) -> dict[str, str]:
    """The processors' and creators' settings: this module's job function allowed."""
    allowed = os.environ.get(settings.EXTRA_JOB_FUNCTIONS_ENV, "")
    return {settings.EXTRA_JOB_FUNCTIONS_ENV:
            f"{allowed},tests.faults.test_failover.paced_notification".lstrip(","),
            RUN_LOG_ENV: str(run_log)}


def start_creator(name: str, url: str, env: dict[str, str]) -> Script:
    return Script(name, url, argv=[sys.executable, "-c", CREATOR, str(JOBS_PER_CREATOR),
                                   notifications.BLACKLISTED_NUMBERS[0]], **env)


def finished_on(port: int) -> int:
    """How many jobs the Redis on ``port`` has in the finished registry (0 if it is away)."""
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return client.zcard(FINISHED_KEY)
    except redis.RedisError:
        return 0
    finally:
        client.close()


def worker_count(port: int) -> int:
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return client.scard("rq:workers")
    except redis.RedisError:
        return 0
    finally:
        client.close()


def drain(script: Script) -> list[str]:
    """Every stdout line ``script`` printed so far, without waiting."""
    while True:
        try:
            line = script._queue.get_nowait()
        except queue.Empty:
            return script.lines
        if line is None:
            script._queue.put(None)
            return script.lines
        script.lines.append(line)


def creator_outcome(creator: Script) -> dict[str, Any]:
    """What a creator said: the jobs it created, each job's final lines, and the rest."""
    created = [m[1] for line in creator.lines if (m := CREATED_LINE.match(line))]
    finals: dict[str, list[str]] = {}
    for line in creator.lines:
        if match := FINAL_LINE.match(line):
            finals.setdefault(match[1], []).append(match[3] or match[2])
    return {"created": created, "finals": finals}


def assert_no_crash(script: Script) -> None:
    assert "Traceback" not in script.stderr, f"{script.name}: {script.stderr[-3000:]}"


def jobs_through_a_switch(rig: SentinelRig, tmp_path: Path,
                          switch: Callable[[], int]) -> dict[str, Any]:
    """A processor and two creators on the rig's URL; ``switch`` changes the master while
    the jobs run. Asserts that processing resumes within RESUME_BOUND of the switch, that no
    process crashes, and that every created job ends exactly once or is reported lost by
    its creator; returns the figures."""
    url, run_log = rig.url, tmp_path / "runs"
    env = job_env(run_log)
    scripts: list[Script] = []
    try:
        processor = Script("7_job_processor", url, **env)
        scripts.append(processor)
        first = rig.master_port()
        wait_until(lambda: worker_count(first) == 2, "processor 7's two workers")
        creators = [start_creator(f"creator {n}", url, env) for n in (1, 2)]
        scripts += creators
        total = 2 * JOBS_PER_CREATOR
        wait_until(lambda: finished_on(first) >= total // 10, "jobs flowing", timeout=30)
        switch_called = time.monotonic()
        new = switch()
        switched = time.monotonic()
        finished_at_switch = finished_on(new)
        try:
            wait_until(lambda: finished_on(new) > finished_at_switch,
                       f"a job finished on the new master within {RESUME_BOUND}s of the "
                       "switch", timeout=RESUME_BOUND)
        except AssertionError as error:
            raise AssertionError(f"{error}; finished {finished_at_switch}; processor: "
                                 f"{drain(processor)[-20:]} {processor.stderr[-3000:]}; "
                                 f"{rig.logs()}") from None
        resumed = time.monotonic()
        for creator in creators:
            assert creator.finish(timeout=CREATOR_BOUND) == 0, creator.stderr[-3000:]
            assert_no_crash(creator)
        assert processor.process.poll() is None, processor.stderr[-3000:]
        assert_no_crash(processor)
        outcomes = [creator_outcome(creator) for creator in creators]
        runs = Counter(run_log.read_text().split())
        if os.environ.get("FAILOVER_DEBUG"):
            print(runs.most_common(5), len(runs), [o["created"][:3] for o in outcomes])
        lost = reported_other = 0
        for outcome in outcomes:
            assert len(outcome["created"]) == JOBS_PER_CREATOR, outcome["created"][-5:]
            assert set(outcome["finals"]) == set(outcome["created"]), "a job never ended"
            assert all(len(ends) == 1 for ends in outcome["finals"].values())
            for ends in outcome["finals"].values():
                lost += ends[0] == f"failed: {LOST_JOB}"
                reported_other += ends[0] not in ("completed", f"failed: {LOST_JOB}") and \
                    "blacklisted" not in ends[0]
        assert processor.interrupt(timeout=40) == 0, processor.stderr[-3000:]
        assert_no_crash(processor)
        return {"jobs": total, "switch_s": round(switched - switch_called, 2),
                "resumed_after_switch_s": round(resumed - switched, 2),
                "lost_and_reported": lost, "other_failures": reported_other,
                "run_twice": sum(count > 1 for count in runs.values()),
                "not_connected_lines": sum(line.startswith(NOT_CONNECTED)
                                           for script in scripts for line in script.lines)}
    finally:
        for script in scripts:
            script.kill()


@pytest.mark.job_workers
def test_a_sentinel_failover_under_jobs_loses_none_silently(sentinel_rig, tmp_path):
    """SENTINEL FAILOVER (what an operator runs) while two creators' jobs are processed."""
    figures = jobs_through_a_switch(sentinel_rig, tmp_path, sentinel_rig.failover)
    print(f"failover under jobs: {json.dumps(figures)}")


@pytest.mark.job_workers
def test_a_killed_master_under_jobs_loses_none_silently(sentinel_rig, tmp_path):
    """SIGKILL of the master (a lost machine): the sentinels promote the replica. In the
    default (asynchronous) mode a write the replica had not received is lost: its job is
    reported by its creator, never waited for for ever."""
    figures = jobs_through_a_switch(sentinel_rig, tmp_path, sentinel_rig.kill_master)
    print(f"killed master under jobs: {json.dumps(figures)}")
