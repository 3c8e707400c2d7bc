"""Worker crashes: a processor SIGKILLed in the middle of a batch loses no job,
and a job run twice takes one seat (recovery.py, seats.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections import Counter

import pytest
from rq import Worker
from rq.command import PUBSUB_CHANNEL_TEMPLATE
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from queuing import jobs, recovering_worker, recovery, seats, workers
from queuing.connection import rq_client
from queuing.constants import (
    AVAILABLE_SEATS_KEY,
    PUSH_NOTIFICATION_QUEUE_2,
    RESERVE_SEAT_QUEUE,
    WORKER_LEASE_KEY,
)
from queuing.job_batch import LISTEN_SOCKET_TIMEOUT, JobBatch
from queuing.job_events import COMPLETED, FAILED, PROGRESS, JobEvent
from queuing.notifications import BLACKLISTED_NUMBERS, push_tracked_notification
from tests import fault_jobs
from tests.processes import Script, process_alive
from tests.scripts.test_jobs import start_processor, wait_until

BATCH = 1_000
HELD = (450, 451)  # these jobs wait for the gate: each worker is in the middle of one


@pytest.fixture
def connection(redis_url):
    client = rq_client(redis_url, socket_timeout=LISTEN_SOCKET_TIMEOUT)
    yield client
    client.close()


def batch_data() -> list[dict[str, str]]:
    """1,000 notifications; every 100th goes to a blacklisted number and must fail."""
    return [{"phoneNumber": BLACKLISTED_NUMBERS[0] if n % 100 == 0 else f"41550{n:05d}",
             "message": f"This is the code {n} to verify your account"} for n in range(BATCH)]


def kill_processor(processor: Script, connection) -> None:
    """SIGKILL the processor and its workers, as the OOM killer or a lost machine would:
    nothing of theirs runs afterwards, and they deregister nothing."""
    pids = [worker.pid for worker in Worker.all(connection=connection)]
    processor.process.kill()
    processor.process.wait()
    for pid in pids:
        if pid and process_alive(pid):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(process_alive(pid) for pid in pids if pid),
               "the workers gone")


@pytest.mark.job_workers
def test_a_processor_killed_mid_batch_loses_no_job(redis_url, connection):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    data = batch_data()
    processor = start_processor("7_job_processor", redis_url, connection, workers=2)
    restarted = None
    try:
        with JobBatch(queue) as batch:
            for number, item in enumerate(data):
                func = fault_jobs.held_notification if number in HELD else \
                    push_tracked_notification
                batch.add(func, item, job_id=jobs.next_job_id(connection))
            started = StartedJobRegistry(queue=queue)
            held = sorted(batch.job_ids[n] for n in HELD)
            wait_until(lambda: sorted(started.get_job_ids(cleanup=False)) == held,
                       "both workers in the middle of a held job")
            kill_processor(processor, connection)
            killed = started.get_job_ids(cleanup=False)
            assert sorted(killed) == held
            assert len(queue) > 0  # the batch was cut in the middle

            connection.set(fault_jobs.GATE_KEY, 1)
            restarted = start_processor("7_job_processor", redis_url, connection, workers=2)
            # Bounded: RQ records a job just after its callback wrote the final event.
            wait_until(lambda: FinishedJobRegistry(queue=queue).count
                       + FailedJobRegistry(queue=queue).count == BATCH, "every job recorded",
                       timeout=60)
            finals = [event for event in batch.events() if event.is_final]

        # The creator heard one final event per job: each completed, or failed saying why.
        assert Counter(event.job_id for event in finals) == Counter(batch.job_ids)
        outcome = {event.job_id: (event.kind, event.error) for event in finals}
        for job_id, item in zip(batch.job_ids, data, strict=True):
            if item["phoneNumber"] in BLACKLISTED_NUMBERS:
                assert outcome[job_id] == (FAILED, f"Phone number {item['phoneNumber']} "
                                                   "is blacklisted")
            else:
                assert outcome[job_id] == (COMPLETED, "")
        # Redis agrees: nothing is left started or queued, nothing vanished.
        assert started.get_job_ids(cleanup=False) == []
        assert len(queue) == 0
        for job_id in killed:  # the killed jobs ran again, once
            job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
            assert job.get_status() == "finished"
            assert job.meta[recovery.ABANDONED_RUNS] == 1
        print(f"crash: {BATCH} jobs, killed mid-run {len(killed)}, recovered {len(killed)}, "
              f"lost 0, completed {sum(k == COMPLETED for k, _ in outcome.values())}, "
              f"failed {sum(k == FAILED for k, _ in outcome.values())}")  # pytest -rP
    finally:
        processor.kill()
        if restarted is not None:
            kill_processor(restarted, connection)


# --- Recovery, piece by piece, with a worker that is known dead ---------------------------

def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def fake_worker(connection, name: str, pid: int, hostname: str | None = None) -> None:
    """The hash RQ keeps for a worker, as a SIGKILLed one leaves it."""
    connection.hset(Worker.redis_worker_namespace_prefix + name,
                    mapping={"hostname": hostname or socket.gethostname(), "pid": pid})


def start_on_dead_worker(queue, connection, worker_name: str) -> Job:
    """Dequeue one job and mark it started by ``worker_name``, as RQ does, then stop."""
    worker = recovering_worker.RecoveringWorker([queue], connection=connection,
                                                serializer=JSONSerializer, name=worker_name)
    job, _queue = worker.dequeue_job_and_maintain_ttl(timeout=1)
    worker.prepare_execution(job)
    worker.prepare_job_execution(job, remove_from_intermediate_queue=True)
    return job


def test_a_job_of_a_dead_worker_goes_back_to_the_front_of_its_queue(connection):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    job = queue.enqueue(push_tracked_notification, {"phoneNumber": "1", "message": "m"})
    other = queue.enqueue(push_tracked_notification, {"phoneNumber": "2", "message": "m"})
    start_on_dead_worker(queue, connection, "dead")
    fake_worker(connection, "dead", dead_pid())
    assert recovery.recover(queue).requeued == [job.id]
    assert queue.get_job_ids() == [job.id, other.id]
    assert StartedJobRegistry(queue=queue).get_job_ids(cleanup=False) == []


@pytest.mark.parametrize("where", ["same-pid-here", "other-host"])
def test_a_worker_is_judged_by_its_lease_not_by_its_host_and_pid(connection, where):
    """A restarted container's processor has the dead one's hostname and PID (1); a dead
    worker on another host cannot be checked from here: neither decides."""
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    job = queue.enqueue(push_tracked_notification, {"phoneNumber": "1", "message": "m"})
    start_on_dead_worker(queue, connection, "gone")
    if where == "same-pid-here":
        fake_worker(connection, "gone", os.getpid())  # a live process has its PID
    else:
        fake_worker(connection, "gone", dead_pid(), hostname="another-machine")
    assert recovery.recover(queue).requeued == [job.id]


@pytest.mark.parametrize("alive_by", ["lease", "command-channel"])
def test_a_job_of_a_live_worker_is_left_alone(connection, alive_by):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    job = queue.enqueue(push_tracked_notification, {"phoneNumber": "1", "message": "m"})
    start_on_dead_worker(queue, connection, "busy")
    fake_worker(connection, "busy", dead_pid(), hostname="another-machine")
    listener = connection.pubsub()
    if alive_by == "lease":
        connection.set(WORKER_LEASE_KEY.format(name="busy"), 1, ex=15)
    else:
        listener.subscribe(PUBSUB_CHANNEL_TEMPLATE % "busy")
        listener.get_message(timeout=5)  # the subscription is confirmed
    try:
        assert recovery.recover(queue).requeued == []
    finally:
        listener.close()
    assert StartedJobRegistry(queue=queue).get_job_ids(cleanup=False) == [job.id]


def test_a_job_whose_worker_died_between_rqs_two_start_steps_goes_back(connection):
    """RQ puts the job in the started registry, then marks it started: a kill between the
    two leaves it "queued" there, its worker named only by the execution."""
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    job = queue.enqueue(push_tracked_notification, {"phoneNumber": "1", "message": "m"})
    worker = recovering_worker.RecoveringWorker([queue], connection=connection,
                                       serializer=JSONSerializer, name="cut")
    taken, _queue = worker.dequeue_job_and_maintain_ttl(timeout=1)
    worker.prepare_execution(taken)  # ...and no prepare_job_execution: killed here
    assert job.get_status(refresh=True) == "queued"
    assert StartedJobRegistry(queue=queue).get_job_ids(cleanup=False) == [job.id]
    assert recovery.recover(queue).requeued == [job.id]
    assert queue.get_job_ids() == [job.id]
    assert StartedJobRegistry(queue=queue).get_job_ids(cleanup=False) == []


def test_a_live_worker_keeps_its_lease_and_gives_it_back_when_it_stops(connection):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    worker = recovering_worker.RecoveringWorker([queue], connection=connection,
                                       serializer=JSONSerializer, name="leaser")
    worker.register_birth()
    lease = WORKER_LEASE_KEY.format(name="leaser")
    assert 0 < connection.ttl(lease) <= recovery.LEASE_SECONDS
    worker.register_death()
    assert not connection.exists(lease)


def test_a_job_that_keeps_killing_its_worker_fails_with_a_reason(connection):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        job = batch.add(push_tracked_notification, {"phoneNumber": "1", "message": "m"},
                        job_id="crasher")
        for run in range(1, recovery.MAX_ABANDONED_RUNS + 1):
            assert queue.get_job_ids() == [job.id]  # back in the queue each time
            start_on_dead_worker(queue, connection, f"dead-{run}")
            fake_worker(connection, f"dead-{run}", dead_pid())
            recovery.recover(queue)
        assert job.get_status(refresh=True) == "failed"
        [event] = batch.events(block_ms=1000)
        assert (event.kind, event.error) == (FAILED,
                                             "the worker running it stopped before it ended")


def sent_kinds(connection, stream: str) -> set[str]:
    """The kinds of the events written to a reply stream so far."""
    return {JobEvent.from_fields(fields).kind for _id, fields in connection.xrange(stream)}


@pytest.mark.job_workers
def test_the_late_end_of_a_job_taken_back_from_its_worker_is_refused(connection, capsys):
    """A worker cut off from Redis longer than its lease is taken for dead, and its job
    goes back to the queue; when it gets through again with the job's end, that end is
    not recorded and its events are not sent: the job's next run records the one end."""
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        job = batch.add(fault_jobs.taken_back_notification,
                        {"phoneNumber": "4155550100", "message": "m"}, job_id="late")
        workers.make_worker(queue.name, connection).work(burst=True, max_jobs=1)
        assert "taken back" in capsys.readouterr().err
        assert job.get_status(refresh=True) == "queued"
        assert queue.get_job_ids() == [job.id]
        assert job.id not in FinishedJobRegistry(queue=queue)
        assert job.latest_result() is None
        assert sent_kinds(connection, batch.stream) <= {PROGRESS}  # no end is announced

        workers.make_worker(queue.name, connection).work(burst=True)
        assert job.get_status(refresh=True) == "finished"
        assert [event.kind for event in batch.events(block_ms=1000)
                if event.kind != PROGRESS] == [COMPLETED]
        assert sent_kinds(connection, batch.stream) - {PROGRESS} == {COMPLETED}
        assert len(job.results()) == 1


