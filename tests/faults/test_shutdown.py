"""Graceful shutdown: a stop signal lets running jobs end within a bounded
wait, deregisters the workers and exits 0; a second signal stops at once (workers.py)."""

from __future__ import annotations

import signal
import time

import pytest
from rq import Worker
from rq.registry import StartedJobRegistry

from queuing import jobs
from queuing.connection import rq_client
from queuing.constants import PUSH_NOTIFICATION_QUEUE_2
from queuing.job_batch import LISTEN_SOCKET_TIMEOUT, JobBatch
from queuing.job_events import FAILED
from tests import fault_jobs
from tests.faults.test_crash import kill_processor
from tests.faults.test_restart import GOOD, NOT_CONNECTED, read_until
from tests.scripts.test_jobs import start_processor, wait_until
from tests.servers import kill_with_children

COLD = "its worker was stopped while running it (cold shutdown)"
LONG_JOB_SECONDS = 120  # far longer than any failure timeout below


@pytest.fixture
def connection(redis_url):
    client = rq_client(redis_url, socket_timeout=LISTEN_SOCKET_TIMEOUT)
    yield client
    client.close()


def start_long_jobs(redis_url, connection, batch: JobBatch, **env: str):
    processor = start_processor("7_job_processor", redis_url, connection, workers=2, **env)
    long_jobs = [batch.add("time.sleep", LONG_JOB_SECONDS, job_id=f"long-{n}")
                 for n in range(2)]
    wait_until(lambda: all(job.get_status(refresh=True) == "started" for job in long_jobs),
               "both workers busy")
    return processor, long_jobs


def assert_stopped_cleanly(processor, connection, batch: JobBatch, queue) -> None:
    """Exit 0 well before the jobs would have ended; both jobs failed and their creator
    heard why; no worker left in `rq info`, no job left started."""
    assert processor.finish(timeout=20) == 0
    assert "Traceback" not in processor.stderr
    assert Worker.count(connection=connection) == 0
    assert StartedJobRegistry(queue=queue).get_job_ids(cleanup=False) == []
    events = [event for event in batch.events(block_ms=1000) if event.is_final]
    assert sorted((event.job_id, event.kind, event.error) for event in events) == [
        ("long-0", FAILED, COLD), ("long-1", FAILED, COLD)]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.job_workers
def test_a_job_longer_than_the_grace_is_stopped_and_reported(redis_url, connection, stop):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        processor, _jobs = start_long_jobs(redis_url, connection, batch,
                                           WORKER_SHUTDOWN_GRACE="2")
        try:
            processor.process.send_signal(stop)
            assert_stopped_cleanly(processor, connection, batch, queue)
        finally:
            kill_processor(processor, connection)  # and its workers, if the test failed


@pytest.mark.job_workers
def test_a_second_signal_stops_at_once(redis_url, connection):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        processor, _jobs = start_long_jobs(redis_url, connection, batch)  # grace: 30 s
        try:
            processor.process.send_signal(signal.SIGTERM)
            time.sleep(1.2)  # RQ takes a second signal within 1 s for a copy of the first
            processor.process.send_signal(signal.SIGTERM)
            assert_stopped_cleanly(processor, connection, batch, queue)
        finally:
            kill_processor(processor, connection)  # and its workers, if the test failed


@pytest.mark.job_workers
def test_a_processor_waiting_for_redis_to_record_a_jobs_end_stops_on_a_signal(redis_server,
                                                                             tmp_path):
    """Redis went away for good while two jobs ran: each worker waits for it to record the
    job's end. A stop signal must still end the processor after its grace (the second,
    forced stop): a forced stop inside that wait was taken for the job's own failure, whose
    recording waited for Redis again, for ever."""
    gate = tmp_path / "gate"
    server = redis_server.start()
    connection = rq_client(server.url)
    processor = start_processor("7_job_processor", server.url, connection, workers=2,
                                WORKER_SHUTDOWN_GRACE="2")
    try:
        queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
        held = [queue.enqueue(fault_jobs.file_held_notification, str(gate), GOOD)
                for _ in range(2)]
        wait_until(lambda: all(job.get_status(refresh=True) == "started" for job in held),
                   "both workers busy")
        server.stop()
        gate.touch()  # the jobs end; their end cannot be recorded
        read_until(processor, NOT_CONNECTED)
        processor.process.send_signal(signal.SIGTERM)
        processor.finish(timeout=30)  # raises TimeoutExpired if it does not end
        assert "Traceback" not in processor.stderr, processor.stderr[-3000:]
    finally:
        kill_with_children(processor)
