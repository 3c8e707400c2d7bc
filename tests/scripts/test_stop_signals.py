"""Every long-running script stops within seconds of the first Ctrl-C
(typed in a terminal) or SIGTERM, exit 0, without a traceback, whenever it comes: during
the imports, while it connects and registers, idle, or while a job runs (stopping.py).

Each script gets 20 trials, run several at a time; the signal comes at growing delays
after the script's first line ran (its imports, connection and registration follow), or
on an event (its worker registered, its started line, a job started). Before the first
line, for ~30 ms, the interpreter starts up (site.py, .pth files) with Python's own
defaults, which no script can change.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from rq import Queue, Worker

from queuing import jobs
from queuing.connection import rq_client
from queuing.constants import (
    PUSH_NOTIFICATION_QUEUE,
    PUSH_NOTIFICATION_QUEUE_2,
    REMINDERS_TICK_QUEUE,
    SMS_QUEUE,
)
from tests.processes import wait_until
from tests.terminal import Terminal

pytestmark = pytest.mark.redis_server

# name, arguments, the queue its worker listens on (None: not an RQ worker), started line
SCRIPTS = {
    "6_job_processor": ([], PUSH_NOTIFICATION_QUEUE, None),
    "7_job_processor": ([], PUSH_NOTIFICATION_QUEUE_2, None),
    "102_uptime_worker": (["--interval", "1"], None, "Uptime worker started"),
    "104_scheduler": ([], None, "Scheduler started"),
    "105_worker": ([], SMS_QUEUE, None),
    "105_worker --tick": (["--tick"], REMINDERS_TICK_QUEUE, None),
}
NO_TWILIO = {"TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": "", "TWILIO_FROM_NUMBER": "",
             "TWILIO_REMINDER_NUMBER": ""}
# Seconds after the interpreter started: imports, connection, registration.
DELAYS = [0, 0.01, 0.02, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9, 1.2, 1.6, 2.2]
EVENTS = ["ready", "ready+idle", "busy", "busy"]  # 16 + 4 = 20 trials per script
STOP_WITHIN = 15  # seconds, generous for a loaded 2-core machine
PARALLEL = 5


def script_started(terminal: Terminal) -> bool:
    """The script's first line ran: it handles SIGTERM (stopping.py), which the
    interpreter alone does not."""
    return terminal.catches(signal.SIGTERM)


def workers_on(connection: redis.Redis, queue_name: str) -> int:
    return Worker.count(queue=Queue(queue_name, connection=connection))


def trial(redis_url: str, key: str, when: float | str, use_sigterm: bool,
          unbuffered: bool) -> tuple[int, float, str]:
    args, queue_name, started_line = SCRIPTS[key]
    env = dict(NO_TWILIO, PYTHONUNBUFFERED="1") if unbuffered else dict(NO_TWILIO)
    terminal = Terminal(key.split()[0], redis_url, *args, **env)
    connection = rq_client(redis_url)
    try:
        wait_until(lambda: script_started(terminal), "the script started")
        if isinstance(when, float | int):
            time.sleep(when)  # the varied moment is the point of the trial
        else:
            if queue_name is None:
                terminal.wait_for(started_line)
            else:
                expected = 2 if key == "7_job_processor" else 1
                wait_until(lambda: workers_on(connection, queue_name) >= expected,
                           "its workers registered")
            if when == "ready+idle":
                time.sleep(0.5)  # waiting for a job
            if when == "busy" and queue_name is not None:
                serializer = None if "--tick" in key else "json"
                queue = (Queue(queue_name, connection=connection) if serializer is None
                         else jobs.json_queue(queue_name, connection))
                job = queue.enqueue("time.sleep", 0.5)
                wait_until(lambda: job.get_status(refresh=True) in ("started", "finished"),
                           "the job started")
        started = time.monotonic()
        if use_sigterm:
            terminal.process.send_signal(signal.SIGTERM)
        else:
            terminal.ctrl_c()
        status = terminal.finish(timeout=STOP_WITHIN + 15)
        return status, time.monotonic() - started, terminal.text
    finally:
        connection.close()
        terminal.close()


@pytest.mark.parametrize("key", list(SCRIPTS))
@pytest.mark.job_workers
def test_the_first_stop_signal_stops_the_script_cleanly_at_any_moment(redis_url, key):
    plan = [(when, number % 2 == 1, number % 3 == 0)
            for number, when in enumerate([*DELAYS, *EVENTS])]
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda step: (step, trial(redis_url, key, *step)), plan))
    slowest = max(seconds for _step, (_status, seconds, _text) in results)
    failures = [(step, status, round(seconds, 2), text[-600:])
                for step, (status, seconds, text) in results
                if status != 0 or "Traceback" in text or seconds > STOP_WITHIN]
    assert failures == [], f"{len(failures)}/{len(plan)} trials failed: {failures}"
    print(f"{key}: {len(plan)} clean stops, slowest {slowest:.2f}s")


def python_with_sigint_ignored(script: str) -> list[str]:
    """What ``python SCRIPT &`` in a shell script starts: SIGINT ignored."""
    return [sys.executable, "-c",
            "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            f"os.execv(sys.executable, [sys.executable, {script!r}])"]


@pytest.mark.parametrize("name, workers", [("6_job_processor", 1), ("7_job_processor", 2)])
@pytest.mark.job_workers
def test_a_processor_started_with_sigint_ignored_keeps_it_ignored_and_stops_on_sigterm(
        redis_url, name, workers):
    queue_name = PUSH_NOTIFICATION_QUEUE if workers == 1 else PUSH_NOTIFICATION_QUEUE_2
    connection = rq_client(redis_url)
    terminal = Terminal(name, redis_url, argv=python_with_sigint_ignored(f"{name}.py"))
    try:
        wait_until(lambda: workers_on(connection, queue_name) == workers, "its workers")
        terminal.ctrl_c()  # the starter said Ctrl-C is not for it: it runs on
        # The terminal discards output not yet read when it takes the Ctrl-C (its echo
        # comes after): wait for the echo, so the line below cannot be discarded.
        terminal.wait_for("^C")
        data = {"phoneNumber": "4151218782", "message": "still here"}
        func = ("queuing.notifications.push_notification" if workers == 1
                else "queuing.notifications.push_tracked_notification")
        jobs.json_queue(queue_name, connection).enqueue(func, data)
        terminal.wait_for("Sending notification to 4151218782, with message: still here")
        assert workers_on(connection, queue_name) == workers
        os.kill(terminal.process.pid, signal.SIGTERM)
        assert terminal.finish() == 0
        assert "Traceback" not in terminal.text
        assert workers_on(connection, queue_name) == 0
    finally:
        connection.close()
        terminal.close()
