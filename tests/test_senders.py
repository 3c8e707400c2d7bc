"""The notification senders: the console's course line, Twilio stubbed at its HTTP boundary."""

from __future__ import annotations

import json

import fakeredis
import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from twilio.http import HttpClient
from twilio.http.response import Response

from queuing import notifications, senders
from queuing.constants import SMS_QUEUE
from queuing.jobs import json_queue
from tests.local_http import StubTwilio

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "s3cr3t-auth-token-value"
FROM = "+16674013836"
TWILIO_ENV = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_FROM_NUMBER": FROM}


class FakeTwilioHttp(HttpClient):
    """Twilio's HTTP boundary: records each request and answers with a canned response."""

    def __init__(self, status: int = 201, body: dict | None = None, error: Exception | None = None):
        super().__init__(logger=None, is_async=False)
        self.requests: list[dict] = []
        self.status = status
        self.body = body if body is not None else {"sid": "SM123", "status": "queued"}
        self.error = error

    def request(self, method, uri, params=None, data=None, headers=None, auth=None,
                timeout=None, allow_redirects=False):
        self.requests.append({"method": method, "uri": uri, "data": data, "auth": auth})
        if self.error:
            raise self.error
        return Response(self.status, json.dumps(self.body))


@pytest.mark.parametrize(("given", "expected"), [
    ("4153518780", "+14153518780"),
    ("+14153518780", "+14153518780"),
    ("(415) 351-8780", "+14153518780"),
    ("+44 20 7946 0958", "+442079460958"),
])
def test_e164_accepts_e164_and_the_course_us_form(given, expected):
    assert senders.e164(given) == expected


@pytest.mark.parametrize("given", ["", "123", "41535187800", "+0123456789", "phone", "1153518780",
                                   "+1415351878012345", None])
def test_e164_rejects_other_numbers_with_one_line(given):
    with pytest.raises(senders.NotificationError) as caught:
        senders.e164(given)
    assert "\n" not in str(caught.value)


def test_console_sender_prints_the_course_line(capsys):
    senders.ConsoleSender().send("4153518780", "This is the code 1234 to verify your account")
    assert capsys.readouterr().out == (
        "Sending notification to 4153518780, with message: "
        "This is the code 1234 to verify your account\n"
    )


def test_console_sender_rejects_a_bad_number_before_printing(capsys):
    with pytest.raises(senders.NotificationError, match="Invalid phone number '12'"):
        senders.ConsoleSender().send("12", "hi")
    assert capsys.readouterr().out == ""


def test_sender_from_env_chooses_by_configuration():
    assert isinstance(senders.sender_from_env({}), senders.ConsoleSender)
    assert isinstance(senders.sender_from_env({"TWILIO_ACCOUNT_SID": ""}), senders.ConsoleSender)
    assert isinstance(senders.sender_from_env(TWILIO_ENV), senders.TwilioSender)
    course_names = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN,
                  "TWILIO_REMINDER_NUMBER": FROM}
    assert senders.sender_from_env(course_names).from_number == FROM


