"""Tasks 6-10 on fakeredis: job functions run by an RQ SimpleWorker in burst mode, and
every line the creators print from the events the jobs send back."""

from __future__ import annotations

import logging

import fakeredis
import pytest
from rq import Callback, SimpleWorker
from rq.exceptions import AbandonedJobError, DeserializationError
from rq.job import Job

from queuing import job_batch, job_events, jobs, notifications, settings, workers
from queuing.constants import (
    JOB_EVENTS_PREFIX,
    JOB_EVENTS_TTL_SECONDS,
    PUSH_NOTIFICATION_QUEUE,
    PUSH_NOTIFICATION_QUEUE_2,
)
from queuing.job_batch import JobBatch
from queuing.job_events import JobEvent
from tests.processes import load_script

creator_6 = load_script("6_job_creator")
processor_6 = load_script("6_job_processor")
creator_7 = load_script("7_job_creator")
processor_7 = load_script("7_job_processor")

SEND_7 = "Sending notification to {}, with message: {}"
BLACKLISTED = ("4153518780", "4153518781")


@pytest.fixture
def connection(fake_server):
    """A bytes-mode client, as RQ needs."""
    return fakeredis.FakeRedis(server=fake_server)


def work_all(connection, queue_name: str) -> None:
    """Run every queued job with an RQ SimpleWorker, quietly, then return."""
    workers.configure_logging()
    worker = workers.make_worker(queue_name, connection)
    worker.work(burst=True, logging_level=workers.logging_level())


def course_7_events(first_id: int) -> list[list[str]]:
    """The lines of each of task 8's jobs, as the course's sample shows them."""
    lines = []
    for number, data in enumerate(creator_7.JOBS, start=first_id):
        job = f"Notification job #{number}"
        if data["phoneNumber"] in BLACKLISTED:
            lines.append([f"{job} 0% complete",
                          f"{job} failed: Phone number {data['phoneNumber']} is blacklisted"])
        else:
            lines.append([f"{job} 0% complete", f"{job} 50% complete", f"{job} completed"])
    return lines


# --- Task 6 and 7 -----------------------------------------------------------------------

def test_send_notification_prints_the_course_line(capsys):
    processor_6.send_notification("4153518780", "This is the code to verify your account")
    assert capsys.readouterr().out == (
        "Sending notification to 4153518780, "
        "with message: This is the code to verify your account\n")


@pytest.mark.job_workers
def test_task_6_job_is_created_processed_and_reported(connection, capsys):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE, connection)
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(
            batch, [creator_6.JOB_DATA], notifications.push_notification)
        assert capsys.readouterr().out == "Notification job created: 1\n"
        work_all(connection, PUSH_NOTIFICATION_QUEUE)
        assert capsys.readouterr().out == (
            "Sending notification to 4153518780, "
            "with message: This is the code to verify your account\n")
        notifications.print_events(batch, notifications.outcome_line)
        assert capsys.readouterr().out == "Notification job completed\n"


@pytest.mark.job_workers
def test_task_6_job_with_bad_data_fails_and_the_worker_keeps_going(connection, capsys):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE, connection)
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(
            batch, [{"phoneNumber": "1"}, creator_6.JOB_DATA], notifications.push_notification)
        work_all(connection, PUSH_NOTIFICATION_QUEUE)
        capsys.readouterr()
        notifications.print_events(batch, notifications.outcome_line)
        assert capsys.readouterr().out == "Notification job failed\nNotification job completed\n"


# --- Tasks 8 and 9 ----------------------------------------------------------------------

@pytest.mark.job_workers
def test_task_8_creator_prints_every_line_of_the_course_sample(connection, capsys):
    connection.set("queuing:job_id", 38)  # the sample's ids start at 39
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(
            batch, creator_7.JOBS, notifications.push_tracked_notification)
        assert capsys.readouterr().out.splitlines() == [
            f"Notification job created: {number}" for number in range(39, 50)]
        work_all(connection, PUSH_NOTIFICATION_QUEUE_2)
        assert capsys.readouterr().out.splitlines() == [
            SEND_7.format(data["phoneNumber"], data["message"])
            for data in creator_7.JOBS if data["phoneNumber"] not in BLACKLISTED]
        # The worker is done before the creator listens: no event is lost.
        notifications.print_events(batch, creator_7.event_line)
    # One worker runs one job at a time, so here each job's lines come in one block.
    expected = [line for lines in course_7_events(39) for line in lines]
    assert capsys.readouterr().out.splitlines() == expected