def test_a_job_a_dead_worker_took_but_never_started_goes_back(connection):
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    job = queue.enqueue(push_tracked_notification, {"phoneNumber": "1", "message": "m"})
    connection.lmove(queue.key, queue.intermediate_queue_key)  # RQ's dequeue, then death
    assert queue.get_job_ids() == []
    assert recovery.recover(queue).requeued == [job.id]
    assert queue.get_job_ids() == [job.id]
    assert queue.intermediate_queue.get_job_ids() == []


# --- The seat job is safe to run twice ---------------------------------------------------

def test_a_seat_job_run_twice_takes_one_seat(connection, real_redis):
    seats.reserve_seat(real_redis, 50)
    queue = jobs.json_queue(RESERVE_SEAT_QUEUE, connection)
    job = queue.enqueue(seats.take_seat, job_id="7")
    for run in range(2):
        if run:
            queue.enqueue_job(job)  # what recovery does when the worker died after the seat
        recovering_worker.RecoveringWorker([queue], connection=connection,
                                  serializer=JSONSerializer).work(burst=True)
        assert job.get_status(refresh=True) == "finished"
        assert real_redis.get(AVAILABLE_SEATS_KEY) == "49"


def test_a_workers_heartbeat_never_puts_back_the_job_it_has_just_taken(connection):
    """RQ's dequeue moves a job to the intermediate list, then beats the worker's heart
    before it starts the job: the recovery run by that heartbeat must not take the job
    for a dead worker's (it would run twice, an SMS sent twice)."""
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    job = queue.enqueue(push_tracked_notification, {"phoneNumber": "1", "message": "m"})
    worker = recovering_worker.RecoveringWorker([queue], connection=connection,
                                       serializer=JSONSerializer, name="alone")
    worker.register_birth()
    try:
        connection.lmove(queue.key, queue.intermediate_queue_key)  # taken, not yet started
        worker.heartbeat()  # the first one recovers at once
        assert queue.get_job_ids() == []
        assert queue.intermediate_queue.get_job_ids() == [job.id]
    finally:
        worker.register_death()


