"""Processors on several "hosts" against one Redis: each host a network, PID and UTS
namespace of its own on this machine (tests.hosts), as containers are. A host killed in the
middle of a job has that job run again on another host; a host cut off from Redis longer
than its lease has its job run again elsewhere, and its own late end is refused when it
gets through; no job is lost or ended twice, and the hosts' workers never take each other
for themselves although their hostnames and PIDs are the same."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rq import Worker
from rq.command import PUBSUB_CHANNEL_TEMPLATE
from rq.executions import Execution
from rq.job import Job
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from queuing import jobs
from queuing.connection import rq_client
from queuing.constants import PUSH_NOTIFICATION_QUEUE_2
from queuing.job_batch import LISTEN_SOCKET_TIMEOUT, JobBatch
from queuing.job_events import COMPLETED, JobEvent
from queuing.local_redis import RedisServer, RedisServerNotFound
from queuing.notifications import push_tracked_notification
from tests import fault_jobs
from tests.faults.test_failover import (
    JOBS_PER_CREATOR,
    assert_no_crash,
    creator_outcome,
    job_env,
    start_creator,
)
from tests.hosts import Host, listen_on, namespaces_missing
from tests.processes import Script, skip_unless_ci, wait_until
from tests.servers import kill_with_children

pytestmark = pytest.mark.redis_server

# Redis notices a client whose network went away only by TCP keepalive (a cut-off host
# sends no FIN, no RST): until then the host's subscription to its command channel stays
# on Redis's books, and recovery.worker_dead takes a worker for dead only once its lease
# has lapsed AND that subscription is gone. Redis's tcp-keepalive N probes after N s of
# silence, then every N/3 s, 3 times: with the default 300, a partitioned worker's job is
# taken back only some 10 minutes after the cut (with 300 here, this test's wait for the
# subscription to go fails). The test's Redis: 2 s, a silent host dropped after ~5 s.
KEEPALIVE_SECONDS = 2
HOLDER = "processor"  # both hosts' hostname: the same, as two containers of one image
RERUN_BOUND = 20.0  # seconds from a host's loss to its job running again on the other
CUT_SECONDS = 30.0  # how long the cut-off host stays cut off, in all
LATER_JOBS = 4


@pytest.fixture
def hosts() -> Iterator[Callable[[], Host]]:
    """Make hosts (tests.hosts.Host); each is removed when the test ends. Without root or
    namespaces it skips, except in CI, where it fails."""
    missing = namespaces_missing()
    if missing:
        skip_unless_ci(missing)
    made: list[Host] = []

    def make() -> Host:
        made.append(Host())
        return made[-1]

    yield make
    for host in made:
        host.close()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A throwaway redis-server with a short tcp-keepalive (KEEPALIVE_SECONDS: why)."""
    try:
        server = RedisServer("--tcp-keepalive", str(KEEPALIVE_SECONDS)).start()
    except (RedisServerNotFound, RuntimeError) as error:
        skip_unless_ci(str(error))
    yield server
    server.close()


@pytest.fixture
def connection(server):
    client = rq_client(server.url, socket_timeout=LISTEN_SOCKET_TIMEOUT)
    yield client
    client.close()


def worker_names(connection) -> set[str]:
    return {worker.name for worker in Worker.all(connection=connection)}


def start_processor(host: Host | None, url: str, connection, env: dict[str, str]) -> tuple[
        Script, set[str]]:
    """7_job_processor.py in ``host`` (hostname HOLDER), or on this machine; it and the
    names of its two workers, once both are registered."""
    before = worker_names(connection)
    if host is None:
        script = Script("7_job_processor", url, **env)
    else:
        script = host.start(HOLDER, "7_job_processor", url, **env)
    wait_until(lambda: len(worker_names(connection) - before) == 2,
               f"{script.name}'s two workers", timeout=30)
    return script, worker_names(connection) - before


def runner(connection, queue, job_id: str) -> str | None:
    """The worker that runs ``job_id`` now (its execution in the started registry)."""
    for started_id, execution_id in StartedJobRegistry(queue=queue).get_job_and_execution_ids(
            cleanup=False):
        if started_id == job_id:
            with contextlib.suppress(Exception):  # ended meanwhile
                return Execution.fetch(execution_id, job_id, connection).worker_name
    return None


