"""A failed job prints one line with its reason on the worker's screen
(stderr), except the course's expected outcome (a blacklisted number); a wrong or partial
Twilio setting stops 105_worker.py at start (exit 2); a worker that quits on an error
exits non-zero."""

from __future__ import annotations

import pytest

from queuing import jobs
from queuing.connection import rq_client
from queuing.constants import PUSH_NOTIFICATION_QUEUE, SMS_QUEUE
from queuing.local_redis import free_port
from tests.local_http import StubTwilio
from tests.processes import Script, run_script, wait_until

pytestmark = pytest.mark.redis_server

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "wrong-token-never-shown"
TWILIO = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN,
          "TWILIO_FROM_NUMBER": "+16674013836", "TWILIO_REMINDER_NUMBER": ""}


@pytest.fixture
def connection(redis_url):
    client = rq_client(redis_url)
    yield client
    client.close()


def sms_worker_burst(redis_url, connection, **env):
    jobs.json_queue(SMS_QUEUE, connection).enqueue("queuing.senders.send_sms", "4153518780", "hi",
                                                   job_id="12")
    return run_script("105_worker", redis_url, "--burst", **env)


@pytest.mark.job_workers
def test_a_refused_sms_prints_one_line_without_secrets(redis_url, connection):
    stub = StubTwilio(status=401)
    try:
        result = sms_worker_burst(redis_url, connection, TWILIO_API_BASE_URL=stub.url, **TWILIO)
    finally:
        stub.close()
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "SMS job 12 failed: Twilio refused the SMS to +14153518780: HTTP 401, error 20003: "
        "Unable to create record: Authenticate"]
    assert TOKEN not in result.stdout + result.stderr


@pytest.mark.job_workers
def test_an_unreachable_twilio_prints_one_line(redis_url, connection):
    result = sms_worker_burst(redis_url, connection,
                              TWILIO_API_BASE_URL=f"http://127.0.0.1:{free_port()}", **TWILIO)
    assert result.stderr.splitlines() == [
        "SMS job 12 failed: Twilio could not be reached to send the SMS to +14153518780: "
        "ConnectionError"]


@pytest.mark.parametrize("setting, line", [
    ({"TWILIO_FROM_NUMBER": ""}, "Twilio is partly configured: set TWILIO_FROM_NUMBER too"),
    ({"TWILIO_ACCOUNT_SID": "SK123"},
     "TWILIO_ACCOUNT_SID is not an account SID (AC and 32 hexadecimal digits, "
     "from Twilio's console)"),
    ({"TWILIO_FROM_NUMBER": "12345"}, "TWILIO_FROM_NUMBER is not a phone number: use E.164 "
                                      "(+14153518780) or 10 US digits (4153518780)"),
])
@pytest.mark.job_workers
def test_a_wrong_or_partial_twilio_setting_stops_the_worker_at_start(redis_url, setting, line):
    result = run_script("105_worker", redis_url, **(TWILIO | setting))
    assert (result.returncode, result.stderr, result.stdout) == (2, line + "\n", "")


@pytest.mark.parametrize("func, args, reason", [
    ("queuing.notifications.push_notification", [{"phoneNumber": "4153518780"}],
     "job data has no message"),
    ("queuing.notifications.no_such_function", [{}], None),
    ("time.sleep", [5], "Task exceeded maximum timeout value (1 seconds)"),
])
@pytest.mark.job_workers
def test_each_failed_job_prints_one_line_with_its_reason(redis_url, connection, func, args,
                                                         reason):
    processor = Script("6_job_processor", redis_url)
    try:
        queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE, connection)
        queue.enqueue(func, *args, job_id="7", job_timeout=1)
        wait_until(lambda: queue.failed_job_registry.count == 1, "the job failed")
        assert processor.interrupt() == 0
        [line] = processor.stderr.splitlines()
        assert line.startswith("Notification job 7 failed: ")
        if reason:
            assert line == f"Notification job 7 failed: {reason}"
        assert processor.lines == []
    finally:
        processor.kill()


@pytest.mark.job_workers
def test_a_blacklisted_number_fails_without_a_line_on_the_processor(redis_url, connection):
    processor = Script("7_job_processor", redis_url)
    try:
        queue = jobs.json_queue("push_notification_code_2", connection)
        queue.enqueue("queuing.notifications.push_tracked_notification",
                      {"phoneNumber": "4153518780", "message": "hi"}, job_id="39")
        wait_until(lambda: queue.failed_job_registry.count == 1, "the job failed")
        assert processor.interrupt() == 0
        assert (processor.lines, processor.stderr) == ([], "")
    finally:
        processor.kill()


@pytest.mark.job_workers
def test_a_processor_whose_worker_quits_on_an_error_exits_non_zero(redis_url, connection):
    # The queue's key is not a list (someone else wrote it): taking a job from it fails,
    # and RQ's loop quits. (A job that cannot be read only fails that job.)
    connection.set(f"rq:queue:{PUSH_NOTIFICATION_QUEUE}", "not a list")
    processor = Script("6_job_processor", redis_url)  # one worker, in the processor itself
    try:
        assert processor.finish(timeout=30) == 1
    finally:
        processor.kill()
