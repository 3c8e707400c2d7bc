"""Tasks 6-9 as a learner runs them: creator and processor in two processes, against a
real throwaway redis-server, in both start orders, interrupted or not."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest
import redis
from rq import Worker
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from queuing import jobs, notifications
from queuing.connection import rq_client
from queuing.constants import JOB_EVENTS_PREFIX, PUSH_NOTIFICATION_QUEUE, PUSH_NOTIFICATION_QUEUE_2
from queuing.job_batch import LISTEN_SOCKET_TIMEOUT, JobBatch
from tests.processes import Script, load_script, run_script, wait_until

creator_7 = load_script("7_job_creator")

SEND_6 = ("Sending notification to 4153518780, "
          "with message: This is the code to verify your account")
BLACKLISTED = ("4153518780", "4153518781")
SENT_7 = [f"Sending notification to {data['phoneNumber']}, with message: {data['message']}"
          for data in creator_7.JOBS if data["phoneNumber"] not in BLACKLISTED]


@pytest.fixture
def connection(redis_url):
    client = rq_client(redis_url, socket_timeout=LISTEN_SOCKET_TIMEOUT)
    yield client
    client.close()


def start_processor(name: str, redis_url: str, connection, workers: int, **env) -> Script:
    processor = Script(name, redis_url, **env)
    wait_until(lambda: Worker.count(connection=connection) == workers, f"{workers} workers")
    return processor


def stop_processor(processor: Script, connection) -> None:
    """Ctrl-C: it ends at once and cleanly, and its workers leave `rq info`."""
    assert processor.interrupt() == 0
    assert processor.stderr == ""
    assert Worker.count(connection=connection) == 0


def jobs_ended(connection, queue_name: str, count: int) -> Callable[[], bool]:
    queue = jobs.json_queue(queue_name, connection)
    return lambda: (FinishedJobRegistry(queue=queue).count
                    + FailedJobRegistry(queue=queue).count) == count


def expected_7_events(first_id: int) -> dict[str, list[str]]:
    """Each job's lines, in the order of the course's sample output."""
    lines = {}
    for number, data in enumerate(creator_7.JOBS, start=first_id):
        job = f"Notification job #{number}"
        if data["phoneNumber"] in BLACKLISTED:
            ending = [f"{job} failed: Phone number {data['phoneNumber']} is blacklisted"]
        else:
            ending = [f"{job} 50% complete", f"{job} completed"]
        lines[str(number)] = [f"{job} 0% complete", *ending]
    return lines


def assert_course_7_output(lines: list[str], first_id: int = 1) -> None:
    """The created lines first, in order; then every job's lines, each job's in order.

    How two jobs running at once interleave their lines varies from run to run (two
    workers), as it does in Kue: that order is the only thing not compared.
    """
    ids = [str(number) for number in range(first_id, first_id + len(creator_7.JOBS))]
    assert lines[:len(ids)] == [f"Notification job created: {job_id}" for job_id in ids]
    events = lines[len(ids):]
    expected = expected_7_events(first_id)
    for job_id in ids:
        assert [line for line in events
                if line.startswith(f"Notification job #{job_id} ")] == expected[job_id]
    assert len(events) == sum(len(job_lines) for job_lines in expected.values())


def nothing_left(connection, queue_name: str) -> None:
    queue = jobs.json_queue(queue_name, connection)
    assert StartedJobRegistry(queue=queue).count == 0
    assert connection.keys(f"{JOB_EVENTS_PREFIX}*") == []


# --- Tasks 6 and 7 ----------------------------------------------------------------------

@pytest.mark.job_workers
def test_6_processor_first_then_creator(redis_url, connection):
    processor = start_processor("6_job_processor", redis_url, connection, workers=1)
    try:
        result = run_script("6_job_creator", redis_url)
        assert (result.returncode, result.stderr) == (0, "")
        assert result.stdout.splitlines() == ["Notification job created: 1",
                                              "Notification job completed"]
        processor.wait_for(SEND_6)
        stop_processor(processor, connection)
        assert processor.lines == [SEND_6]
        nothing_left(connection, PUSH_NOTIFICATION_QUEUE)
    finally:
        processor.kill()


@pytest.mark.job_workers
def test_6_creator_first_waits_for_a_processor(redis_url, connection):
    creator = Script("6_job_creator", redis_url)
    processor = None
    try:
        creator.wait_for("Notification job created: 1")
        processor = start_processor("6_job_processor", redis_url, connection, workers=1)
        assert creator.finish() == 0
        assert creator.lines == ["Notification job created: 1", "Notification job completed"]
        assert creator.stderr == ""
        processor.wait_for(SEND_6)
        stop_processor(processor, connection)
        nothing_left(connection, PUSH_NOTIFICATION_QUEUE)
    finally:
        creator.kill()
        if processor:
            processor.kill()


def test_6_job_ids_grow_across_runs(redis_url):
    creators = [Script("6_job_creator", redis_url) for _ in range(2)]
    try:
        first_lines = {creator.read_line() for creator in creators}
        assert first_lines == {"Notification job created: 1", "Notification job created: 2"}
    finally:
        for creator in creators:
            creator.kill()


@pytest.mark.parametrize("processor_first", [True, False], ids=["processor-first",
                                                                 "creator-first"])
@pytest.mark.job_workers
def test_7_pair_prints_the_course_output(redis_url, connection, processor_first):
    processor = creator = None
    try:
        if processor_first:
            processor = start_processor("7_job_processor", redis_url, connection, workers=2)
        creator = Script("7_job_creator", redis_url)
        if not processor_first:
            creator.wait_for("Notification job created: 11")
            processor = start_processor("7_job_processor", redis_url, connection, workers=2)
        assert creator.finish() == 0
        assert creator.stderr == ""
        assert_course_7_output(creator.lines)
        wait_until(jobs_ended(connection, PUSH_NOTIFICATION_QUEUE_2, 11), "11 ended jobs")
        stop_processor(processor, connection)
        assert sorted(processor.lines) == sorted(SENT_7)  # two at a time: any order
        nothing_left(connection, PUSH_NOTIFICATION_QUEUE_2)
    finally:
        for script in (creator, processor):
            if script:
                script.kill()


@pytest.mark.job_workers
def test_7_events_written_before_the_creator_listens_are_all_heard(redis_url, connection,
                                                                      capsys):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(
            batch, creator_7.JOBS, notifications.push_tracked_notification)
        processor = start_processor("7_job_processor", redis_url, connection, workers=2)
        try:
            wait_until(jobs_ended(connection, PUSH_NOTIFICATION_QUEUE_2, 11), "11 ended jobs")
            stop_processor(processor, connection)
        finally:
            processor.kill()
        assert connection.xlen(batch.stream) == 2 * 2 + 9 * 3  # every event, none read yet
        notifications.print_events(batch, creator_7.event_line)
    assert_course_7_output(capsys.readouterr().out.splitlines())


@pytest.mark.job_workers
def test_7_a_creator_stopped_while_the_jobs_run_misses_nothing(redis_url, connection):
    creator = Script("7_job_creator", redis_url)
    processor = None
    try:
        creator.wait_for("Notification job created: 11")
        creator.process.send_signal(signal.SIGSTOP)  # as slow as can be
        processor = start_processor("7_job_processor", redis_url, connection, workers=2)
        wait_until(jobs_ended(connection, PUSH_NOTIFICATION_QUEUE_2, 11), "11 ended jobs")
        creator.process.send_signal(signal.SIGCONT)
        assert creator.finish() == 0
        assert_course_7_output(creator.lines)
        stop_processor(processor, connection)
    finally:
        creator.kill()
        if processor:
            processor.kill()


# --- Ctrl-C -----------------------------------------------------------------------------

@pytest.mark.job_workers
def test_ctrl_c_mid_run_leaves_nothing_stuck(redis_url, connection):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    processor = start_processor("7_job_processor", redis_url, connection, workers=2)
    creator = None
    try:
        # Keep both workers busy, so that the creator's jobs wait in the queue.
        busy = [queue.enqueue("time.sleep", 2) for _ in range(2)]
        wait_until(lambda: all(job.get_status(refresh=True) == "started" for job in busy),
                   "both workers busy")
        creator = Script("7_job_creator", redis_url)
        creator.wait_for("Notification job created: 11")
        assert creator.interrupt() == 130
        assert "Traceback" not in creator.stderr
        assert connection.keys(f"{JOB_EVENTS_PREFIX}*") == []  # its stream is gone

        # Ctrl-C while each worker runs a job: each ends its job, then deregisters.
        stop_processor(processor, connection)
        assert [job.get_status(refresh=True) for job in busy] == ["finished", "finished"]
        assert StartedJobRegistry(queue=queue).count == 0
        created = [str(number) for number in range(1, 12)]
        assert queue.job_ids == created  # still queued, whole, for the next processor
        assert {Job.fetch(job_id, connection=connection).get_status()
                for job_id in created} == {"queued"}

        # A later processor runs them; their events find nobody, and expire.
        processor = start_processor("7_job_processor", redis_url, connection, workers=2)
        wait_until(jobs_ended(connection, PUSH_NOTIFICATION_QUEUE_2, 13), "13 ended jobs")
        stop_processor(processor, connection)
        streams = connection.keys(f"{JOB_EVENTS_PREFIX}*")
        assert len(streams) == 1
        assert connection.ttl(streams[0]) > 0
    finally:
        processor.kill()
        if creator:
            creator.kill()


@pytest.mark.job_workers
def test_sigterm_stops_the_processor_cleanly(redis_url, connection):
    processor = start_processor("7_job_processor", redis_url, connection, workers=2)
    try:
        processor.process.send_signal(signal.SIGTERM)
        assert processor.finish() == 0
        assert processor.stderr == ""
        assert Worker.count(connection=connection) == 0
    finally:
        processor.kill()


@pytest.mark.job_workers
def test_ctrl_c_as_a_terminal_sends_it_reaches_every_worker_once(redis_url, connection):
    # A terminal sends Ctrl-C's SIGINT to the whole process group: the workers get it
    # from the terminal and again from their parent, and must not take it for a second
    # Ctrl-C (RQ's "cold shutdown", which would fail the jobs they are running).
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    processor = start_processor("7_job_processor", redis_url, connection, workers=2)
    try:
        busy = [queue.enqueue("time.sleep", 1) for _ in range(2)]
        wait_until(lambda: all(job.get_status(refresh=True) == "started" for job in busy),
                   "both workers busy")
        children = [int(worker.pid) for worker in Worker.all(connection=connection)]
        for pid in [processor.process.pid, *children]:
            os.kill(pid, signal.SIGINT)
        assert processor.finish() == 0
        assert processor.stderr == ""
        assert Worker.count(connection=connection) == 0
        assert [job.get_status(refresh=True) for job in busy] == ["finished", "finished"]
    finally:
        processor.kill()


@pytest.mark.job_workers
def test_rq_verbose_brings_back_rqs_logs(redis_url, connection):
    processor = start_processor("6_job_processor", redis_url, connection, workers=1,
                                RQ_VERBOSE="1")
    try:
        # Its first maintenance (recovery.py) comes before it listens: wait for the line.
        while not (processor.read_line() or "").endswith(
                "*** Listening on push_notification_code..."):
            assert processor.process.poll() is None, processor.lines
        assert processor.interrupt() == 0
    finally:
        processor.kill()


@pytest.mark.parametrize("name", ["6_job_processor", "7_job_processor", "6_job_creator"])
@pytest.mark.job_workers
def test_a_job_script_started_before_redis_waits_for_it(name, redis_server):
    script = Script(name, redis_server.url)
    try:
        assert script.read_line().startswith("Redis client not connected to the server: ")
        redis_server.start()
        script.wait_for("Redis client connected to the server")
        if name == "6_job_creator":
            assert script.read_line().startswith("Notification job created: ")
            assert script.interrupt() == 130
        else:
            connection = redis.Redis.from_url(redis_server.url)
            wait_until(lambda: Worker.count(connection=connection) > 0, "a worker")
            assert script.interrupt() == 0
        assert "Traceback" not in script.stderr
    finally:
        script.kill()


def test_rq_gets_a_bytes_mode_client(connection):
    assert isinstance(connection, redis.Redis)
    assert connection.connection_pool.connection_kwargs["decode_responses"] is False
