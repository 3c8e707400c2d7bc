"""Uptime checks against local sites that the tests start, stop and slow down."""

from __future__ import annotations

import threading
import time
import zlib

import fakeredis
import pytest
import redis
from rq.serializers import JSONSerializer

from queuing import uptime
from queuing.constants import SMS_QUEUE, UPTIME_LOG_LENGTH
from queuing.jobs import json_queue
from tests.local_http import Site
from tests.processes import run_script

PHONE = "4153518780"
OWNER, OTHER = "+14153518780", "+14158675309"


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
    ({"url": "example.com/" + "x" * 2000}, "url is longer than 2000 characters"),
    ({"phone": "12"}, "Invalid phone number"),
])
def test_validate_refuses_bad_fields(fields, reason):
    given = {"protocol": "http", "url": "example.com", "phone": PHONE} | fields
    with pytest.raises(uptime.InvalidCheck, match=reason):
        uptime.validate(**given)


@pytest.mark.parametrize("url", ["user:secret@example.com", "http://user:secret@example.com/x",
                                 ":secret@example.com", "user:secret@example.com?x=1",
                                 "user:se cret@example.com", "user@example.com:99999",
                                 "user:secret@example.com://x"])
def test_validate_refuses_a_user_name_or_password_and_never_repeats_it(url):
    with pytest.raises(uptime.InvalidCheck) as refused:
        uptime.validate("http", url, phone=PHONE)
    assert str(refused.value) == "url must not hold a user name or password"


def test_an_at_sign_in_the_path_is_no_password():
    assert uptime.validate("https", "example.com/@someone", phone=PHONE).url == \
        "example.com/@someone"


@pytest.mark.parametrize("url", ["example.com:99999", "example.com:0/x", "example.com:http",
                                 "[::1]:65536", "example.com:-1"])
def test_validate_refuses_a_port_outside_1_to_65535(url):
    with pytest.raises(uptime.InvalidCheck, match=r"^url's port must be a number from 1 to 65535$"):
        uptime.validate("http", url, phone=PHONE)


@pytest.mark.parametrize("url", ["example.com:1", "example.com:65535/x", "[::1]:8080"])
def test_validate_takes_any_port_from_1_to_65535(url):
    assert uptime.validate("http", url, phone=PHONE).url == url


@pytest.mark.parametrize(("typed", "e164"), [("1-415-351-8780", "+14153518780"),
                                             ("(415) 351-8780", "+14153518780"),
                                             ("+44 20 7946 0958", "+442079460958")])
def test_validate_takes_the_phone_numbers_people_type(typed, e164):
    assert uptime.validate("http", "example.com", phone=typed).phone == e164


@pytest.mark.parametrize("phone", ["+999999999999999", "0123456789", ""])
def test_validate_refuses_a_number_no_phone_can_have(phone):
    with pytest.raises(uptime.InvalidCheck, match="phone number"):
        uptime.validate("http", "example.com", phone=phone)


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


def owned(connection, owner: str, url: str = "example.com", max_checks: int | None = 5):
    check = uptime.validate("http", url, phone=owner, owner=owner)
    return uptime.add_check(connection, check, max_checks)


def test_each_owner_sees_only_their_checks(fake_redis):
    admins = add(fake_redis, "example.com")
    mine = [owned(fake_redis, OWNER, f"example.com/{n}") for n in range(2)]
    theirs = owned(fake_redis, OTHER)
    assert uptime.checks_of(fake_redis, OWNER) == mine
    assert uptime.checks_of(fake_redis, OTHER) == [theirs]
    assert [c.owner for c in uptime.all_checks(fake_redis)] == ["", OWNER, OWNER, OTHER]
    assert uptime.get_check(fake_redis, admins.id).owner == ""
    assert uptime.checks_of(fake_redis, "+14155550100") == []


