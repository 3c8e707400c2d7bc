"""Uptime checks against local sites that the tests start, stop and slow down."""

from __future__ import annotations

import threading
import time
import zlib

import fakeredis
import pytest
from rq.serializers import JSONSerializer

from queuing import uptime
from queuing.constants import SMS_QUEUE, UPTIME_LOG_LENGTH
from queuing.jobs import json_queue
from tests.local_http import Site

PHONE = "4153518780"


@pytest.fixture
def rq_redis(fake_server):
    return fakeredis.FakeRedis(server=fake_server)


@pytest.fixture
def site():
    site = Site().start()
    yield site
    site.stop()


def alerts(rq_redis) -> list[list]:
    """The SMS jobs queued so far: [phone, message] each."""
    queue = json_queue(SMS_QUEUE, rq_redis)
    return [job.args for job in queue.get_jobs()]


def add(connection, url: str, **fields) -> uptime.Check:
    return uptime.add_check(connection, uptime.validate("http", url, phone=PHONE, **fields))


# -- Validation and storage ----------------------------------------------------------------

def test_validate_takes_the_course_fields():
    check = uptime.validate("https", "google.com", "GET", [200, "201"], "3", "4158675309")
    assert check == uptime.Check("", "https", "google.com", "get", (200, 201), 3.0,
                                 "+14158675309")
    assert check.describe() == "GET https://google.com"


def test_validate_takes_a_full_url():
    check = uptime.validate("https", "http://127.0.0.1:8000/health", phone=PHONE)
    assert (check.protocol, check.url) == ("http", "127.0.0.1:8000/health")


@pytest.mark.parametrize(("fields", "reason"), [
    ({"protocol": "ftp"}, "protocol must be http or https"),
    ({"url": ""}, "url must be"),
    ({"url": "two words"}, "url must be"),
    ({"url": ":80/x"}, "no host name"),
    ({"method": "patchy"}, "method must be one of"),
    ({"success_codes": ["ok"]}, "successCodes must be numbers"),
    ({"success_codes": []}, "successCodes must be HTTP status codes"),
    ({"success_codes": [700]}, "successCodes must be HTTP status codes"),
    ({"timeout_seconds": "0"}, "timeoutSeconds must be more than 0"),
    ({"timeout_seconds": "61"}, "at most 60"),
    ({"timeout_seconds": "soon"}, "timeoutSeconds must be a number"),
    ({"phone": "12"}, "Invalid phone number"),
])
def test_validate_refuses_bad_fields(fields, reason):
    given = {"protocol": "http", "url": "example.com", "phone": PHONE} | fields
    with pytest.raises(uptime.InvalidCheck, match=reason):
        uptime.validate(**given)


def test_add_list_remove(fake_redis):
    first = add(fake_redis, "example.com")
    second = add(fake_redis, "example.org/x", method="post", success_codes=[204])
    assert (first.id, second.id) == ("1", "2")
    assert uptime.all_checks(fake_redis) == [first, second]
    assert uptime.get_check(fake_redis, "2") == second
    assert uptime.remove_check(fake_redis, "1")
    assert not uptime.remove_check(fake_redis, "1")
    assert uptime.all_checks(fake_redis) == [second]
    assert add(fake_redis, "example.net").id == "3"  # ids are never reused


# -- Running -------------------------------------------------------------------------------

def test_one_alert_per_change_of_state_and_none_on_the_first_run(fake_redis, rq_redis, site):
    check = add(fake_redis, site.url.removeprefix("http://"))
    lines: list[str] = []

    def round_states():
        results = uptime.run_round(fake_redis, rq_redis, lines.append)
        return [outcome.state for _, outcome in results]

    assert round_states() == ["up"]
    assert alerts(rq_redis) == []  # first run: no alert
    assert round_states() == ["up"]
    assert alerts(rq_redis) == []

    site.stop()
    assert round_states() == ["down"]
    down = f"Alert: your check for GET {site.url} is now down"
    assert alerts(rq_redis) == [["+14153518780", down]]
    assert round_states() == ["down"]
    assert len(alerts(rq_redis)) == 1  # still down: no new alert

    site.start()
    assert round_states() == ["up"]
    up = f"Alert: your check for GET {site.url} is now up"
    assert alerts(rq_redis) == [["+14153518780", down], ["+14153518780", up]]

    assert uptime.state_of(fake_redis, check.id) == "up"
    log = uptime.log_of(fake_redis, check.id)
    assert [entry["state"] for entry in log] == ["up", "down", "down", "up", "up"]
    assert log[0]["previous"] == "down" and log[0]["status_code"] == 200
    assert log[1]["error"] == "connection failed"
    assert f"Check 1 GET {site.url} is down (connection failed)" in lines
    assert any(line.startswith("Alert queued as job ") and line.endswith(down) for line in lines)