def finals_in(connection, stream: str, job_id: str) -> list[str]:
    """The final events of ``job_id`` written to ``stream``: one per end recorded."""
    events = (JobEvent.from_fields(fields) for _id, fields in connection.xrange(stream))
    return [event.kind for event in events if event.job_id == job_id and event.is_final]


def hosts_seen(connection, names: set[str]) -> set[tuple[str, int]]:
    return {(worker.hostname, worker.pid) for worker in Worker.all(connection=connection)
            if worker.name in names}


@pytest.mark.job_workers
def test_a_processor_host_killed_mid_job_has_its_jobs_run_on_another(
        server, hosts, connection, tmp_path):
    host_a, host_b = hosts(), hosts()
    listen_on(server.url, [host_a, host_b])
    env = job_env(tmp_path / "runs")
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    creators: list[Script] = []
    try:
        _processor_a, on_a = start_processor(host_a, host_a.url(server.port), connection,
                                             env)
        with JobBatch(queue) as batch:
            held = [batch.add(fault_jobs.held_notification,
                              {"phoneNumber": f"415555010{n}", "message": "held"},
                              job_id=jobs.next_job_id(connection)).id for n in range(2)]
            wait_until(lambda: {runner(connection, queue, job_id) for job_id in held} == on_a,
                       "both of host A's workers in the middle of a held job")
            processor_b, on_b = start_processor(host_b, host_b.url(server.port), connection,
                                                env)
            # The same hostname on both hosts, PIDs from 1 in each (the workers' mostly the
            # same: a worker's threads take PIDs too), as two containers have; other names.
            seen_a, seen_b = hosts_seen(connection, on_a), hosts_seen(connection, on_b)
            assert {host for host, _pid in seen_a | seen_b} == {HOLDER}
            assert not on_a & on_b, (on_a, on_b)
            creators = [start_creator(f"creator {n}", server.url, env) for n in (1, 2)]
            finished = FinishedJobRegistry(queue=queue)
            wait_until(lambda: finished.count >= 50, "host B working through the creators'")

            killed = time.monotonic()
            host_a.kill()
            wait_until(lambda: all(runner(connection, queue, job_id) in on_b
                                   for job_id in held),
                       "host A's two jobs running again on host B", timeout=RERUN_BOUND + 10)
            rerun_after = time.monotonic() - killed
            connection.set(fault_jobs.GATE_KEY, 1)
            held_finals = [event for event in batch.events() if event.is_final]
            for job_id in held:  # the stream, before leaving the batch deletes it
                assert finals_in(connection, batch.stream, job_id) == [COMPLETED]

        for creator in creators:
            assert creator.finish(timeout=60) == 0, creator.stderr[-3000:]
            assert_no_crash(creator)
        outcomes = [creator_outcome(creator) for creator in creators]
        for outcome in outcomes:
            assert len(outcome["created"]) == JOBS_PER_CREATOR
            assert set(outcome["finals"]) == set(outcome["created"]), "a job never ended"
            assert all(len(ends) == 1 for ends in outcome["finals"].values())
        assert sorted(event.job_id for event in held_finals) == sorted(held)
        assert {event.kind for event in held_finals} == {COMPLETED}
        for job_id in held:
            job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
            assert len(job.results()) == 1
        assert rerun_after <= RERUN_BOUND, f"rerun {rerun_after:.1f}s after the kill"
        # Host B never stopped: the same two workers all along, and it ends cleanly.
        assert processor_b.process.poll() is None, processor_b.stderr[-3000:]
        assert on_b <= worker_names(connection)
        assert_no_crash(processor_b)
        assert host_b.interrupt() == 0, processor_b.stderr[-3000:]
        assert_no_crash(processor_b)
        figures = {"jobs": 2 * JOBS_PER_CREATOR + len(held), "held_on_a": len(held),
                   "rerun_on_b_after_kill_s": round(rerun_after, 2),
                   "workers_a": sorted(on_a), "workers_b": sorted(on_b),
                   "same_hostname_and_pid": sorted(seen_a & seen_b)}
        print(f"host killed mid-job: {json.dumps(figures)}")  # pytest -rP
    finally:
        for creator in creators:
            creator.kill()


