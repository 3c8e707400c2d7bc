"""Task 11: the port of the course's 8-job.test.js.

Kue's test mode keeps created jobs in memory, unprocessed, for the test to inspect.
Here the jobs go to a fake Redis that no worker reads: the same idea, with RQ's own
queue as the thing inspected. As in the course, one queue serves the whole suite
(``queue.testMode.enter()`` before it), and it is emptied after each test
(``queue.testMode.clear()``).
"""

from __future__ import annotations

import fakeredis
import pytest
from rq import Queue
from rq.job import Job
from rq.serializers import DefaultSerializer

from queuing import jobs, workers
from queuing.constants import PUSH_NOTIFICATION_QUEUE_3
from tests.processes import load_script

job_8 = load_script("8_job")
create_push_notifications_jobs = job_8.create_push_notifications_jobs

TWO_JOBS = [
    {"phoneNumber": "4153518780", "message": "This is the code 1234 to verify your account"},
    {"phoneNumber": "4153518781", "message": "This is the code 4562 to verify your account"},
]


@pytest.fixture(scope="module")
def queue():
    """The suite's queue, on a Redis of its own that nothing processes."""
    connection = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return jobs.json_queue(PUSH_NOTIFICATION_QUEUE_3, connection)


@pytest.fixture(autouse=True)
def empty_queue_after_each_test(queue):
    yield
    queue.empty()
    assert queue.count == 0


@pytest.mark.parametrize("not_a_list", ["jobs", {"phoneNumber": "1"}, None, 42, ("a", "b")],
                         ids=["str", "dict", "None", "int", "tuple"])
def test_display_a_error_message_if_jobs_is_not_an_array(queue, not_a_list):
    with pytest.raises(Exception, match=r"^Jobs is not an array$") as raised:
        create_push_notifications_jobs(not_a_list, queue)
    assert str(raised.value) == "Jobs is not an array"
    assert queue.count == 0


def test_create_two_new_jobs_to_the_queue(queue, capsys):
    assert queue.count == 0  # the previous tests' jobs were cleared
    batch = create_push_notifications_jobs(TWO_JOBS, queue)
    first, second = (int(job_id) for job_id in batch.job_ids)
    assert second == first + 1
    assert capsys.readouterr().out == (
        f"Notification job created: {first}\nNotification job created: {second}\n")
    assert queue.job_ids == batch.job_ids
    created = [Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
               for job_id in queue.job_ids]
    assert [job.origin for job in created] == [PUSH_NOTIFICATION_QUEUE_3] * 2
    assert [job.args for job in created] == [[data] for data in TWO_JOBS]
    assert [job.get_status() for job in created] == ["queued", "queued"]  # not processed


def test_jobs_go_to_the_queue_given_its_name_and_connection(queue, capsys):
    elsewhere = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    other = jobs.json_queue("another_queue", elsewhere)
    batch = create_push_notifications_jobs(TWO_JOBS, other)
    assert capsys.readouterr().out == "".join(
        f"Notification job created: {job_id}\n" for job_id in batch.job_ids)
    assert other.job_ids == batch.job_ids
    assert [job.args for job in other.jobs] == [[data] for data in TWO_JOBS]
    assert [job.origin for job in other.jobs] == ["another_queue"] * 2
    assert queue.count == 0  # nothing in push_notification_code_3, nor on its Redis


@pytest.mark.parametrize("items", [TWO_JOBS, []], ids=["two-jobs", "empty-list"])
@pytest.mark.parametrize("serializer", [None, DefaultSerializer, "pickle"],
                         ids=["rq-default", "DefaultSerializer", "pickle-alias"])
def test_a_queue_that_is_not_json_is_refused_before_anything_is_written(serializer, items,
                                                                        capsys):
    connection = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    pickled = Queue(PUSH_NOTIFICATION_QUEUE_3, connection=connection, serializer=serializer)
    with pytest.raises(ValueError, match=rf"^queue {PUSH_NOTIFICATION_QUEUE_3} is not a JSON "
                                         r"queue .*jobs\.json_queue"):
        create_push_notifications_jobs(items, pickled)
    assert connection.keys("*") == []  # no job, no id taken, no queue registered
    assert capsys.readouterr().out == ""
    assert pickled.jobs == []  # and RQ reads the queue as it was


def test_not_an_array_comes_first_whatever_the_queue(capsys):
    connection = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    pickled = Queue(PUSH_NOTIFICATION_QUEUE_3, connection=connection)
    with pytest.raises(TypeError, match=r"^Jobs is not an array$"):
        create_push_notifications_jobs("jobs", pickled)
    assert connection.keys("*") == []


def test_an_empty_list_creates_nothing(queue, capsys):
    assert create_push_notifications_jobs([], queue).job_ids == []
    assert capsys.readouterr().out == ""
    assert queue.count == 0


@pytest.mark.job_workers
def test_created_jobs_report_progress_completion_and_failure_when_processed(queue, capsys):
    # Out of test mode: a worker runs them and the spec's lines follow, without '#'.
    batch = create_push_notifications_jobs(
        [*TWO_JOBS, {"phoneNumber": "4153518743", "message": "hi"}], queue)
    workers.make_worker(PUSH_NOTIFICATION_QUEUE_3, queue.connection).work(
        burst=True, logging_level="ERROR")
    capsys.readouterr()
    job_8.print_job_events(batch)
    one, two, three = batch.job_ids
    assert capsys.readouterr().out.splitlines() == [
        f"Notification job {one} 0% complete",
        f"Notification job {one} failed: Phone number 4153518780 is blacklisted",
        f"Notification job {two} 0% complete",
        f"Notification job {two} failed: Phone number 4153518781 is blacklisted",
        f"Notification job {three} 0% complete",
        f"Notification job {three} 50% complete",
        f"Notification job {three} completed",
    ]
    assert not queue.connection.exists(batch.stream)