def test_a_job_taken_by_a_worker_killed_before_starting_it_goes_back_once_stuck(connection):
    """Killed between taking a job and starting it, a worker still looks alive for its
    lease's last seconds when its successor starts: the job goes back once it has sat
    taken, not started, for STUCK_SECONDS (a live worker starts a job in milliseconds)."""
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    job = queue.enqueue(push_tracked_notification, {"phoneNumber": "1", "message": "m"})
    connection.lmove(queue.key, queue.intermediate_queue_key)  # taken by the killed one
    fake_worker(connection, "killed", dead_pid())
    killed_key = Worker.redis_worker_namespace_prefix + "killed"
    connection.sadd(Worker.redis_workers_keys, killed_key)
    connection.sadd(f"rq:workers:{queue.name}", killed_key)  # RQ's workers of this queue
    connection.set(WORKER_LEASE_KEY.format(name="killed"), 1, ex=60)  # not lapsed yet
    successor = recovering_worker.RecoveringWorker([queue], connection=connection,
                                          serializer=JSONSerializer, name="successor")
    successor.register_birth()
    try:
        successor.clean_registries()  # at its start: the killed one still looks alive
        assert queue.get_job_ids() == []
        successor._seen_taken[job.id] -= recovery.STUCK_SECONDS  # ...time passes
        successor._last_recovery -= recovery.RECOVERY_SECONDS
        successor.heartbeat()
        assert queue.get_job_ids() == [job.id]
        assert queue.intermediate_queue.get_job_ids() == []
    finally:
        successor.register_death()
