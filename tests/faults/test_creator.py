"""A creator against Redis restarts, stalls and lost data: it never dies while it
enqueues, never writes a job twice, and never waits for ever for a job that is gone."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import fakeredis
import pytest
import redis
from rq.utils import utcformat

from queuing import job_batch, job_events, jobs, notifications
from queuing.connection import rq_client
from queuing.constants import PUSH_NOTIFICATION_QUEUE_2
from queuing.job_batch import JobBatch
from queuing.job_events import FAILED, JobEvent

GOOD = {"phoneNumber": "4153518743", "message": "This is the code 4321 to verify your account"}


def lose_the_first_reply(connection) -> list[int]:
    """Make the batched enqueue's script lose its first reply after running, as a reply
    lost to a restart does; returns a list that counts the script's runs."""
    runs: list[int] = []
    register = connection.register_script

    def register_losing(script_text):
        script = register(script_text)

        def run(**kwargs):
            result = script(**kwargs)
            runs.append(result)
            if len(runs) == 1:
                raise redis.ConnectionError("Connection closed by server.")
            return result
        return run

    connection.register_script = register_losing
    return runs


def test_a_reply_lost_after_the_batch_was_written_writes_nothing_twice(fake_server, capsys):
    connection = fakeredis.FakeRedis(server=fake_server)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    runs = lose_the_first_reply(connection)
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(
            batch, [GOOD] * 3, notifications.push_tracked_notification)
    queued = [job_id.decode() for job_id in connection.lrange(queue.key, 0, -1)]
    assert queued == ["1", "2", "3"]
    assert runs == [3, 0]  # the retry found the batch written and wrote nothing
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("Redis client not connected to the server: "
                      "Connection closed by server.")
    assert out[-3:] == [f"Notification job created: {n}" for n in (1, 2, 3)]


@pytest.mark.redis_server
def test_a_creator_rides_out_a_stall_of_redis_and_queues_each_job_once(redis_url, capsys):
    """Redis stops answering writes for 2 s (CLIENT PAUSE) while a creator enqueues 1,200
    jobs with a 0.3 s socket timeout: it times out, retries, and ends with every job
    queued exactly once."""
    admin = redis.Redis.from_url(redis_url)
    connection = rq_client(redis_url, socket_timeout=0.3)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    admin.execute_command("CLIENT", "PAUSE", 2000, "WRITE")
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(
            batch, [GOOD] * 1200, notifications.push_tracked_notification)
    queued = [job_id.decode() for job_id in admin.lrange(queue.key, 0, -1)]
    assert len(queued) == len(set(queued)) == 1200
    assert queued == batch.job_ids
    assert admin.eval("return #redis.call('KEYS', 'rq:job:*')", 0) == 1200
    out = capsys.readouterr().out
    assert "Redis client not connected to the server: Timeout" in out
    assert out.count("Notification job created: ") == 1200


def test_a_creator_reports_jobs_whose_data_is_gone_instead_of_waiting_for_ever(fake_server):
    connection = fakeredis.FakeRedis(server=fake_server)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        ids = batch.add_many(notifications.push_tracked_notification, [(GOOD,), (GOOD,)])
        connection.delete(*(f"rq:job:{job_id}" for job_id in ids))  # Redis lost them
        events = list(batch.events(block_ms=50))
    assert events == [JobEvent(job_id, FAILED, error=job_batch.LOST_JOB) for job_id in ids]


def test_a_job_deleted_right_after_its_final_event_is_not_taken_for_lost(fake_server):
    connection = fakeredis.FakeRedis(server=fake_server)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        [job_id] = batch.add_many(notifications.push_tracked_notification, [(GOOD,)])
        job_events.publish(connection, batch.stream, JobEvent(job_id, job_events.COMPLETED))
        connection.delete(f"rq:job:{job_id}")  # result_ttl=0: gone at its end
        events = list(batch.events(block_ms=50))
    assert [event.kind for event in events] == ["completed"]


@pytest.mark.parametrize(("status", "kind"), [("finished", "completed"), ("failed", "failed")])
def test_a_job_that_ended_but_whose_event_was_lost_is_reported_as_it_ended(fake_server, status,
                                                                          kind):
    """A failover can keep a job's end (its hash) and lose its final event (written by
    another command): the creator reports the end it finds instead of waiting for ever."""
    connection = fakeredis.FakeRedis(server=fake_server)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        [job_id] = batch.add_many(notifications.push_tracked_notification, [(GOOD,)])
        long_ago = utcformat(datetime.now(timezone.utc) - timedelta(minutes=1))
        connection.hset(f"rq:job:{job_id}", mapping={"status": status, "ended_at": long_ago})
        events = list(batch.events(block_ms=50))
    assert [(event.job_id, event.kind) for event in events] == [(job_id, kind)]
    if kind == "failed":
        assert events[0].error == job_batch.LOST_FAILURE


def test_a_job_that_just_ended_is_given_time_for_its_event(fake_server):
    """The worker writes a job's final event just after recording its end: a creator that
    looks in between must not report an end of its own (it would hide the real reason)."""
    connection = fakeredis.FakeRedis(server=fake_server)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        [job_id] = batch.add_many(notifications.push_tracked_notification, [(GOOD,)])
        connection.hset(f"rq:job:{job_id}", mapping={
            "status": "failed", "ended_at": utcformat(datetime.now(timezone.utc))})
        assert job_batch._read_now_and_find_lost(connection, batch.stream, "0",
                                                 {job_id}) == []
