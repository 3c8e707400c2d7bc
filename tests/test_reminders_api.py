"""The /reminders and /messages routes (reminders_api.py), through Flask's test client on
fakeredis, with the app's clock set by the test (2027-01-15 08:00 UTC)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from queuing import reminders, senders, workers
from queuing.constants import SMS_QUEUE
from queuing.jobs import json_queue
from tests.conftest import JANE

JANE_PHONE = "+14158675309"
STAND_UP = {"recipients": ["1-415-351-8780", "+1 415 555 0100"], "message": "Stand up",
            "times": ["09:00", "17:30"], "timezone": "America/New_York"}


@pytest.fixture(autouse=True)
def _utc_default(monkeypatch):
    monkeypatch.setenv("REMINDER_TIMEZONE", "UTC")


def sms_jobs(fake_rq_redis):
    return json_queue(SMS_QUEUE, fake_rq_redis).get_jobs()


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/reminders"), ("get", "/reminders"), ("get", "/reminders/1"),
    ("delete", "/reminders/1"), ("post", "/messages"), ("get", "/messages/1")])
@pytest.mark.parametrize("token", [None, "made-up"])
def test_every_route_needs_a_valid_token(client, method, path, token):
    headers = {} if token is None else {"token": token}
    answer = getattr(client, method)(path, json=STAND_UP, headers=headers)
    assert (answer.status_code, answer.get_json()) == (401, {"status": "Missing or invalid token"})


def test_create_a_reminder(client, user_headers):
    answer = client.post("/reminders", json=STAND_UP, headers=user_headers)
    assert answer.status_code == 201
    assert answer.data == (
        b'{"id":"1","message":"Stand up","recipients":["+14153518780","+14155550100"],'
        b'"times":["09:00","17:30"],"timezone":"America/New_York",'
        b'"next":"2027-01-15T09:00:00-05:00"}')


def test_times_and_zone_default_to_the_courses_and_the_servers(client, user_headers,
                                                              monkeypatch):
    monkeypatch.setenv("REMINDER_TIMEZONE", "Europe/Paris")
    body = client.post("/reminders", json={"recipients": ["4153518780"], "message": "Pills"},
                       headers=user_headers).get_json()
    assert (body["times"], body["timezone"]) == (["09:00", "12:00", "18:00", "22:00"],
                                                 "Europe/Paris")
    assert body["next"] == "2027-01-15T09:00:00+01:00"  # 08:00 UTC is 09:00 in Paris: due


@pytest.mark.parametrize(("body", "status"), [
    ([], "The body must be a JSON object"),
    ({"message": "hi"}, "recipients must be a list of strings"),
    ({"recipients": "4153518780", "message": "hi"}, "recipients must be a list of strings"),
    ({"recipients": ["4153518780"] * 11, "message": "hi"}, "recipients may hold at most 10 items"),
    ({"recipients": ["+999999999999999"], "message": "hi"},
     "Invalid reminder: Invalid phone number '+999999999999999': use +14153518780, "
     "or a national number such as 4153518780"),
    ({"recipients": ["4153518780"], "message": " "}, "Invalid reminder: The message is empty"),
    ({"recipients": ["4153518780"], "message": 5}, "Invalid reminder: The message is empty"),
    ({"recipients": ["4153518780"], "message": "hi", "times": "9:00"},
     "times must be a list of strings"),
    ({"recipients": ["4153518780"], "message": "hi", "times": ["9"]},
     "Invalid reminder: a time must be HH:MM (24-hour), not '9'"),
    ({"recipients": ["4153518780"], "message": "hi", "timezone": "Mars/Olympus"},
     "Invalid reminder: not a known time zone: 'Mars/Olympus' "
     "(use an IANA name such as America/New_York)"),
])
def test_bad_reminders_are_refused_with_one_line(client, user_headers, body, status):
    answer = client.post("/reminders", json=body, headers=user_headers)
    assert (answer.status_code, answer.get_json()) == (400, {"status": status})


def test_a_user_sees_and_deletes_only_their_reminders(client, user_headers, other_user_headers):
    mine = client.post("/reminders", json=STAND_UP, headers=user_headers).get_json()
    theirs = client.post("/reminders", json=STAND_UP | {"message": "John's"},
                         headers=other_user_headers).get_json()
    assert client.get("/reminders", headers=user_headers).get_json() == [mine]
    assert client.get(f"/reminders/{mine['id']}", headers=user_headers).get_json() == mine
    for method in ("get", "delete"):
        answer = getattr(client, method)(f"/reminders/{theirs['id']}", headers=user_headers)
        assert (answer.status_code, answer.get_json()) == (404, {"status": "Reminder not found"})
    assert client.get("/reminders/99", headers=user_headers).status_code == 404
    deleted = client.delete(f"/reminders/{mine['id']}", headers=user_headers)
    assert (deleted.status_code, deleted.data) == (204, b"")
    assert client.get(f"/reminders/{mine['id']}", headers=user_headers).status_code == 404
    assert client.get("/reminders", headers=other_user_headers).get_json() == [theirs]


def test_a_reminder_made_over_http_is_sent_once_at_its_time(client, user_headers, clock,
                                                            fake_redis, fake_rq_redis):
    """Two schedulers tick at the reminder's time by the test's clock: one SMS each."""
    made = client.post("/reminders", json=STAND_UP, headers=user_headers).get_json()
    due = datetime.fromisoformat(made["next"])
    clock.now = due.timestamp()
    for tick in (due, due, due + timedelta(minutes=1)):
        reminders.send_due(fake_redis, fake_rq_redis, tick, timezone.utc, reminders.grace())
    assert [job.args for job in sms_jobs(fake_rq_redis)] == [
        ["+14153518780", "Stand up"], ["+14155550100", "Stand up"]]
    token = client.post("/tokens", json={"phone": JANE["phone"], "password": JANE["password"]})
    headers = {"token": token.get_json()["id"]}  # hours later: the first token expired
    after = client.get(f"/reminders/{made['id']}", headers=headers).get_json()
    assert after["next"] == "2027-01-15T17:30:00-05:00"


def test_deleting_the_user_deletes_their_reminders(client, user_headers, fake_redis):
    client.post("/reminders", json=STAND_UP, headers=user_headers)
    assert client.delete("/users", headers=user_headers).status_code == 204
    assert reminders.all_reminders(fake_redis) == []


# -- Messages --------------------------------------------------------------------------------

class DownSender:
    def send(self, phone_number: str, message: str) -> None:
        raise senders.NotificationError("Twilio could not be reached to send the SMS to "
                                        f"{phone_number}: ConnectionError")


def test_a_message_is_queued_for_the_worker_and_its_status_told_to_its_owner_only(
        client, user_headers, other_user_headers, fake_rq_redis, monkeypatch, capsys):
    answer = client.post("/messages", json={"to": "(415) 351-8780", "message": "Hello now"},
                         headers=user_headers)
    assert answer.status_code == 202
    job_id = answer.get_json()["jobId"]
    assert list(answer.get_json()) == ["jobId"]
    assert answer.headers["Location"] == f"/messages/{job_id}"
    [job] = sms_jobs(fake_rq_redis)
    assert (job.id, job.args, job.meta["owner"]) == (job_id, ["+14153518780", "Hello now"],
                                                     JANE_PHONE)
    status = client.get(f"/messages/{job_id}", headers=user_headers)
    assert status.data == f'{{"jobId":"{job_id}","to":"+14153518780","status":"queued"}}'.encode()
    for headers, path in ((other_user_headers, f"/messages/{job_id}"),
                          (user_headers, "/messages/no-such-job")):
        missing = client.get(path, headers=headers)
        assert (missing.status_code, missing.get_json()) == (404, {"status": "Message not found"})

    monkeypatch.setattr(senders, "sender_from_env", DownSender)
    workers.make_worker(SMS_QUEUE, fake_rq_redis, job_label="SMS job").work(burst=True)
    reason = "Twilio could not be reached to send the SMS to +14153518780: ConnectionError"
    assert client.get(f"/messages/{job_id}", headers=user_headers).get_json() == {
        "jobId": job_id, "to": "+14153518780", "status": "scheduled", "reason": reason}
    assert capsys.readouterr().err == f"SMS job {job_id} failed (retry 1 of 3 in 10s): {reason}\n"


@pytest.mark.parametrize(("body", "status"), [
    ({"to": "12", "message": "hi"},
     "Invalid phone number '12': use +14153518780, or a national number such as 4153518780"),
    ({"message": "hi"}, "A phone number is needed"),
    ({"to": "4153518780", "message": ""}, "The message is empty"),
    ({"to": "4153518780", "message": "x" * 1601},
     "The message is 1601 characters long; at most 1600"),
])
def test_bad_messages_are_refused_and_nothing_queued(client, user_headers, fake_rq_redis,
                                                     body, status):
    answer = client.post("/messages", json=body, headers=user_headers)
    assert (answer.status_code, answer.get_json()) == (400, {"status": status})
    assert sms_jobs(fake_rq_redis) == []