def test_task_9_blacklist_is_the_courses():
    assert processor_7.BLACKLISTED_NUMBERS == BLACKLISTED


@pytest.mark.parametrize(("data", "reason"), [
    ({"message": "hi"}, "job data has no phoneNumber"),
    ({"phoneNumber": "4153518743"}, "job data has no message"),
    ({"phoneNumber": 4153518743, "message": "hi"}, "phoneNumber must be a string, not a number"),
    ({"phoneNumber": "4153518743", "message": None}, "message must be a string, not null"),
    ("4153518743", "job data must be an object with phoneNumber and message, not a string"),
    ([1, 2], "job data must be an object with phoneNumber and message, not an array"),
])
@pytest.mark.job_workers
def test_bad_job_data_fails_with_a_one_line_reason(connection, capsys, data, reason):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    good = {"phoneNumber": "4153518743", "message": "after"}
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(
            batch, [data, good], notifications.push_tracked_notification)
        work_all(connection, PUSH_NOTIFICATION_QUEUE_2)
        notifications.print_events(batch, creator_7.event_line)
    assert capsys.readouterr().out.splitlines() == [
        "Notification job created: 1",
        "Notification job created: 2",
        "Sending notification to 4153518743, with message: after",
        f"Notification job #1 failed: {reason}",
        "Notification job #2 0% complete",
        "Notification job #2 50% complete",
        "Notification job #2 completed",
    ]


@pytest.mark.job_workers
def test_an_unreadable_payload_fails_with_a_one_line_reason(connection, capsys):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(
            batch, [creator_7.JOBS[2]], notifications.push_tracked_notification)
        connection.hset("rq:job:1", "data", b"{not json")
        work_all(connection, PUSH_NOTIFICATION_QUEUE_2)
        notifications.print_events(batch, creator_7.event_line)
    assert capsys.readouterr().out.splitlines() == [
        "Notification job created: 1",
        "Notification job #1 failed: job data cannot be read (not valid JSON)",
    ]
    assert Job.fetch("1", connection=connection).get_status() == "failed"


def test_job_ids_keep_growing_across_creators(connection, capsys):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE, connection)
    for _ in range(2):
        with JobBatch(queue) as batch:
            notifications.create_notification_jobs(
                batch, [creator_6.JOB_DATA], notifications.push_notification)
    assert capsys.readouterr().out.splitlines() == [
        "Notification job created: 1", "Notification job created: 2"]
    assert queue.job_ids == ["1", "2"]


def test_jobs_are_stored_as_json_with_their_reply_stream(connection, capsys):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(
            batch, creator_7.JOBS[:1], notifications.push_tracked_notification)
    job = Job.fetch("1", connection=connection, serializer=queue.serializer)
    # By its short name (jobs.SHORT_NAMES), which RQ imports as the function itself.
    assert job.func_name == "queuing.jobs.tracked"
    assert job.func is notifications.push_tracked_notification
    assert job.args == [creator_7.JOBS[0]]
    assert job.meta == {job_events.REPLY_TO: batch.stream}
    assert batch.stream.startswith(JOB_EVENTS_PREFIX)
    assert job.success_callback is job_events.job_completed
    assert job.failure_callback is job_events.job_failed


# --- The reply stream -------------------------------------------------------------------

def test_events_expire_and_the_stream_goes_when_the_creator_is_done(connection):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE, connection)
    with JobBatch(queue) as batch:
        job_events.publish(connection, batch.stream, JobEvent("7", job_events.PROGRESS, 0))
        assert 0 < connection.ttl(batch.stream) <= JOB_EVENTS_TTL_SECONDS
    assert not connection.exists(batch.stream)


def test_follow_reads_only_its_jobs_in_order_and_stops_when_all_ended(connection):
    stream = job_batch.new_reply_stream()
    sent = [
        JobEvent("1", "progress", progress=0),
        JobEvent("9", "completed"),  # not one of ours
        JobEvent("2", "failed", error="boom"),
        JobEvent("1", "progress", progress=50),
        JobEvent("2", "completed"),  # after the final one: ignored
        JobEvent("1", "completed"),
        JobEvent("1", "progress", progress=99),  # after the end
    ]
    for event in sent:
        job_events.publish(connection, stream, event)
    assert list(job_batch.follow(connection, stream, ["1", "2"], block_ms=1)) == [
        sent[0], sent[2], sent[3], sent[5]]


