"""Scripts 101-105 and the Procfile as a learner runs them, against a throwaway redis-server.

Every HTTP target is a local server on 127.0.0.1 that the test starts: the checked site
and a stand-in for Twilio's API (``TWILIO_API_BASE_URL``). Nothing reaches the network.
"""

from __future__ import annotations

import time
import urllib.request
from datetime import datetime, timezone

import pytest
import redis

from queuing.local_redis import free_port
from tests.local_http import Site, StubTwilio
from tests.processes import Honcho, Script, run_script, script_env

pytestmark = pytest.mark.redis_server

SID = "AC" + "f" * 32
TOKEN = "test-token-never-logged"
TWILIO = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN,
          "TWILIO_FROM_NUMBER": "+16674013836"}
NO_TWILIO = {"TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": "", "TWILIO_FROM_NUMBER": "",
             "TWILIO_REMINDER_NUMBER": ""}


def wait_until(condition, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(every)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture
def site():
    site = Site().start()
    yield site
    site.stop()


def test_checks_command_line(redis_url):
    added = run_script("101_uptime_checks", redis_url, "add", "https://example.com/health",
                       "--success-codes", "200,301", "--timeout", "2", "--phone", "4153518780")
    assert added.returncode == 0, added.stderr
    assert added.stdout == ("Check 1 added: GET https://example.com/health, up on 200,301, "
                            "timeout 2s, alerts +14153518780\n")
    bad = run_script("101_uptime_checks", redis_url, "add", "example.com", "--protocol", "ftp",
                     "--phone", "4153518780")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == "Invalid check: protocol must be http or https, not 'ftp'\n"
    listed = run_script("101_uptime_checks", redis_url, "list")
    assert listed.stdout == ("1: GET https://example.com/health -> not checked yet "
                             "(up on 200,301, timeout 2s, alerts +14153518780)\n")
    assert run_script("101_uptime_checks", redis_url, "remove", "1").stdout == "Check 1 removed\n"
    missing = run_script("101_uptime_checks", redis_url, "remove", "1")
    assert (missing.returncode, missing.stderr) == (1, "No check 1\n")
    assert run_script("101_uptime_checks", redis_url, "list").stdout == "No checks\n"


def test_reminders_command_line(redis_url):
    added = run_script("103_reminders", redis_url, "add", "Take your medicine",
                       "--phone", "4153518780", "--phone", "+1 415 555 0100",
                       REMINDER_TIMEZONE="Europe/Paris")
    assert added.stdout == ("Reminder 1 added: 'Take your medicine' to +14153518780, "
                            "+14155550100 at 09:00, 12:00, 18:00, 22:00\n")
    listed = run_script("103_reminders", redis_url, "list", REMINDER_TIMEZONE="Europe/Paris")
    assert listed.stdout.startswith("1: 'Take your medicine' to +14153518780, +14155550100 at "
                                    "09:00, 12:00, 18:00, 22:00; next ")
    assert listed.stdout.rstrip().endswith("CET")
    bad_zone = run_script("103_reminders", redis_url, "list", REMINDER_TIMEZONE="Nowhere/Land")
    assert (bad_zone.returncode, bad_zone.stderr) == (
        2, "REMINDER_TIMEZONE is not a known time zone: 'Nowhere/Land'\n")
    bad = run_script("103_reminders", redis_url, "add", "hi", "--phone", "4153518780",
                     "--times", "9")
    assert (bad.returncode, bad.stderr) == (1, "Invalid reminder: a time must be HH:MM "
                                               "(24-hour), not '9'\n")
    assert run_script("103_reminders", redis_url, "remove", "1").stdout == "Reminder 1 removed\n"


@pytest.mark.job_workers
def test_uptime_worker_alerts_once_each_way_and_the_worker_prints_it(redis_url, site):
    run_script("101_uptime_checks", redis_url, "add", site.url, "--phone", "4153518780",
               "--timeout", "1")
    first = run_script("102_uptime_worker", redis_url, "--once")
    assert first.stdout.splitlines()[1:] == [f"Check 1 GET {site.url} is up (200)"]
    site.stop()
    down = run_script("102_uptime_worker", redis_url, "--once").stdout.splitlines()[1:]
    assert down[0] == f"Check 1 GET {site.url} is down (connection failed)"
    assert down[1].endswith(f": Alert: your check for GET {site.url} is now down")
    assert len(down) == 2
    again = run_script("102_uptime_worker", redis_url, "--once").stdout.splitlines()[1:]
    assert len(again) == 1  # still down: no second alert
    sent = run_script("105_worker", redis_url, "--burst", **NO_TWILIO)
    assert sent.returncode == 0, sent.stderr
    printed = [line for line in sent.stdout.splitlines() if line.startswith("Sending")]
    assert printed == [f"Sending notification to +14153518780, with message: "
                       f"Alert: your check for GET {site.url} is now down"]


def due_when_added(reminder_id: str, redis_url: str) -> None:
    """Make a reminder due at the minute it was added in, read back from Redis: a minute
    can turn while the CLI starts, and a time given before would then be tomorrow's."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    key = f"reminders:reminder:{reminder_id}"
    created = float(client.hget(key, "created_at"))
    client.hset(key, "times", datetime.fromtimestamp(created, timezone.utc).strftime("%H:%M"))
    client.close()


@pytest.mark.job_workers
def test_two_scheduler_processes_send_a_reminder_once(redis_url, real_redis):
    env = {"REMINDER_TIMEZONE": "UTC", **NO_TWILIO}
    run_script("103_reminders", redis_url, "add", "Stand up", "--phone", "4153518780",
               "--times", "00:00", **env)
    due_when_added("1", redis_url)
    schedulers = [Script("104_scheduler", redis_url, "--every", "1", **env) for _ in range(2)]
    ticker = Script("105_worker", redis_url, "--tick", RQ_VERBOSE="1", **env)  # RQ's lines
    try:
        for scheduler in schedulers:
            scheduler.wait_for("Scheduler started: reminders tick every 1s")
        # Each scheduler queues a tick a second; wait for several ticks to have run.
        ticks = 0
        while ticks < 6:
            line = ticker.read_line(timeout=20)
            assert line is not None, ticker.stderr
            ticks += "Successfully completed queuing.reminders.tick()" in line
    finally:
        for process in [*schedulers, ticker]:
            assert process.interrupt() in (0, 130, -2)
    assert real_redis.llen("rq:queue:sms") == 1
    [job_id] = real_redis.lrange("rq:queue:sms", 0, -1)
    assert real_redis.hget(f"rq:job:{job_id}", "description").startswith(
        "queuing.senders.send_sms('+14153518780', 'Stand up')")


def test_honcho_starts_the_procfile_and_alerts_flow_to_twilio(redis_url, site, tmp_path):
    """The issue's 'done when': honcho start, a check going down and up, a reminder,
    SMS bodies arriving at a Twilio stand-in; two schedulers run at once."""
    stub = StubTwilio()
    port = free_port()
    env = script_env(redis_url, **TWILIO, TWILIO_API_BASE_URL=stub.url,
                     UPTIME_INTERVAL_SECONDS="1", REMINDER_TICK_SECONDS="1",
                     REMINDER_TIMEZONE="UTC")
    honcho = Honcho(["-p", str(port), "-c", "scheduler=2"], env, tmp_path / "empty.env")
    output = honcho.lines
    try:
        wait_until(lambda: any("Scheduler started" in line for line in output), 20,
                   f"the scheduler started: {output}")
        added = run_script("101_uptime_checks", redis_url, "add", site.url, "--timeout", "1",
                           "--phone", "4153518780")
        assert added.returncode == 0, added.stderr
        wait_until(lambda: any(f"Check 1 GET {site.url} is up" in line for line in output), 20,
                   "the check up")
        site.stop()
        down = f"Alert: your check for GET {site.url} is now down"
        wait_until(lambda: down in stub.bodies(), 20, f"the down alert; {output[-20:]}")
        site.start()
        up = f"Alert: your check for GET {site.url} is now up"
        wait_until(lambda: up in stub.bodies(), 20, f"the up alert; {output[-20:]}")

        run_script("103_reminders", redis_url, "add", "Take your medicine",
                   "--phone", "4155550100", "--times", "00:00")
        due_when_added("1", redis_url)
        wait_until(lambda: "Take your medicine" in stub.bodies(), 20, "the reminder")

        # honcho gives each process type its own PORT, in the Procfile's order: the web
        # app the first, the seat server the next, then the dashboard.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as page:
            assert page.status == 200  # the web app's sign-in form
        with urllib.request.urlopen(f"http://127.0.0.1:{port + 100}/available_seats",
                                    timeout=5) as page:
            assert page.read() == b'{"numberOfAvailableSeats":"50"}'  # the seat server
        with urllib.request.urlopen(f"http://127.0.0.1:{port + 200}/", timeout=5) as page:
            assert page.status == 200 and b"RQ" in page.read()  # rq-dashboard
        rounds = honcho.count(f"GET {site.url} is up")  # more rounds and ticks: nothing
        wait_until(lambda: honcho.count(f"GET {site.url} is up") >= rounds + 3, 20,  # twice
                   "three more rounds")
    finally:
        honcho.stop()
        stub.close()
    assert stub.bodies().count(down) == 1
    assert stub.bodies().count(up) == 1
    assert stub.bodies().count("Take your medicine") == 1
    reminder_post = next(p for p in stub.posts if p["form"]["Body"] == "Take your medicine")
    assert reminder_post["form"] == {"To": "+14155550100", "From": "+16674013836",
                                     "Body": "Take your medicine"}
    assert reminder_post["path"] == f"/2010-04-01/Accounts/{SID}/Messages.json"
    text = "".join(output)
    assert TOKEN not in text
    for name in ("web.1", "seats.1", "dashboard.1", "worker.1", "clock.1", "scheduler.1",
                 "scheduler.2", "uptime.1"):
        assert f"{name} started" in text


def test_ctrl_c_stops_the_uptime_worker_and_the_scheduler_cleanly(redis_url):
    worker = Script("102_uptime_worker", redis_url, "--interval", "1")
    worker.wait_for("Uptime worker started: a round every 1s")
    assert worker.interrupt() == 0  # the round in progress ends, then the loop
    assert "Traceback" not in worker.stderr
    terminated = Script("102_uptime_worker", redis_url, "--interval", "1")
    terminated.wait_for("Uptime worker started: a round every 1s")
    terminated.process.terminate()
    assert terminated.finish() == 0
    scheduler = Script("104_scheduler", redis_url)
    scheduler.wait_for("Scheduler started: reminders tick every minute")
    assert scheduler.interrupt() == 0
    assert "Traceback" not in scheduler.stderr
