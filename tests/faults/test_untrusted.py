"""Jobs written into Redis by someone else: a job naming a function that is not ours never
runs, a job whose hash cannot be read fails with one line, and the processor goes on."""

from __future__ import annotations

import time

import pytest
from rq import Callback, Worker
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from queuing import job_events, jobs
from queuing.connection import rq_client
from queuing.constants import PUSH_NOTIFICATION_QUEUE_2
from queuing.job_batch import JobBatch
from tests.scripts.test_jobs import start_processor, wait_until

pytestmark = pytest.mark.redis_server

GOOD = {"phoneNumber": "4153518743", "message": "This is the code 4321 to verify your account"}
SENT = f"Sending notification to {GOOD['phoneNumber']}, with message: {GOOD['message']}"
NOT_OURS = "is not one of this project's job functions"
# A field of a job hash, and a value RQ cannot read.
POISON = [("result_ttl", "abc"), ("timeout", "x"), ("created_at", "bad"),
          ("dependency_ids", "{"), ("status", "nonsense"), ("failure_ttl", "soon")]


def queue_for(redis_url):
    connection = rq_client(redis_url)
    return connection, jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)


def poisoned(queue, field: str, value: str) -> str:
    """A job RQ wrote, spoilt in one field before it is queued (a worker waiting for a job
    must never see it whole)."""
    job = queue.create_job("queuing.notifications.push_tracked_notification", args=(GOOD,))
    job.save()
    queue.connection.hset(job.key, field, value)
    queue.connection.rpush(queue.key, job.id)
    return job.id


def wrong_type(queue, job_id: str) -> str:
    queue.connection.set(f"rq:job:{job_id}", "not a hash")
    queue.connection.rpush(queue.key, job_id)
    return job_id


def stop(processor, connection) -> None:
    status = processor.interrupt()
    assert status == 0, processor.stderr
    assert "Traceback" not in processor.stderr
    assert Worker.count(connection=connection) == 0


@pytest.mark.parametrize("waiting", [True, False], ids=["jobs-waiting", "worker-idle"])
@pytest.mark.job_workers
def test_jobs_naming_functions_that_are_not_ours_never_run(redis_url, tmp_path, waiting):
    """Through RQ's own JSON enqueue, as anyone who can write to Redis could; the creator
    hears "failed", never "completed"."""
    connection, queue = queue_for(redis_url)
    markers = [tmp_path / name for name in ("system", "getoutput", "exec", "callback")]
    processor = None if waiting else start_processor("7_job_processor", redis_url,
                                                     connection, workers=2)
    with JobBatch(queue) as batch:
        hostile = [
            batch.add("os.system", f"touch {markers[0]}", job_id="h1"),
            batch.add("subprocess.getoutput", f"touch {markers[1]}", job_id="h2"),
            batch.add("builtins.exec", f"open('{markers[2]}', 'w')", job_id="h3"),
            queue.enqueue("queuing.notifications.push_tracked_notification", GOOD, job_id="h4",
                          meta={job_events.REPLY_TO: batch.stream},
                          on_success=Callback("os.system"),
                          on_failure=Callback(job_events.job_failed)),
        ]
        batch.job_ids.append("h4")
        good = batch.add("queuing.notifications.push_tracked_notification", GOOD, job_id="g1")
        if processor is None:
            processor = start_processor("7_job_processor", redis_url, connection, workers=2)
        events = {event.job_id: event for event in batch.events() if event.is_final}
    try:
        processor.wait_for(SENT)
        assert events["g1"].kind == "completed"
        for job in hostile:
            assert events[job.id].kind == "failed", events[job.id]
            assert NOT_OURS in events[job.id].error
        failed = FailedJobRegistry(queue=queue).get_job_ids()
        assert sorted(failed) == ["h1", "h2", "h3", "h4"]
        assert good.get_status(refresh=True) == "finished"
        assert not any(marker.exists() for marker in markers)
    finally:
        stop(processor, connection)
    lines = processor.stderr.splitlines()
    assert sorted(lines) == sorted(f"Notification job {job.id} failed: {events[job.id].error}"
                                   for job in hostile)
    assert processor.lines == [SENT]  # stdout: the course's lines only


@pytest.mark.parametrize("waiting", [True, False], ids=["jobs-waiting", "worker-idle"])
@pytest.mark.job_workers
def test_job_hashes_that_cannot_be_read_fail_and_the_processor_goes_on(redis_url, waiting):
    connection, queue = queue_for(redis_url)
    processor = None if waiting else start_processor("7_job_processor", redis_url,
                                                     connection, workers=2)
    bad = [poisoned(queue, field, value) for field, value in POISON]
    bad.append(wrong_type(queue, "666"))
    good = queue.enqueue("queuing.notifications.push_tracked_notification", GOOD)
    if processor is None:
        processor = start_processor("7_job_processor", redis_url, connection, workers=2)
    try:
        processor.wait_for(SENT)
        wait_until(lambda: good.get_status(refresh=True) == "finished", "the good job recorded")
        wait_until(lambda: sorted(FailedJobRegistry(queue=queue).get_job_ids()) == sorted(bad),
                   "every unreadable job failed")
        assert connection.llen(queue.key) == 0
        assert connection.llen(queue.intermediate_queue_key) == 0
        assert StartedJobRegistry(queue=queue).get_job_ids() == []
    finally:
        stop(processor, connection)
    lines = processor.stderr.splitlines()
    assert sorted(line.split(" failed: ")[0] for line in lines) == sorted(
        f"Notification job {job_id}" for job_id in bad)
    assert all("its job cannot be read (" in line for line in lines)


@pytest.mark.job_workers
def test_an_unreadable_job_left_started_by_a_dead_worker_does_not_stop_the_recovery(redis_url):
    connection, queue = queue_for(redis_url)
    job_id = poisoned(queue, "result_ttl", "abc")
    connection.lrem(queue.key, 0, job_id)
    # As a worker that died (SIGKILL) mid-job leaves it: in the started registry.
    connection.zadd(StartedJobRegistry(queue=queue).key, {f"{job_id}:x": time.time() + 60})
    good = queue.enqueue("queuing.notifications.push_tracked_notification", GOOD)
    processor = start_processor("7_job_processor", redis_url, connection, workers=2)
    try:
        processor.wait_for(SENT)
        wait_until(lambda: job_id in FailedJobRegistry(queue=queue).get_job_ids(),
                   "the unreadable started job failed")
        wait_until(lambda: FinishedJobRegistry(queue=queue).get_job_ids() == [good.id],
                   "the good job recorded")
    finally:
        stop(processor, connection)
    assert processor.stderr.splitlines() == [
        f"Notification job {job_id} failed: its job cannot be read "
        "(ValueError: invalid literal for int() with base 10: b'abc')"]