def test_a_wrong_status_is_down_and_success_codes_decide(fake_redis, rq_redis, site):
    site.status = 301
    plain = add(fake_redis, site.url)
    redirect_ok = add(fake_redis, site.url, success_codes=[200, 301, 302])
    outcomes = dict((c.id, o) for c, o in uptime.run_round(fake_redis, rq_redis, lambda _: None))
    assert (outcomes[plain.id].state, outcomes[plain.id].status_code) == ("down", 301)
    assert outcomes[redirect_ok.id].state == "up"


def test_a_slow_site_is_down_after_its_timeout_and_checks_run_at_once(fake_redis, rq_redis):
    slow = [Site(delay=2.0).start() for _ in range(3)]
    try:
        for s in slow:
            add(fake_redis, s.url, timeout_seconds=0.5)
        started = time.monotonic()
        results = uptime.run_round(fake_redis, rq_redis, lambda _: None)
        elapsed = time.monotonic() - started
    finally:
        for s in slow:
            s.delay = 0
            s.stop()
    assert [o.state for _, o in results] == ["down"] * 3
    assert results[0][1].error == "timeout after 0.5s"
    assert elapsed < 1.4, f"the checks ran one after the other ({elapsed:.2f}s)"


def test_bad_urls_and_unreachable_hosts_are_down_not_a_crash(fake_redis, rq_redis):
    stored = add(fake_redis, "nonexistent.invalid/x", timeout_seconds=1)
    odd = uptime.Check("9", "http", "127.0.0.1:99999/", "get", (200,), 1, "+14153518780")
    broken = uptime.Check("10", "http", "[::1", "get", (200,), 1, "+14153518780")
    assert uptime.run_check(odd).state == "down"
    assert uptime.run_check(broken).state == "down"
    [(_, outcome)] = uptime.run_round(fake_redis, rq_redis, lambda _: None)
    assert outcome.state == "down"
    assert uptime.state_of(fake_redis, stored.id) == "down"


def test_the_log_is_bounded(fake_redis, rq_redis, site):
    check = add(fake_redis, site.url)
    for _ in range(UPTIME_LOG_LENGTH + 5):
        uptime.record(fake_redis, check, uptime.run_check(check))
    assert len(uptime.log_of(fake_redis, check.id)) == UPTIME_LOG_LENGTH


def test_a_check_removed_while_it_runs_writes_nothing_back(fake_redis, site):
    check = add(fake_redis, site.url)
    outcome = uptime.run_check(check)
    uptime.remove_check(fake_redis, check.id)
    assert uptime.record(fake_redis, check, outcome) is None
    assert fake_redis.keys("uptime:check:*") == []


def test_two_workers_recording_the_same_change_alert_once(fake_redis):
    check = add(fake_redis, "example.com")
    uptime.record(fake_redis, check, uptime.Outcome("up", time.time(), 200))
    changes = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        changes.append(uptime.record(fake_redis, check, uptime.Outcome("down", time.time(),
                                                                       error="x")))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert changes.count("up") == 1 and changes.count(None) == 7


def test_the_sms_queue_is_json(rq_redis, fake_redis, site):
    add(fake_redis, site.url)
    uptime.run_round(fake_redis, rq_redis, lambda _: None)
    site.stop()
    uptime.run_round(fake_redis, rq_redis, lambda _: None)
    [job] = json_queue(SMS_QUEUE, rq_redis).get_jobs()
    assert job.func_name == "queuing.senders.send_sms"
    data = zlib.decompress(rq_redis.hget(f"rq:job:{job.id}", "data"))  # RQ compresses it
    assert JSONSerializer.loads(data)[2] == ["+14153518780",
                                             f"Alert: your check for GET {site.url} is now down"]
