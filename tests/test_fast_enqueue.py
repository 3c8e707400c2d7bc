"""The creators' batched enqueue (fast_enqueue.enqueue_jobs): its jobs are RQ's own jobs.

RQ reads them back as it reads jobs of its own ``Queue.enqueue``, plain ``rq worker``
and our processors run them with the callbacks firing, ids stay consecutive and unique
under concurrent creators, and a creator stopped mid-enqueue leaves no half-written job.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import threading
import zlib

import fakeredis
import pytest
import redis
from rq import Queue
from rq.defaults import CALLBACK_TIMEOUT
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.serializers import DefaultSerializer

from queuing import fast_enqueue, job_batch, job_events, jobs, notifications, workers
from queuing.connection import rq_client
from queuing.constants import JOB_EVENTS_PREFIX, JOB_ID_KEY, PUSH_NOTIFICATION_QUEUE_2
from queuing.job_batch import JobBatch
from queuing.job_events import COMPLETED, FAILED, PROGRESS, JobEvent
from queuing.local_redis import SERVER_SETTINGS
from queuing.untrusted_jobs import AllowedJob
from tests.processes import ROOT, Script, load_script, script_env

creator_7 = load_script("7_job_creator")

SENT = creator_7.JOBS[2]  # 4153518743: progress 0, 50, completed
BLACKLISTED = creator_7.JOBS[0]  # 4153518780: progress 0, failed
# Fields RQ writes that a batched job leaves out (fast_enqueue.job_template says why): the
# empty ones, and these at RQ's default value. Every other field of RQ's must be there.
LEFT_OUT = {"success_callback_timeout", "failure_callback_timeout"}
# Fields that differ between any two jobs made at different times, and JSON the batched
# job writes without spaces (and ``data`` without zlib), which RQ reads the same.
PER_JOB = {b"created_at", b"enqueued_at"}
SAME_JSON = {b"data", b"meta"}
# The values that deliberately differ from Queue.enqueue's, to keep each pending job's
# hash small (bench/README.md, "Memory per pending job"):
# - the description: RQ's form of the call with the function's own name and each
#   argument cut at 30 characters, instead of the dotted path and 75
#   (fast_enqueue.job_description): one 64-byte allocation instead of 160;
# - the names of the function (in ``data``) and of the callbacks: their short names
#   (jobs.SHORT_NAMES), which RQ imports as the very same functions.
SHORTER = {b"description", b"success_callback_name", b"failure_callback_name"}
COURSE_DESCRIPTION = "push_tracked_notification({'phoneNumber': '4153518743', ...)"
SHORT_FUNC_NAME = "queuing.jobs.tracked"


@pytest.fixture
def connection(redis_url):
    client = rq_client(redis_url, socket_timeout=job_batch.LISTEN_SOCKET_TIMEOUT)
    yield client
    client.close()


def quietly_create(batch: JobBatch, items: list) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        notifications.create_notification_jobs(
            batch, items, notifications.push_tracked_notification)


def read_back(job: Job) -> dict:
    """What RQ makes of a job hash: every attribute a worker or `rq info` relies on."""
    return {
        "func": job.func, "func_name": job.func_name, "args": job.args, "kwargs": job.kwargs,
        "meta": job.meta, "origin": job.origin, "status": job.get_status(refresh=False),
        "success_callback": job.success_callback, "failure_callback": job.failure_callback,
        "stopped_callback": job.stopped_callback,
        "success_callback_timeout": job.success_callback_timeout,
        "failure_callback_timeout": job.failure_callback_timeout,
        "timeout": job.timeout, "result_ttl": job.result_ttl, "failure_ttl": job.failure_ttl,
        "ttl": job.ttl, "retries_left": job.retries_left, "dependency_ids": job.dependency_ids,
        "group_id": job.group_id, "worker_name": job.worker_name,
        "started_at": job.started_at, "ended_at": job.ended_at,
        "call_string": job.get_call_string(), "description": job.description,
        "str": str(job).replace(f" {job.id}:", " ID:"),  # RQ's <Job id: description>
    }


# --- RQ reads a batched job as its own ---------------------------------------------------

def test_rq_reads_a_batched_job_as_one_of_its_own_queue_enqueue(connection):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        [fast_id] = batch.add_many(notifications.push_tracked_notification, [(SENT,)])
        rqs = batch.add(notifications.push_tracked_notification, SENT, job_id="rqs-own")
    fast = Job.fetch(fast_id, connection=connection, serializer=queue.serializer)
    own = Job.fetch(rqs.id, connection=connection, serializer=queue.serializer)

    shorter = {"description": COURSE_DESCRIPTION, "str": f"<Job ID: {COURSE_DESCRIPTION}>",
               "func_name": SHORT_FUNC_NAME,
               "call_string": own.get_call_string().replace(own.func_name, SHORT_FUNC_NAME)}
    assert read_back(fast) == read_back(own) | shorter
    assert read_back(fast)["meta"] == {job_events.REPLY_TO: batch.stream}
    # The same functions, by their short names, for RQ's own Job and for AllowedJob.
    for job in (fast, AllowedJob.fetch(fast_id, connection=connection,
                                       serializer=queue.serializer)):
        assert job.func is notifications.push_tracked_notification
        assert job.success_callback is job_events.job_completed
        assert job.failure_callback is job_events.job_failed
    assert (fast.timeout, fast.success_callback_timeout) == (180, 60)
    assert fast.get_status() == JobStatus.QUEUED
    for stamp in (fast.created_at, fast.enqueued_at):
        assert stamp is not None and abs((stamp - own.created_at).total_seconds()) < 5
    # RQ's worker logs (coloured in a terminal) and rq-dashboard show the description:
    # the function and the recipient, in at most 60 characters (one 64-byte allocation).
    assert own.description == (
        "queuing.notifications.push_tracked_notification({'phoneNumber': '4153518743', "
        "'message': 'This is the code 4321 to verify y...)")
    assert fast.description == COURSE_DESCRIPTION
    assert len(fast.description) <= 60
    assert queue.job_ids == [fast_id, "rqs-own"]

    # Field by field: RQ's own hash, without the empty fields and the defaulted timeouts;
    # a field RQ writes with a value that the batched job lacks fails here.
    fast_hash = connection.hgetall(fast.key)
    own_hash = connection.hgetall(own.key)
    empty = {field for field, value in own_hash.items() if value == b""}
    left_out = {field.encode() for field in LEFT_OUT}
    assert set(fast_hash) == set(own_hash) - empty - left_out
    for field in set(fast_hash) - PER_JOB - SAME_JSON - SHORTER:
        assert fast_hash[field] == own_hash[field], field
    assert fast_hash[b"description"] == COURSE_DESCRIPTION.encode()
    for field, name in ((b"success_callback_name", "queuing.jobs.completed"),
                        (b"failure_callback_name", "queuing.jobs.failed")):
        assert jobs.full_name(fast_hash[field].decode()) == own_hash[field].decode()
        assert fast_hash[field] == name.encode()
    own_data = json.loads(zlib.decompress(own_hash[b"data"]))
    assert json.loads(fast_hash[b"data"]) == [SHORT_FUNC_NAME, *own_data[1:]]
    assert jobs.full_name(SHORT_FUNC_NAME) == own_data[0]
    assert json.loads(fast_hash[b"meta"]) == json.loads(own_hash[b"meta"])
    for field in LEFT_OUT:
        assert int(own_hash[field.encode()]) == CALLBACK_TIMEOUT


@pytest.mark.parametrize(("data", "description"), [
    (SENT, COURSE_DESCRIPTION),
    ({"phoneNumber": "+14153518743", "message": "hi"},
     "push_tracked_notification({'phoneNumber': '+14153518743'...)"),
    ({"phoneNumber": "1", "message": "hi"},
     "push_tracked_notification({'phoneNumber': '1', 'message'...)"),
    ({"message": "l'été \"quoted\" \u2603 " + "x" * 80},
     "push_tracked_notification({'message': 'l\\'été \"quoted\" ☃...)"),
    ("not an object", "push_tracked_notification('not an object')"),
    (None, "push_tracked_notification(None)"),
], ids=["course", "e164", "short", "quotes-unicode-long", "str", "None"])
def test_each_batched_job_is_described_by_its_function_and_the_start_of_its_data(
        fake_server, data, description):
    connection = fakeredis.FakeRedis(server=fake_server)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    other = {"phoneNumber": "2", "message": "another job, another description"}
    with JobBatch(queue) as batch:
        fast_ids = batch.add_many(notifications.push_tracked_notification, [(data,), (other,)])
    fetched = [Job.fetch(job_id, connection=connection, serializer=queue.serializer)
               for job_id in fast_ids]
    assert [job.description for job in fetched] == [
        description, "push_tracked_notification({'phoneNumber': '2', 'message'...)"]
    for job, args in zip(fetched, [data, other], strict=True):
        assert (job.args, job.kwargs) == ([args], {})  # the whole call is still there


def test_a_batched_job_hash_stays_in_the_compact_encoding(connection, real_redis):
    # The project's servers run with SERVER_SETTINGS; README, "Redis settings".
    setting = real_redis.config_get("hash-max-*-value")
    assert {int(value) for value in setting.values()} == {int(SERVER_SETTINGS[1])}, (
        "the test Redis lacks the project's settings (local_redis.SERVER_SETTINGS)")
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        quietly_create(batch, creator_7.JOBS)
        for job_id in batch.job_ids:
            assert real_redis.object("encoding", f"rq:job:{job_id}") in ("listpack", "ziplist")


def test_batched_jobs_need_a_json_queue(fake_server):
    connection = fakeredis.FakeRedis(server=fake_server)
    pickled = Queue("pickled", connection=connection, serializer=DefaultSerializer)
    with pytest.raises(ValueError, match="not a JSON queue"):
        JobBatch(pickled).add_many(notifications.push_tracked_notification, [(SENT,)])
    assert connection.keys("rq:job:*") == []


# --- Workers run them, and the callbacks fire ----------------------------------------------

def run_with_plain_rq_worker(redis_url: str) -> None:
    """`rq worker --burst -w rq.worker.SimpleWorker -S json`, as the README says."""
    result = subprocess.run(
        [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", redis_url,
         "--worker-class", "rq.worker.SimpleWorker", "--serializer", "json",
         PUSH_NOTIFICATION_QUEUE_2],
        cwd=ROOT, env=script_env(redis_url), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


def run_with_our_processor(redis_url: str) -> None:
    connection = rq_client(redis_url)
    workers.make_worker(PUSH_NOTIFICATION_QUEUE_2, connection).work(
        burst=True, logging_level="ERROR")


@pytest.mark.parametrize("run", [run_with_plain_rq_worker, run_with_our_processor],
                         ids=["rq-simple-worker", "processor-worker"])
@pytest.mark.job_workers
def test_workers_run_batched_jobs_and_the_callbacks_report(redis_url, connection, run,
                                                           capsys):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        quietly_create(batch, [SENT, BLACKLISTED])
        sent, blacklisted = batch.job_ids
        info = subprocess.run([sys.executable, "-m", "rq.cli", "info", "--url", redis_url,
                               "--only-queues"], capture_output=True, text=True, timeout=30)
        assert f"{PUSH_NOTIFICATION_QUEUE_2} |" in info.stdout
        assert "2 jobs total" in info.stdout  # `rq info` counts them

        run(redis_url)
        events = list(batch.events(block_ms=1000))
    assert events == [
        JobEvent(sent, PROGRESS, progress=0), JobEvent(sent, PROGRESS, progress=50),
        JobEvent(sent, COMPLETED),
        JobEvent(blacklisted, PROGRESS, progress=0),
        JobEvent(blacklisted, FAILED, error="Phone number 4153518780 is blacklisted"),
    ]
    fetch = lambda job_id: Job.fetch(job_id, connection=connection)  # noqa: E731
    assert fetch(sent).get_status() == JobStatus.FINISHED
    assert fetch(blacklisted).get_status() == JobStatus.FAILED
    assert FinishedJobRegistry(queue=queue).get_job_ids() == [sent]
    assert FailedJobRegistry(queue=queue).get_job_ids() == [blacklisted]
    assert queue.count == 0


# --- Ids ----------------------------------------------------------------------------------

def test_ids_are_consecutive_and_never_reused_by_two_concurrent_creators(redis_url):
    per_creator, batch_size = 2_000, 50
    start = threading.Barrier(2)
    taken: dict[str, list[list[str]]] = {}

    def creator(name: str) -> None:
        client = rq_client(redis_url)
        queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, client)
        batch = JobBatch(queue)
        taken[name] = []
        start.wait()
        for items in job_batch.in_batches([SENT] * per_creator, batch_size):
            taken[name].append(batch.add_many(notifications.push_tracked_notification,
                                              [(item,) for item in items]))
        client.close()

    threads = [threading.Thread(target=creator, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    connection = redis.Redis.from_url(redis_url)
    everyone = [int(job_id) for batches in taken.values() for ids in batches for job_id in ids]
    assert sorted(everyone) == list(range(1, 2 * per_creator + 1))  # none reused, none lost
    for batches in taken.values():
        for ids in batches:  # each batch: consecutive ids
            numbers = [int(job_id) for job_id in ids]
            assert numbers == list(range(numbers[0], numbers[0] + batch_size))
        mine = [int(job_id) for ids in batches for job_id in ids]
        assert mine == sorted(mine)  # each creator's ids grow
    first_a, last_a = int(taken["a"][0][0]), int(taken["a"][-1][-1])
    assert any(first_a < int(ids[0]) < last_a for ids in taken["b"])  # they did interleave
    assert int(connection.get(JOB_ID_KEY)) == 2 * per_creator
    assert connection.llen(f"rq:queue:{PUSH_NOTIFICATION_QUEUE_2}") == 2 * per_creator
    connection.close()


def test_reserve_job_ids_continues_the_shared_counter(fake_server):
    connection = fakeredis.FakeRedis(server=fake_server)
    assert jobs.next_job_id(connection) == "1"
    assert jobs.reserve_job_ids(connection, 3) == ["2", "3", "4"]
    assert jobs.next_job_id(connection) == "5"


def test_in_batches_reads_lazily_and_keeps_the_order():
    assert list(job_batch.in_batches(iter(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(job_batch.in_batches([], 3)) == []


def test_created_lines_come_in_id_order_one_write_per_batch(fake_server, monkeypatch):
    connection = fakeredis.FakeRedis(server=fake_server)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    size = fast_enqueue.ENQUEUE_BATCH
    writes: list[str] = []
    monkeypatch.setattr(notifications.console, "log", writes.append)
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(
            batch, [SENT] * (2 * size + 1), notifications.push_tracked_notification)
    lines = [f"Notification job created: {number}" for number in range(1, 2 * size + 2)]
    assert writes == ["\n".join(lines[:size]), "\n".join(lines[size:2 * size]), lines[-1]]


def test_a_reply_stream_key_is_short_and_random():
    streams = {job_batch.new_reply_stream() for _ in range(100)}
    assert len(streams) == 100
    assert {len(stream) for stream in streams} == {len(JOB_EVENTS_PREFIX) + 8}


# --- Ctrl-C -------------------------------------------------------------------------------

ENDLESS_CREATOR = f"""
import itertools, common
from queuing import jobs, notifications
from queuing.job_batch import JobBatch
from queuing.connection import rq_client
def main():
    queue = jobs.json_queue({PUSH_NOTIFICATION_QUEUE_2!r}, rq_client())
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(
            batch, itertools.repeat({SENT!r}), notifications.push_tracked_notification)
common.run(main)
"""


def test_ctrl_c_mid_enqueue_leaves_no_half_written_job(redis_url, connection):
    creator = Script("endless creator", redis_url, argv=[sys.executable, "-c", ENDLESS_CREATOR])
    try:
        creator.wait_for(f"Notification job created: {fast_enqueue.ENQUEUE_BATCH * 3}")
        assert creator.interrupt() == 130
        assert "Traceback" not in creator.stderr
    finally:
        creator.kill()
    queued = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection).job_ids
    hashes = sorted(key.decode().removeprefix("rq:job:") for key in connection.keys("rq:job:*"))
    assert sorted(queued) == hashes  # no hash without its queue entry, nor the reverse
    assert len(queued) % fast_enqueue.ENQUEUE_BATCH == 0  # whole batches only
    assert [int(job_id) for job_id in queued] == list(range(1, len(queued) + 1))
    printed = [line for line in creator.lines if line.startswith("Notification job created")]
    assert len(printed) <= len(queued)
    with connection.pipeline(transaction=False) as pipe:
        for job_id in queued:
            pipe.hlen(f"rq:job:{job_id}")
        # Every job whole: the template's 6 fields, then created_at, enqueued_at, data,
        # description.
        assert set(pipe.execute()) == {10}
