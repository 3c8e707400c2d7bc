"""The processors' workers, lean or on RQ's own code: what a creator hears, and when."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import fakeredis
import pytest
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from queuing import job_batch, job_events, jobs, senders, workers
from queuing.connection import rq_client
from queuing.constants import SMS_QUEUE, WORKER_LEASE_KEY

GOOD = {"phoneNumber": "4153518743", "message": "hi"}
BLACKLISTED = {"phoneNumber": "4153518780", "message": "hi"}


@pytest.mark.parametrize("worker_class", [workers.ProcessorWorker, workers.LeanProcessorWorker],
                         ids=["rq", "lean"])
@pytest.mark.parametrize("func", ["queuing.notifications.push_tracked_notification",
                                  "tests.fault_jobs.slow_notification"], ids=["fast", "slow"])
def test_a_creator_hears_a_jobs_end_only_once_rq_has_recorded_it(fake_server, monkeypatch,
                                                                  worker_class, func):
    """A creator that hears "completed" or "failed" and then asks RQ must find the job
    finished or failed, never still started, whether the job was quick or slow."""
    connection = fakeredis.FakeRedis(server=fake_server)
    statuses_when_heard: list[tuple[str, str]] = []
    write = job_events._write_through_outages

    def spy(client, events):
        for _stream, event in events:
            if event.is_final:
                job = Job.fetch(event.job_id, connection=connection,
                                serializer=JSONSerializer)
                statuses_when_heard.append((event.kind, job.get_status()))
        write(client, events)

    monkeypatch.setattr(job_events, "_write_through_outages", spy)
    queue = jobs.json_queue("q", connection)
    with job_batch.JobBatch(queue) as batch:
        batch.add(func, GOOD, job_id="good")
        batch.add(func, BLACKLISTED, job_id="bad")
        worker_class(["q"], connection=connection, serializer=JSONSerializer).work(burst=True)
        heard = {event.job_id: event.kind for event in batch.events(block_ms=100)
                 if event.is_final}
    assert heard == {"good": "completed", "bad": "failed"}
    assert all(status == kind.replace("completed", "finished")
               for kind, status in statuses_when_heard), statuses_when_heard


# -- Names -----------------------------------------------------------------------------------

def test_a_worker_is_named_after_its_dyno_or_its_queue_and_host(fake_server):
    connection = fakeredis.FakeRedis(server=fake_server)
    pid = os.getpid()
    assert workers.worker_name(connection, "sms", {"DYNO": "worker.1"}) == f"worker.1.{pid}"
    host = socket.gethostname().split(".")[0]
    assert workers.worker_name(connection, "sms", {}) == f"sms.{host}.{pid}"
    under_honcho = {"HONCHO_PROCESS_NAME": "worker.2"}  # honcho start -c worker=2
    assert workers.worker_name(connection, "sms", under_honcho) == f"worker.2.{pid}"


def test_a_name_still_held_in_redis_is_not_used_again(fake_server):
    """A worker killed without deregistering keeps its key for minutes (RQ would refuse
    the name) and its lease for seconds (recovery.py would think it alive)."""
    connection = fakeredis.FakeRedis(server=fake_server)
    name = f"worker.1.{os.getpid()}"
    connection.hset(f"rq:worker:{name}", "birth", "x")
    assert re.fullmatch(rf"{re.escape(name)}\.[0-9a-f]{{4}}",
                        workers.worker_name(connection, "sms", {"DYNO": "worker.1"}))
    connection.delete(f"rq:worker:{name}")
    connection.set(WORKER_LEASE_KEY.format(name=name), 1)
    assert workers.worker_name(connection, "sms", {"DYNO": "worker.1"}) != name
    connection.delete(WORKER_LEASE_KEY.format(name=name))
    connection.hset(f"rq:worker:{name}", mapping={"birth": "x", "death": "y"})
    assert workers.worker_name(connection, "sms", {"DYNO": "worker.1"}) == name


def test_two_workers_named_at_once_on_look_alike_hosts_get_two_names(fake_server):
    """Two containers of one image have the same hostname and the same PIDs: the second
    of two workers asking for a name before either registered must not get the first's
    (RQ would refuse its registration, and its processor would exit 1)."""
    connection = fakeredis.FakeRedis(server=fake_server)
    first = workers.worker_name(connection, "sms", {"DYNO": "worker.1"})
    second = workers.worker_name(connection, "sms", {"DYNO": "worker.1"})
    assert first != second
    assert second.startswith(f"{first}.")


# -- Retries ---------------------------------------------------------------------------------

class DownSender:
    def send(self, phone_number: str, message: str) -> None:
        raise senders.NotificationError("Twilio could not be reached to send the SMS to "
                                        f"{phone_number}: ConnectionError")


@pytest.mark.job_workers
def test_a_failed_sms_is_retried_with_backoff_then_given_up_one_line_each(
        redis_url, monkeypatch, capsys):
    """Each run in a burst worker with the scheduler: the delay RQ's Retry sets is
    checked, then skipped (the job's time in the schedule moved to now), no sleeping."""
    monkeypatch.setattr(senders, "sender_from_env", DownSender)
    connection = rq_client(redis_url)
    job = senders.enqueue_sms(connection, "+14153518780", "hi", owner="+14153518780")
    queue = jobs.json_queue(SMS_QUEUE, connection)
    scheduled = queue.scheduled_job_registry
    reason = "Twilio could not be reached to send the SMS to +14153518780: ConnectionError"
    for interval in (*senders.SMS_RETRY_INTERVALS, None):
        before = time.time()
        assert workers.work(SMS_QUEUE, redis_url, job_label="SMS job", burst=True,
                            with_scheduler=True) == 0
        job.refresh()
        if interval is None:
            break
        assert job.get_status() == "scheduled"
        [(job_id, at)] = connection.zrange(scheduled.key, 0, -1, withscores=True)
        assert before + interval - 1 <= at <= time.time() + interval + 1
        connection.zadd(scheduled.key, {job_id: 0})  # the delay is over
    assert job.get_status() == "failed"
    assert job.meta["failure"] == reason
    assert capsys.readouterr().err.splitlines() == [
        f"SMS job {job.id} failed (retry 1 of 3 in 10s): {reason}",
        f"SMS job {job.id} failed (retry 2 of 3 in 60s): {reason}",
        f"SMS job {job.id} failed (retry 3 of 3 in 300s): {reason}",
        f"SMS job {job.id} failed (gave up after 3 retries): {reason}"]
    host = socket.gethostname().split(".")[0]
    assert job.worker_name == f"sms.{host}.{os.getpid()}"
    connection.close()


@pytest.mark.job_workers
def test_a_job_without_retry_fails_with_the_plain_line(redis_url, capsys):
    connection = rq_client(redis_url)
    jobs.json_queue(SMS_QUEUE, connection).enqueue("queuing.senders.send_sms", "12", "hi",
                                                   job_id="7")
    workers.work(SMS_QUEUE, redis_url, job_label="SMS job", burst=True, with_scheduler=True)
    assert capsys.readouterr().err.startswith("SMS job 7 failed: Invalid phone number '12'")
    connection.close()


@pytest.mark.job_workers
def test_a_running_worker_schedules_in_a_thread_that_stops_with_it(redis_url):
    """A job whose delay is over is queued by the worker's scheduler thread."""
    connection = rq_client(redis_url)
    queue = jobs.json_queue(SMS_QUEUE, connection)
    job = queue.enqueue_at(datetime.now(timezone.utc) - timedelta(seconds=1),
                           "queuing.senders.send_sms", "4153518780", "hi")
    worker = workers.make_worker(SMS_QUEUE, connection, job_label="SMS job")
    worker._start_scheduler(burst=False)
    thread = worker.scheduler._process
    assert isinstance(thread, threading.Thread)
    deadline = time.monotonic() + 10
    while job.id not in queue.get_job_ids():
        assert time.monotonic() < deadline, "the scheduler never queued the job"
        time.sleep(0.02)
    worker.stop_scheduler()
    assert not thread.is_alive()
    assert not connection.exists(RQScheduler.get_locking_key(SMS_QUEUE))  # released
    connection.close()


# -- Through a Redis restart -----------------------------------------------------------------

@pytest.mark.parametrize("worker_class", [workers.ProcessorWorker, workers.LeanProcessorWorker])
def test_maintenance_that_meets_a_restart_waits_instead_of_quitting(fake_server, monkeypatch,
                                                                    worker_class):
    """RQ's work loop quits on any exception its maintenance raises: Redis stopping in the
    middle of it ("Connection closed by server") stopped a processor's worker, and the
    processor with it, while the jobs waited."""
    connection = fakeredis.FakeRedis(server=fake_server)
    worker = worker_class([SMS_QUEUE], connection=connection, serializer=JSONSerializer)
    calls = []

    def clean_registries_once_cut_off() -> None:
        calls.append("clean")
        if len(calls) == 1:
            raise workers.redis.ConnectionError("Connection closed by server.")

    monkeypatch.setattr(worker, "clean_registries", clean_registries_once_cut_off)
    worker.run_maintenance_tasks()  # does not raise: waits for Redis, then runs again
    assert calls == ["clean", "clean"]


@pytest.mark.parametrize("worker_class", [workers.ProcessorWorker, workers.LeanProcessorWorker])
def test_a_state_change_that_meets_a_restart_waits_instead_of_quitting(fake_server,
                                                                       monkeypatch,
                                                                       worker_class):
    """RQ's wait for a job starts by marking the worker idle: Redis going away at that
    moment ("Connection reset by peer") stopped the worker, and its processor."""
    connection = fakeredis.FakeRedis(server=fake_server)
    worker = worker_class([SMS_QUEUE], connection=connection, serializer=JSONSerializer)
    calls = []
    real_hset = connection.hset

    def hset_once_cut_off(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            raise workers.redis.ConnectionError("Error while reading: Connection reset by peer")
        return real_hset(*args, **kwargs)

    monkeypatch.setattr(connection, "hset", hset_once_cut_off)
    worker.set_state("idle")  # does not raise: waits for Redis, then sets it
    assert len(calls) == 2 and connection.hget(worker.key, "state") == b"idle"


def test_a_copy_of_the_stop_signal_handled_inside_the_first_is_taken_for_a_copy(fake_server,
                                                                                monkeypatch):
    """A terminal's Ctrl-C reaches a worker twice at once (from the terminal and from its
    processor): Python may run the second handler inside the first. It found the worker
    stopping but not yet knowing since when, and raised TypeError into the running job
    ("unsupported operand type(s) for -: 'datetime.datetime' and 'NoneType'"), which
    failed it."""

    class CopyInside(workers.ProcessorWorker):
        def __setattr__(self, name: str, value: object) -> None:
            super().__setattr__(name, value)
            if name == "_stopping" and value and not self.__dict__.get("copied"):
                self.__dict__["copied"] = True
                self._on_stop_signal(signal.SIGINT, False)  # the copy, inside the first

    class NoTimer:  # the stop's timer would SIGTERM this test process after the grace
        def __init__(self, *args: object) -> None:
            self.daemon = True

        def start(self) -> None:
            pass

    monkeypatch.setattr(workers.threading, "Timer", NoTimer)
    worker = CopyInside(["q"], connection=fakeredis.FakeRedis(server=fake_server),
                        name="copy-inside")
    worker._on_stop_signal(signal.SIGINT, True)
    assert worker.__dict__.get("copied") and worker._stop_requested