@pytest.mark.job_workers
def test_a_processor_host_cut_off_for_30s_has_its_late_end_refused(
        server, hosts, connection, tmp_path):
    host_a = hosts()
    listen_on(server.url, [host_a])
    env = job_env(tmp_path / "runs")
    gate = tmp_path / "gate"
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    processor_b = None
    try:
        processor_a, on_a = start_processor(host_a, host_a.url(server.port), connection, env)
        with JobBatch(queue) as batch:
            held = batch.add(fault_jobs.file_held_notification, str(gate),
                             {"phoneNumber": "4155550100", "message": "held"},
                             job_id=jobs.next_job_id(connection)).id
            wait_until(lambda: runner(connection, queue, held) in on_a,
                       "host A in the middle of the held job")
            holder = runner(connection, queue, held)
            processor_b, on_b = start_processor(None, server.url, connection, env)

            cut = time.monotonic()
            host_a.cut()
            channel = PUBSUB_CHANNEL_TEMPLATE % holder
            wait_until(lambda: connection.pubsub_numsub(channel)[0][1] == 0,
                       "Redis dropping host A's subscription (TCP keepalive)", timeout=25)
            unsubscribed_after = time.monotonic() - cut
            wait_until(lambda: runner(connection, queue, held) in on_b,
                       "the held job running again on B", timeout=RERUN_BOUND + 5)
            rerun_after = time.monotonic() - cut
            gate.touch()  # both runs may end now: B's, and A's once it gets through
            held_finals = [event for event in batch.events() if event.is_final]
            assert [event.kind for event in held_finals] == [COMPLETED]

            assert processor_b.interrupt(timeout=40) == 0, processor_b.stderr[-3000:]
            later = [batch.add(push_tracked_notification,
                               {"phoneNumber": f"415555020{n}", "message": "later"},
                               job_id=jobs.next_job_id(connection)).id
                     for n in range(LATER_JOBS)]
            # The cut lasts CUT_SECONDS in all: a duration of the scenario, not a wait for
            # an event.
            threading.Event().wait(max(0.0, cut + CUT_SECONDS - time.monotonic()))
            assert processor_a.process.poll() is None, processor_a.stderr[-3000:]
            restored = time.monotonic()
            host_a.restore()
            later_finals = [event for event in batch.events()
                            if event.is_final and event.job_id in later]
            working_after = time.monotonic() - restored
            wait_until(lambda: "was taken back" in processor_a.stderr,
                       "host A's line for its late end, refused")
            assert finals_in(connection, batch.stream, held) == [COMPLETED]

        assert f"Notification job {held} was taken back while this worker was cut off " \
               "from Redis" in processor_a.stderr, processor_a.stderr[-3000:]
        job = Job.fetch(held, connection=connection, serializer=JSONSerializer)
        assert job.get_status() == "finished"
        assert len(job.results()) == 1
        assert {event.job_id for event in later_finals} == set(later)
        assert {event.kind for event in later_finals} == {COMPLETED}
        ran_later = {Job.fetch(job_id, connection=connection,
                               serializer=JSONSerializer).worker_name for job_id in later}
        assert ran_later <= on_a, ran_later
        assert processor_a.process.poll() is None, processor_a.stderr[-3000:]
        assert_no_crash(processor_a)
        assert StartedJobRegistry(queue=queue).get_job_ids(cleanup=False) == []
        assert len(queue) == 0
        figures = {"subscription_dropped_after_cut_s": round(unsubscribed_after, 2),
                   "rerun_on_b_after_cut_s": round(rerun_after, 2),
                   "later_jobs_done_on_a_after_restore_s": round(working_after, 2),
                   "a_stderr": processor_a.stderr.splitlines()[-5:]}
        print(f"host cut off {CUT_SECONDS:.0f}s: {json.dumps(figures)}")  # pytest -rP
    finally:
        if processor_b is not None:
            kill_with_children(processor_b)


PROBE = """import os, socket, sys, time, redis
print(socket.gethostname(), os.getpid(), redis.Redis.from_url(os.environ["REDIS_URL"]).ping())
sys.stdout.flush()
time.sleep(60)
"""


def test_a_host_is_removed_with_everything_in_it(hosts, server):
    """tests.hosts itself: the command runs as PID 1 under the chosen hostname, reaches
    Redis over the link, and the namespace and veth are gone after close()."""
    host = hosts()
    listen_on(server.url, [host])
    probe = host.start("probe-host", "probe", host.url(server.port), sys.executable, "-c",
                       PROBE)
    assert probe.read_line(timeout=20) == "probe-host 1 True", probe.stderr
    host.close()
    assert probe.process.poll() is not None
    assert not Path(f"/run/netns/{host.netns}").exists()
    assert not Path(f"/sys/class/net/{host.veth}").exists()