def test_a_partial_twilio_configuration_is_an_error_without_secrets():
    with pytest.raises(senders.NotificationError) as caught:
        senders.sender_from_env({"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN})
    assert str(caught.value) == "Twilio is partly configured: set TWILIO_FROM_NUMBER too"


def test_twilio_sender_posts_the_message(capsys):
    http = FakeTwilioHttp()
    sender = senders.TwilioSender(SID, TOKEN, FROM, http_client=http)
    sender.send("4153518780", "Alert: your check for GET http://example.com is now down")
    [request] = http.requests
    assert request["method"] == "POST"
    assert request["uri"] == f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json"
    assert request["data"] == {"To": "+14153518780", "From": FROM,
                               "Body": "Alert: your check for GET http://example.com is now down"}
    assert request["auth"] == (SID, TOKEN)
    out = capsys.readouterr().out
    assert out == "SMS SM123 to +14153518780 queued by Twilio (queued)\n"


def test_twilio_sender_never_calls_twilio_for_a_bad_number():
    http = FakeTwilioHttp()
    with pytest.raises(senders.NotificationError, match="Invalid phone number"):
        senders.TwilioSender(SID, TOKEN, FROM, http_client=http).send("555", "hi")
    assert http.requests == []


def test_twilio_sender_refuses_empty_and_too_long_messages():
    http = FakeTwilioHttp()
    sender = senders.TwilioSender(SID, TOKEN, FROM, http_client=http)
    with pytest.raises(senders.NotificationError, match="empty"):
        sender.send("4153518780", "  ")
    with pytest.raises(senders.NotificationError, match="1601 characters"):
        sender.send("4153518780", "x" * 1601)
    assert http.requests == []


def test_twilio_error_is_one_line_without_secrets(capsys):
    http = FakeTwilioHttp(400, {"code": 21211, "status": 400, "more_info": "https://x",
                                "message": f"The 'To' number +14153518780 is not valid. {SID}"})
    sender = senders.TwilioSender(SID, TOKEN, FROM, http_client=http)
    with pytest.raises(senders.NotificationError) as caught:
        sender.send("4153518780", "hi")
    message = str(caught.value)
    assert message.startswith("Twilio refused the SMS to +14153518780: HTTP 400, error 21211: ")
    assert "The 'To' number +14153518780 is not valid. ***" in message
    assert "\n" not in message and SID not in message and TOKEN not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert SID not in capsys.readouterr().out


def test_twilio_unreachable_is_one_line():
    import requests

    http = FakeTwilioHttp(error=requests.ConnectionError(f"cannot reach /Accounts/{SID}"))
    with pytest.raises(senders.NotificationError) as caught:
        senders.TwilioSender(SID, TOKEN, FROM, http_client=http).send("4153518780", "hi")
    assert str(caught.value) == (
        "Twilio could not be reached to send the SMS to +14153518780: ConnectionError")


@pytest.fixture
def stub_twilio():
    stub = StubTwilio()
    yield stub
    stub.close()


def configure(monkeypatch, env: dict) -> None:
    """Exactly these Twilio variables, whatever the machine has."""
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER",
                 "TWILIO_REMINDER_NUMBER", "TWILIO_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def run_sms_job(monkeypatch, env: dict, phone: str, message: str):
    """Run the SMS job, and each of its retries at once (their delays skipped), to its end."""
    configure(monkeypatch, env)
    connection = fakeredis.FakeRedis()
    job = senders.enqueue_sms(connection, phone, message)
    queue = json_queue(SMS_QUEUE, connection)
    for _run in range(len(senders.SMS_RETRY_INTERVALS) + 1):
        for job_id in queue.scheduled_job_registry.get_job_ids():  # due now
            connection.zadd(queue.scheduled_job_registry.key, {job_id: 0})
        SimpleWorker([queue], connection=connection,
                     serializer=JSONSerializer).work(burst=True, with_scheduler=True)
        job.refresh()
        if job.get_status() in ("finished", "failed"):
            break
    return job


def test_an_sms_job_is_retried_three_times_with_backoff():
    job = senders.enqueue_sms(fakeredis.FakeRedis(), "+14153518780", "hi", owner="+14155550100")
    assert (job.retries_left, job.retry_intervals) == (3, [10, 60, 300])
    assert job.meta == {"owner": "+14155550100", "retries": 3}


def test_a_failing_sms_job_runs_four_times_then_fails(monkeypatch):
    job = run_sms_job(monkeypatch, {}, "12345", "hi")
    assert job.get_status() == "failed"
    assert job.retries_left == 0


def test_the_sms_job_sends_through_twilio_configured_by_env(monkeypatch, stub_twilio):
    env = TWILIO_ENV | {"TWILIO_API_BASE_URL": stub_twilio.url}
    job = run_sms_job(monkeypatch, env, "4153518780", "Take your medicine")
    assert job.get_status() == "finished"
    [post] = stub_twilio.posts
    assert post["path"] == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert post["form"] == {"To": "+14153518780", "From": FROM, "Body": "Take your medicine"}
    assert job.args == ["4153518780", "Take your medicine"]  # no secret in the job's data


def test_a_failed_sms_job_says_why_without_secrets(monkeypatch):
    stub = StubTwilio(status=401)
    try:
        job = run_sms_job(monkeypatch, TWILIO_ENV | {"TWILIO_API_BASE_URL": stub.url},
                          "4153518780", "hi")
    finally:
        stub.close()
    assert job.get_status() == "failed"
    failure = job.latest_result().exc_string
    assert ("senders.NotificationError: Twilio refused the SMS to +14153518780: HTTP 401, "
            "error 20003: ") in failure
    assert failure.rstrip().endswith("Authenticate")
    assert SID not in failure and TOKEN not in failure


def test_a_rejected_number_fails_the_job_with_its_reason(monkeypatch, capsys):
    job = run_sms_job(monkeypatch, {}, "12345", "hi")
    assert job.get_status() == "failed"
    assert "NotificationError: Invalid phone number '12345'" in job.latest_result().exc_string


def test_the_courses_notifications_become_real_sms_when_twilio_is_configured(
        monkeypatch, stub_twilio, capsys):
    configure(monkeypatch, TWILIO_ENV | {"TWILIO_API_BASE_URL": stub_twilio.url})
    notifications.send_notification("4153518780", "This is the code to verify your account")
    [post] = stub_twilio.posts
    assert post["form"] == {"To": "+14153518780", "From": FROM,
                            "Body": "This is the code to verify your account"}
    assert "Sending notification" not in capsys.readouterr().out


def test_the_courses_notifications_print_the_course_line_by_default(monkeypatch, capsys):
    configure(monkeypatch, {})
    notifications.send_notification("4153518780", "This is the code to verify your account")
    assert capsys.readouterr().out == ("Sending notification to 4153518780, "
                                       "with message: This is the code to verify your account\n")


@pytest.mark.parametrize(("env", "reason"), [
    ({"TWILIO_ACCOUNT_SID": SID}, "partly configured: set TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER"),
    (TWILIO_ENV | {"TWILIO_ACCOUNT_SID": "SK" + "0" * 32}, "TWILIO_ACCOUNT_SID is not"),
    (TWILIO_ENV | {"TWILIO_FROM_NUMBER": "12345"}, "TWILIO_FROM_NUMBER is not a phone number"),
])
def test_the_worker_start_check_names_a_wrong_setting_never_its_value(env, reason):
    """105_worker.py calls check_settings before its worker starts (exit 2 on this)."""
    with pytest.raises(senders.TwilioSettingError, match=reason) as caught:
        senders.check_settings(env)
    assert SID not in str(caught.value) and TOKEN not in str(caught.value)
    senders.check_settings({})  # nothing set: the console sender, no error
    senders.check_settings(TWILIO_ENV)
