"""The lean worker leaves in Redis exactly what RQ's own SimpleWorker leaves.

The same jobs (a success with progress events, a blacklisted number, bad data, a job
that returns a value, a job that raises, jobs enqueued by plain RQ with no events) run
through RQ's SimpleWorker (as recovering_worker.RecoveringWorker, the base of every worker of
ours, runs it: with a lease and the guards of untrusted_jobs.py), then, on an emptied
Redis, through lean_worker.LeanWorker.
Every key, its type, its fields and its expiry are compared once timestamps, execution
ids and durations are blanked: at the end, and from inside two running jobs (what a job
start writes, and what the previous job's end left). If an RQ upgrade changes its
bookkeeping, this fails. Further down, the same comparison for what RQ 3.0.0's own test
suite found differing: dependents and rate-limit slots before the next job, a worker that
stops, a job cancelled or deleted while it runs, log_job_description, ``rq suspend``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from typing import Any

import pytest
import redis
import rq
from redis.connection import AbstractConnection
from rq import Callback, SimpleWorker, get_current_job, suspension
from rq.exceptions import StopRequested
from rq.job import Dependency, Job, JobStatus
from rq.rate_limit import RateLimit
from rq.serializers import JSONSerializer

from queuing import job_batch, job_events, jobs, lean_scripts, notifications, settings, workers
from queuing.connection import rq_client
from queuing.lean_worker import LeanWorker
from queuing.recovering_worker import RecoveringWorker

QUEUE = "lean_compare"
STREAM = "queuing:job_events:compare"

_BLANKS = [
    (re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?"), b"<time>"),
    (re.compile(rb"\b[0-9a-f]{32}\b"), b"<id>"),
    (re.compile(rb"^\d{9,10}(\.\d+)?$"), b"<epoch>"),
    (re.compile(rb"^0\.\d+(e-\d+)?$|^\d+\.\d+e-\d+$"), b"<seconds>"),
    (re.compile(rb"^\d{10}-\d+$"), b"<stream-id>"),
]


def _blank(value: Any) -> Any:
    if isinstance(value, bytes):
        for pattern, blank in _BLANKS:
            value = pattern.sub(blank, value)
    return value


def _snapshot(connection) -> dict[bytes, Any]:
    """Every key: its type, its expiry (rounded to 10 s) and its content, blanked."""
    state = {}
    for key in sorted(connection.keys("*")):
        kind = connection.type(key)
        if kind == b"hash":
            value = {field: _blank(v) for field, v in connection.hgetall(key).items()
                     if field not in (b"pid", b"ip_address", b"data" if b"result" in key else b"")}
            value.pop(b"exc_string", None)  # compressed traceback: differs by line numbers
        elif kind == b"zset":
            value = sorted(_blank(member) for member in connection.zrange(key, 0, -1))
        elif kind == b"set":
            value = sorted(_blank(member) for member in connection.smembers(key))
        elif kind == b"list":
            value = [_blank(item) for item in connection.lrange(key, 0, -1)]
        elif kind == b"stream":
            value = [{f: _blank(v) for f, v in fields.items() if f != b"exc_string"}
                     for _id, fields in connection.xrange(key)]
        else:
            value = _blank(connection.get(key))
        ttl = connection.ttl(key)
        state[_blank(key)] = (kind, value, ttl if ttl < 0 else round(ttl, -1))
    return state


SNAPSHOTS: list[dict[bytes, Any]] = []


def snapshot_redis() -> None:
    """A job that records what Redis holds while it runs (after the previous job's end)."""
    SNAPSHOTS.append(_snapshot(get_current_job().connection))


def _run(connection, worker_class) -> dict[bytes, Any]:
    queue = jobs.json_queue(QUEUE, connection)
    with job_batch.JobBatch(queue, stream=STREAM) as batch:
        for number, phone in enumerate(["4153518743", "4153518780", 7], start=1):
            batch.add(notifications.push_tracked_notification,
                      {"phoneNumber": phone, "message": "hi"}, job_id=str(number))
        queue.enqueue("builtins.len", [1, 2, 3], job_id="4")  # a return value, no events
        queue.enqueue("builtins.int", "not a number", job_id="5")  # raises ValueError
        queue.enqueue(snapshot_redis, job_id="6")
        queue.enqueue(snapshot_redis, job_id="7")
        SNAPSHOTS.clear()
        worker = worker_class([queue], connection=connection, serializer=JSONSerializer,
                              name="compare")
        worker.work(burst=True)
        events = [event.fields() for event in batch.events(block_ms=100)]
        statuses = [Job.fetch(str(n), connection=connection, serializer=JSONSerializer)
                    .get_status() for n in range(1, 8)]
        state = _snapshot(connection)
    return {"events": events, "statuses": statuses, "state": state, "running": list(SNAPSHOTS)}


@pytest.fixture
def connection(redis_url, real_redis):
    return rq_client(redis_url)


def test_lean_worker_leaves_what_rq_simple_worker_leaves(connection):
    rq_run = _run(connection, RecoveringWorker)
    connection.flushdb()  # a throwaway server of the test's own (conftest.redis_url)
    lean_run = _run(connection, LeanWorker)

    assert rq_run["statuses"] == [JobStatus.FINISHED, JobStatus.FAILED, JobStatus.FAILED,
                                  JobStatus.FINISHED, JobStatus.FAILED, JobStatus.FINISHED,
                                  JobStatus.FINISHED]
    assert len(rq_run["running"]) == 2
    assert lean_run["events"] == rq_run["events"]
    assert lean_run["statuses"] == rq_run["statuses"]
    assert lean_run["state"].keys() == rq_run["state"].keys()
    for key, value in rq_run["state"].items():
        assert lean_run["state"][key] == value, key
    for rq_state, lean_state in zip(rq_run["running"], lean_run["running"], strict=True):
        assert lean_state.keys() == rq_state.keys()
        for key, value in rq_state.items():
            assert lean_state[key] == value, key


def test_lean_worker_takes_one_round_trip_per_job(connection):
    """While jobs wait, each end also starts the next job: one round trip per job, plus
    the first start, which first looks which job is at the head of the queue."""
    queue = jobs.json_queue(QUEUE, connection)
    with job_batch.JobBatch(queue, stream=STREAM) as batch:
        for number in range(1, 21):
            batch.add(notifications.push_tracked_notification,
                      {"phoneNumber": "4153518743", "message": "hi"}, job_id=str(number))
        worker = LeanWorker([queue], connection=connection, serializer=JSONSerializer)
        worker.work(burst=True)  # registers, maintains, runs the first 20
        calls = []
        original = AbstractConnection.send_packed_command
        for number in range(21, 41):
            batch.add(notifications.push_tracked_notification,
                      {"phoneNumber": "4153518743", "message": "hi"}, job_id=str(number))

        def counted(self, *args, **kwargs):
            calls.append(1)
            return original(self, *args, **kwargs)

        worker._last_heartbeat = float("inf")  # not due
        AbstractConnection.send_packed_command = counted
        try:
            for _ in range(20):
                job, job_queue = worker.dequeue_job_and_maintain_ttl(timeout=None)
                worker.execute_job(job, job_queue)
        finally:
            AbstractConnection.send_packed_command = original
        assert len(calls) == 2 + 20
        assert len(list(batch.events(block_ms=100))) == 40 * 3


def _start_calls(connection, count: int) -> tuple[lean_scripts.Scripts, list]:
    worker = LeanWorker([jobs.json_queue(QUEUE, connection)], connection=connection,
                        serializer=JSONSerializer)
    calls = [worker._start_call(worker.queues[0], [str(n)]).call for n in range(count)]
    return lean_scripts.Scripts(connection), calls


def test_the_scripts_are_loaded_again_when_redis_has_lost_them(connection):
    """A restarted Redis has no scripts: the round trip loads them and runs again."""
    scripts, [start] = _start_calls(connection, 1)
    connection.script_flush()
    [reply] = scripts.run([start])
    assert reply[0] == b"empty"


def test_an_error_reply_is_raised_once_every_reply_is_read(connection):
    """The replies are read off the connection even when the first is an error, so the
    next round trip on it reads its own replies, not the rest of this one's."""
    scripts, calls = _start_calls(connection, 2)
    connection.set(f"rq:queue:{QUEUE}", "not a list")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        scripts.run(calls)
    connection.delete(f"rq:queue:{QUEUE}")
    assert [reply[0] for reply in scripts.run(calls)] == [b"empty", b"empty"]



def test_the_round_trips_keep_one_connection_and_connect_it_again_after_a_loss(connection):
    """The scripts keep the pool's connection between round trips; one that Redis closed
    fails that round trip (the worker waits for Redis and runs it again) and is connected
    again for the next. Released, the connection goes back to the pool."""
    scripts, [start] = _start_calls(connection, 1)
    pool = connection.connection_pool
    scripts.run([start])
    held = scripts._connection()
    scripts.run([start])
    assert scripts._connection() is held and held in pool._in_use_connections
    host, port = held._sock.getsockname()[:2]
    connection.client_kill(f"{host}:{port}")
    with pytest.raises(redis.ConnectionError):
        scripts.run([start])
    assert scripts.run([start])[0][0] == b"empty"
    assert scripts._connection() is held
    scripts.release()
    assert held in pool._available_connections


def test_the_round_trips_take_a_connection_from_the_pool_again_after_a_while(connection,
                                                                            monkeypatch):
    """The pool's checks on the connections it hands out (behind a Sentinel URL: which
    server is the master now) apply to the scripts' round trips at least every
    HOLD_SECONDS."""
    monkeypatch.setattr(lean_scripts, "HOLD_SECONDS", 0)
    scripts, [start] = _start_calls(connection, 1)
    scripts.run([start])  # loads the scripts (through the pool)
    pool = connection.connection_pool
    taken = []
    monkeypatch.setattr(pool, "get_connection",
                        lambda *args: taken.append(1) or type(pool).get_connection(pool))
    scripts.run([start])
    scripts.run([start])
    assert len(taken) == 2
    scripts.release()

def test_a_started_job_reads_as_rq_reads_its_hash(connection):
    """The job the start script returns is the job RQ's Job.fetch reads (its serializer
    and dates are set apart from RQ's restore, to save time)."""
    queue = jobs.json_queue(QUEUE, connection)
    with job_batch.JobBatch(queue, stream=STREAM) as batch:
        job_ids = batch.add_many(notifications.push_tracked_notification,
                                 [({"phoneNumber": "4153518743", "message": n},) for n in "ab"])
    connection.hset(f"rq:job:{job_ids[1]}", "created_at", "")  # RQ reads it as now
    worker = LeanWorker([queue], connection=connection, serializer=JSONSerializer)
    for job_id in job_ids:
        started = worker._start_waiting_job(queue, burst=True)
        fetched = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
        assert started.id == job_id
        for name in ("serializer", "enqueued_at", "description", "origin", "timeout", "meta",
                     "func_name", "args", "kwargs", "_success_callback_name"):
            assert getattr(started, name) == getattr(fetched, name), name
        if job_id == job_ids[0]:
            assert started.created_at == fetched.created_at
        else:
            assert abs(started.created_at - fetched.created_at).total_seconds() < 5


def test_a_job_started_ahead_goes_back_when_the_worker_stops(connection):
    """max_jobs=1 stops the worker after job 1, whose end script already started job 2:
    job 2 goes back to the front of the queue, as if never taken, and runs later."""
    queue = jobs.json_queue(QUEUE, connection)
    for number in (1, 2):
        queue.enqueue(notifications.push_notification,
                      {"phoneNumber": "4153518743", "message": "hi"}, job_id=str(number))
    worker = LeanWorker([queue], connection=connection, serializer=JSONSerializer)
    worker.work(burst=True, max_jobs=1)

    second = Job.fetch("2", connection=connection, serializer=JSONSerializer)
    assert second.get_status() == JobStatus.QUEUED
    assert queue.get_job_ids() == ["2"]
    assert queue.started_job_registry.get_job_ids() == []
    assert connection.keys("rq:execution:*") == []
    SimpleWorker([queue], connection=connection, serializer=JSONSerializer).work(burst=True)
    assert second.get_status(refresh=True) == JobStatus.FINISHED


def test_a_stop_signal_during_the_start_script_lets_the_started_job_run(connection):
    """A stop signal that comes while the start script runs only asks the worker to stop
    (RQ's warm shutdown): the job the script started is returned to run, not left
    "started" by a worker that is gone; with no job to start, the worker stops."""
    queue = jobs.json_queue(QUEUE, connection)
    queue.enqueue(notifications.push_notification,
                  {"phoneNumber": "4153518743", "message": "hi"}, job_id="1")
    worker = LeanWorker([queue], connection=connection, serializer=JSONSerializer)
    worker.register_birth()
    run_scripts = worker._scripts.run

    def signalled_start(calls):
        worker.request_stop(signal.SIGTERM, None)  # as RQ's handler would
        return run_scripts(calls)

    worker._scripts.run = signalled_start
    job, _queue = worker.dequeue_job_and_maintain_ttl(timeout=None)
    assert job.id == "1" and worker._stop_requested
    worker.execute_job(job, queue)
    assert job.get_status(refresh=True) == JobStatus.FINISHED

    worker._stop_requested = False
    worker._heads = ["1"]  # a stale look at the queue: the start script finds it empty
    with pytest.raises(StopRequested):
        worker.dequeue_job_and_maintain_ttl(timeout=None)  # nothing to start: it stops
    worker.register_death()


class AfterAnIdleWait(LeanWorker):
    """Every job taken by RQ's own blocking dequeue, as after an idle wait: RQ's start,
    then the end script (with no start of a next job: no head of the queue is known)."""

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        return SimpleWorker.dequeue_job_and_maintain_ttl(self, timeout, max_idle_time)


def test_a_job_rq_dequeued_after_an_idle_wait_ends_as_rq_ends_it(connection):
    rq_run = _run(connection, RecoveringWorker)
    connection.flushdb()  # a throwaway server of the test's own (conftest.redis_url)
    lean_run = _run(connection, AfterAnIdleWait)
    assert lean_run["events"] == rq_run["events"]
    assert lean_run["statuses"] == rq_run["statuses"]
    assert lean_run["state"] == rq_run["state"]
    assert lean_run["running"] == rq_run["running"]


# --- where RQ 3.0.0's own test suite found the lean worker differing from SimpleWorker ---

RUNS = "lean_compare:runs"
PARITY_JOBS = ",".join(f"tests.test_lean_worker.{name}" for name in
                       ("record_run", "cancel_itself", "delete_itself", "suspend_workers"))


def record_run() -> None:
    """A job that notes that it ran, in order."""
    job = get_current_job()
    job.connection.rpush(RUNS, job.id)


def cancel_itself() -> None:
    get_current_job().cancel()


def delete_itself() -> None:
    get_current_job().delete()


def suspend_workers() -> None:
    """``rq suspend``, from inside a running job."""
    suspension.suspend(get_current_job().connection)


@pytest.fixture
def parity_jobs(monkeypatch):
    extra = os.environ.get(settings.EXTRA_JOB_FUNCTIONS_ENV, "")
    monkeypatch.setenv(settings.EXTRA_JOB_FUNCTIONS_ENV, f"{extra},{PARITY_JOBS}")


def _both_ways(connection, enqueue, **work) -> tuple[dict, dict]:
    """What RQ's SimpleWorker and the lean worker leave (and the order they ran the jobs
    in, under ``runs``) after ``enqueue(queue)`` and ``work(burst=True, **work)``."""
    outcomes = []
    for worker_class in (RecoveringWorker, LeanWorker):
        connection.flushdb()  # a throwaway server of the test's own (conftest.redis_url)
        queue = jobs.json_queue(QUEUE, connection)
        enqueue(queue)
        worker = worker_class([queue], connection=connection, serializer=JSONSerializer,
                              name="compare")
        worker.work(burst=True, **work)
        state = _snapshot(connection)
        state.pop(b"rq:worker:compare", None)  # one key less: compared below
        outcomes.append({"runs": connection.lrange(RUNS, 0, -1), "state": state})
    return outcomes[0], outcomes[1]


def _assert_same(rq_run: dict, lean_run: dict) -> None:
    assert lean_run["runs"] == rq_run["runs"]
    assert lean_run["state"].keys() == rq_run["state"].keys()
    for key, value in rq_run["state"].items():
        assert lean_run["state"][key] == value, key


def test_dependents_are_queued_before_the_next_job_starts(connection, parity_jobs):
    """RQ queues a job's dependents before it takes the next job: one enqueued at the
    front runs next."""
    def enqueue(queue):
        first = queue.enqueue(record_run, job_id="1")
        queue.enqueue(record_run, job_id="2")
        queue.enqueue(record_run, job_id="3",
                      depends_on=Dependency(jobs=[first], enqueue_at_front=True))

    rq_run, lean_run = _both_ways(connection, enqueue)
    assert rq_run["runs"] == [b"1", b"3", b"2"]
    _assert_same(rq_run, lean_run)


def _rate_limited(queue) -> None:
    limit = RateLimit(key="lean_compare", concurrency=1)
    queue.enqueue(record_run, job_id="1", rate_limit=limit)
    queue.enqueue(record_run, job_id="2", rate_limit=limit,  # held until 1 frees its slot
                  at_front=True)
    queue.enqueue(record_run, job_id="3")


def test_a_rate_limit_slot_is_freed_before_the_next_job_starts(connection, parity_jobs):
    rq_run, lean_run = _both_ways(connection, _rate_limited)
    assert rq_run["runs"] == [b"1", b"2", b"3"]
    _assert_same(rq_run, lean_run)


def test_a_worker_that_stops_leaves_the_queue_as_rq_leaves_it(connection, parity_jobs):
    """max_jobs=1: the jobs left queued (a promoted one first) are as RQ leaves them, with
    no trace of a start."""
    rq_run, lean_run = _both_ways(connection, _rate_limited, max_jobs=1)
    assert rq_run["state"][b"rq:queue:lean_compare"][1] == [b"2", b"3"]
    _assert_same(rq_run, lean_run)
    rq_run, lean_run = _both_ways(connection, lambda queue: [
        queue.enqueue(record_run, job_id=str(number)) for number in (1, 2)], max_jobs=1)
    _assert_same(rq_run, lean_run)
    rq_run, lean_run = _both_ways(connection, lambda queue: [  # the next one rate-limited
        queue.enqueue(record_run, job_id="1"),
        queue.enqueue(record_run, job_id="2", rate_limit=RateLimit(key="lean", concurrency=1))],
        max_jobs=1)
    _assert_same(rq_run, lean_run)


@pytest.mark.parametrize("job", [cancel_itself, delete_itself])
def test_a_job_cancelled_or_deleted_while_it_runs_ends_as_rq_ends_it(connection, parity_jobs,
                                                                     job):
    def enqueue(queue):  # its creator hears it completed, as from RQ's worker
        queue.enqueue(job, job_id="1", meta={job_events.REPLY_TO: STREAM},
                      on_success=Callback(job_events.job_completed))
        queue.enqueue(record_run, job_id="2")

    rq_run, lean_run = _both_ways(connection, enqueue)
    assert len(rq_run["state"][STREAM.encode()][1]) == 1
    _assert_same(rq_run, lean_run)


def test_a_worker_counts_a_job_cancelled_while_it_ran(connection, parity_jobs):
    """The worker's counters and its index of executions, as RQ keeps them."""
    counts = []
    for worker_class in (RecoveringWorker, LeanWorker):
        connection.flushdb()
        queue = jobs.json_queue(QUEUE, connection)
        queue.enqueue(cancel_itself, job_id="1")
        worker = worker_class([queue], connection=connection, serializer=JSONSerializer)
        worker.register_birth()
        job, job_queue = worker.dequeue_job_and_maintain_ttl(timeout=None)
        worker.execute_job(job, job_queue)
        counts.append((connection.hget(worker.key, "successful_job_count"),
                       connection.smembers(worker.executions_key)))
        worker.register_death()
    assert counts[1] == counts[0] == (b"1", set())


@pytest.mark.parametrize("log_job_description", [True, False])
def test_the_log_names_jobs_as_log_job_description_asks(connection, caplog,
                                                        log_job_description):
    lines = []
    for worker_class in (RecoveringWorker, LeanWorker):
        connection.flushdb()
        queue = jobs.json_queue(QUEUE, connection)
        queue.enqueue("builtins.len", [1, 2], job_id="1")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="rq.worker"):
            worker_class([queue], connection=connection, serializer=JSONSerializer,
                         name="compare", log_job_description=log_job_description
                         ).work(burst=True)
        lines.append([re.sub(r"in [\d:.]+s", "in <time>", record.getMessage())
                      for record in caplog.records if "1" in record.getMessage()
                      and "Job OK" not in record.getMessage()])
    assert ("builtins.len([1, 2])" in " ".join(lines[0])) is log_job_description
    assert lines[1] == lines[0]


def test_a_job_queued_when_workers_are_suspended_waits_for_rq_resume(connection, parity_jobs):
    """``rq suspend`` while a job runs: the next job is not started, as with RQ."""
    def enqueue(queue):
        queue.enqueue(suspend_workers, job_id="1")
        queue.enqueue(record_run, job_id="2")

    rq_run, lean_run = _both_ways(connection, enqueue)
    assert rq_run["runs"] == []
    _assert_same(rq_run, lean_run)


@pytest.mark.parametrize(("rq_version", "setting", "lean"), [
    ("3.0.0", "", True), ("3.0.7", "on", True), ("3.0.0", "off", False),
    ("3.1.0", "", False), ("4.0.0", "on", False)])
def test_the_processors_use_the_lean_worker_only_where_it_is_proven(monkeypatch, rq_version,
                                                                    setting, lean):
    """With the RQ release its scripts restate and LEAN_WORKER on; else RQ's own code."""
    monkeypatch.setattr(rq, "__version__", rq_version)
    monkeypatch.setenv(settings.LEAN_WORKER_ENV, setting)
    worker_class = workers.processor_worker_class()
    assert issubclass(worker_class, LeanWorker) is lean
    assert issubclass(worker_class, RecoveringWorker)