def test_a_sixth_check_is_refused_and_a_removed_one_makes_room(fake_redis):
    first, *_ = [owned(fake_redis, OWNER, f"example.com/{n}") for n in range(5)]
    with pytest.raises(uptime.TooManyChecks) as refused:
        owned(fake_redis, OWNER, "example.com/6")
    assert str(refused.value) == "The user already has the maximum number of checks (5)"
    assert len(uptime.checks_of(fake_redis, OWNER)) == 5
    assert len(uptime.all_checks(fake_redis)) == 5
    owned(fake_redis, OTHER)  # another user's limit is their own
    add(fake_redis, "example.org")  # the admin's checks have none
    assert uptime.remove_check(fake_redis, first.id)
    assert owned(fake_redis, OWNER, "example.com/7").url == "example.com/7"
    assert len(uptime.checks_of(fake_redis, OWNER)) == 5


def test_without_a_limit_an_owner_may_add_more(fake_redis):
    for n in range(7):
        owned(fake_redis, OWNER, f"example.com/{n}", max_checks=None)
    assert len(uptime.checks_of(fake_redis, OWNER)) == 7


def test_two_at_once_never_make_a_sixth_check_on_a_real_redis(redis_url):
    tries = 12
    clients = [redis.Redis.from_url(redis_url, decode_responses=True) for _ in range(tries)]
    for n in range(4):
        owned(clients[0], OWNER, f"example.com/{n}")
    check = uptime.validate("http", "example.com/last", phone=OWNER, owner=OWNER)
    barrier = threading.Barrier(tries)
    outcomes: list[str] = []

    def add_one(client):
        client.ping()  # connected before the barrier: the adds start together
        barrier.wait()
        try:
            uptime.add_check(client, check, 5)
            outcomes.append("added")
        except uptime.TooManyChecks:
            outcomes.append("refused")

    threads = [threading.Thread(target=add_one, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    assert sorted(outcomes) == ["added"] + ["refused"] * (tries - 1)
    assert len(uptime.checks_of(clients[0], OWNER)) == 5
    assert len(uptime.all_checks(clients[0])) == 5


def test_the_script_run_twice_stores_the_check_once(fake_redis):
    """redis-py runs a script again after a timeout: the second run must not refuse a
    check the first stored, nor store it twice."""
    check = owned(fake_redis, OWNER)
    keys = [f"uptime:check:{check.id}", "uptime:checks", f"uptime:user:{OWNER}:checks"]
    again = fake_redis.eval(uptime.ADD_CHECK_LUA, 3, *keys, check.id, "1", "url", "x")
    assert again == 1
    assert uptime.checks_of(fake_redis, OWNER) == [check]


@pytest.mark.parametrize("connection", ["fake_redis", "real_redis"])
def test_an_edit_keeps_the_id_owner_state_and_log(request, connection):
    client = request.getfixturevalue(connection)
    check = owned(client, OWNER)
    uptime.record(client, check, uptime.Outcome("up", 1000.0, 200))
    edited = uptime.validate("https", "example.org/health", "head", [204], 5, phone=OWNER,
                             check_id=check.id)
    stored = uptime.update_check(client, edited)
    assert stored == uptime.Check(check.id, "https", "example.org/health", "head", (204,), 5.0,
                                  OWNER, OWNER)
    assert uptime.get_check(client, check.id) == stored
    assert uptime.checks_of(client, OWNER) == [stored]
    assert uptime.state_of(client, check.id) == "up"
    assert [entry["status_code"] for entry in uptime.log_of(client, check.id)] == [200]
    assert uptime.last_checked(client, check.id) == 1000.0


def test_an_edit_of_a_removed_check_brings_nothing_back(fake_redis):
    check = owned(fake_redis, OWNER)
    uptime.remove_check(fake_redis, check.id)
    assert uptime.update_check(fake_redis, check) is None
    assert fake_redis.keys("uptime:check:*") == []


def test_last_checked_is_none_before_the_first_run(fake_redis):
    check = owned(fake_redis, OWNER)
    assert uptime.last_checked(fake_redis, check.id) is None
    assert uptime.state_of(fake_redis, check.id) is None
    uptime.record(fake_redis, check, uptime.Outcome("down", 1234.5, error="connection failed"))
    assert uptime.last_checked(fake_redis, check.id) == 1234.5


def test_a_deleted_user_leaves_no_check_state_or_log(fake_redis):
    mine = [owned(fake_redis, OWNER, f"example.com/{n}") for n in range(3)]
    theirs = owned(fake_redis, OTHER)
    for check in [*mine, theirs]:
        uptime.record(fake_redis, check, uptime.Outcome("up", 1000.0, 200))
    assert uptime.remove_checks_of(fake_redis, OWNER) == 3
    assert uptime.checks_of(fake_redis, OWNER) == []
    assert uptime.all_checks(fake_redis) == [theirs]
    assert sorted(fake_redis.keys("uptime:*")) == sorted([
        "uptime:check_id", "uptime:checks", f"uptime:check:{theirs.id}",
        f"uptime:check:{theirs.id}:state", f"uptime:check:{theirs.id}:log",
        f"uptime:user:{OTHER}:checks"])
    assert uptime.remove_checks_of(fake_redis, OWNER) == 0


@pytest.mark.parametrize("check_id", ["1:state", "1:log", "01", "0", "", "x", "1" * 30])
def test_an_id_that_incr_cannot_give_is_no_check(fake_redis, check_id):
    check = owned(fake_redis, OWNER)
    uptime.record(fake_redis, check, uptime.Outcome("up", 1000.0, 200))
    assert uptime.get_check(fake_redis, check_id) is None  # not a WRONGTYPE error
    assert not uptime.remove_check(fake_redis, check_id)
    assert uptime.state_of(fake_redis, check.id) == "up"

def test_a_removed_check_is_gone_from_its_owners_list(fake_redis):
    check = owned(fake_redis, OWNER)
    assert uptime.remove_check(fake_redis, check.id)
    assert uptime.checks_of(fake_redis, OWNER) == []
    assert fake_redis.exists(f"uptime:user:{OWNER}:checks") == 0


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


# -- The admin's command line --------------------------------------------------------------

def test_the_command_line_shows_each_checks_user_and_history(real_redis, redis_url):
    admins = add(real_redis, "example.com")
    users = owned(real_redis, OWNER, "example.org/health")
    uptime.record(real_redis, users, uptime.Outcome("up", 1_800_000_000.0, 200))
    uptime.record(real_redis, users, uptime.Outcome("down", 1_800_000_060.0,
                                                    error="connection failed"))
    listed = run_script("101_uptime_checks", redis_url, "list", TZ="UTC")
    assert listed.stdout.splitlines() == [
        f"{admins.id}: GET http://example.com -> not checked yet (up on 200,201, "
        "timeout 3s, alerts +14153518780)",
        f"{users.id}: GET http://example.org/health -> down, checked 2027-01-15 08:01:00 "
        "(up on 200,201, timeout 3s, alerts +14153518780, user +14153518780)"]
    history = run_script("101_uptime_checks", redis_url, "history", users.id, TZ="UTC")
    assert (history.returncode, history.stdout) == (0, "2027-01-15 08:01:00 down (connection "
                                                       "failed)\n2027-01-15 08:00:00 up (200)\n")
    fresh = run_script("101_uptime_checks", redis_url, "history", admins.id)
    assert fresh.stdout == f"Check {admins.id} GET http://example.com: not checked yet\n"
    missing = run_script("101_uptime_checks", redis_url, "history", "99")
    assert (missing.returncode, missing.stdout, missing.stderr) == (1, "", "No check 99\n")
    removed = run_script("101_uptime_checks", redis_url, "remove", users.id)
    assert removed.stdout == f"Check {users.id} removed\n"
    assert uptime.checks_of(real_redis, OWNER) == []


def test_the_command_line_takes_the_phone_numbers_people_type(redis_url):
    added = run_script("101_uptime_checks", redis_url, "add", "example.com",
                       "--phone", "1-415-351-8780")
    assert added.stdout.endswith("alerts +14153518780\n"), added.stderr
    refused = run_script("101_uptime_checks", redis_url, "add", "user:secret@example.com",
                         "--phone", "4153518780")
    assert (refused.returncode, refused.stderr) == (
        1, "Invalid check: url must not hold a user name or password\n")