@pytest.mark.job_workers
def test_two_creators_never_hear_each_others_jobs(connection, capsys):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE, connection)
    with JobBatch(queue) as first, JobBatch(queue) as second:
        notifications.create_notification_jobs(
            first, [creator_6.JOB_DATA], notifications.push_notification)
        notifications.create_notification_jobs(
            second, [{"message": "no number"}], notifications.push_notification)
        work_all(connection, PUSH_NOTIFICATION_QUEUE)
        assert [e.kind for e in first.events()] == ["completed"]
        assert [e.kind for e in second.events()] == ["failed"]


@pytest.mark.job_workers
def test_a_job_without_a_reply_stream_runs_silently(connection, capsys):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    queue.enqueue(notifications.push_tracked_notification, creator_7.JOBS[3],
                  on_success=Callback(job_events.job_completed))
    work_all(connection, PUSH_NOTIFICATION_QUEUE_2)
    assert capsys.readouterr().out.startswith("Sending notification to 4153538781")
    assert connection.keys(f"{JOB_EVENTS_PREFIX}*") == []


@pytest.mark.parametrize(("exc_type", "exc_value", "reason"), [
    (ValueError, ValueError("first line\nsecond line"), "first line"),
    (KeyError, KeyError(), "KeyError"),
    (DeserializationError, DeserializationError(), "job data cannot be read (not valid JSON)"),
    (AbandonedJobError, AbandonedJobError(), "the worker running it stopped before it ended"),
    (SystemExit, SystemExit(), "its worker was stopped while running it (cold shutdown)"),
])
def test_failure_reason_is_one_line(exc_type, exc_value, reason):
    assert job_events.failure_reason(exc_type, exc_value) == reason


def test_an_abandoned_job_is_reported_failed(connection):
    # RQ's clean-up calls the failure callback for a job whose worker died.
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        job = batch.add(notifications.push_tracked_notification, {}, job_id="5")
        job_events.job_failed(job, connection, AbandonedJobError, AbandonedJobError(), None)
        assert list(batch.events(block_ms=1)) == [
            JobEvent("5", "failed", error="the worker running it stopped before it ended")]


def test_event_lines():
    progress = JobEvent("39", "progress", progress=50)
    failed = JobEvent("39", "failed", error="Phone number 4153518780 is blacklisted")
    completed = JobEvent("39", "completed")
    assert notifications.lifecycle_line(progress) == "Notification job #39 50% complete"
    assert notifications.lifecycle_line(failed) == (
        "Notification job #39 failed: Phone number 4153518780 is blacklisted")
    assert notifications.lifecycle_line(completed, id_prefix="") == "Notification job 39 completed"
    assert notifications.outcome_line(progress) is None
    assert notifications.outcome_line(failed) == "Notification job failed"
    assert notifications.outcome_line(completed) == "Notification job completed"


def test_event_fields_round_trip_as_bytes_or_str():
    event = JobEvent("3", "failed", error="why")
    as_bytes = {k.encode(): v.encode() for k, v in event.fields().items()}
    assert JobEvent.from_fields(as_bytes) == JobEvent.from_fields(event.fields()) == event


# --- Worker logging ---------------------------------------------------------------------

def test_rq_is_quiet_unless_rq_verbose(monkeypatch):
    monkeypatch.delenv(settings.VERBOSE_ENV, raising=False)
    assert workers.logging_level() == "ERROR"
    monkeypatch.setenv(settings.VERBOSE_ENV, "1")
    assert workers.logging_level() == "INFO"
    monkeypatch.setenv(settings.VERBOSE_ENV, "0")
    assert workers.logging_level() == "ERROR"


def test_quiet_workers_drop_job_failure_records_only():
    def record(**extra):
        made = logging.LogRecord("rq.worker", logging.ERROR, __file__, 1, "msg", (), None)
        made.__dict__.update(extra)
        return made

    assert not workers._not_a_job_failure(record(job_id="1", queue="q"))
    assert workers._not_a_job_failure(record())


@pytest.mark.job_workers
def test_a_simple_worker_is_what_runs_the_jobs(connection):
    worker = workers.make_worker(PUSH_NOTIFICATION_QUEUE_2, connection)
    assert isinstance(worker, SimpleWorker)
    assert worker.queue_names() == [PUSH_NOTIFICATION_QUEUE_2]
