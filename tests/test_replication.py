"""The replicated mode on a real master and replica: a write is confirmed (a job created,
"Reservation confirmed", a seat queued) only once the replica has it; with the replica
stopped the creator gets NotReplicated and the servers answer 503 within about the
timeout; with REDIS_MIN_REPLICAS=0 no WAIT (nor its fence) is sent at all.

The replica is stopped with SIGSTOP: to the master it is still connected, it just never
acknowledges, the case WAIT's timeout is for.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from queuing import (
    connection,
    jobs,
    notifications,
    replication,
    seat_worker,
    seats,
    settings,
    stock,
)
from queuing.constants import (
    AVAILABLE_SEATS_KEY,
    JOB_ID_KEY,
    PUSH_NOTIFICATION_QUEUE_2,
    RESERVE_SEAT_QUEUE,
    SEAT_JOBS_KEY,
)
from queuing.job_batch import LISTEN_SOCKET_TIMEOUT, JobBatch
from queuing.local_redis import RedisServer, RedisServerNotFound
from queuing.seat_sale import Sale
from tests.processes import skip_unless_ci

pytestmark = pytest.mark.redis_server

TIMEOUT = 0.3  # REDIS_MIN_REPLICAS_TIMEOUT in these tests, seconds
SYNC_SECONDS = 10
NOT_CONFIRMED = "Reservation not confirmed: only 0 of 1 replicas have the write"


class Pair:
    """A master and its replica, both throwaway redis-servers on free ports."""

    def __init__(self, master: RedisServer, replica: RedisServer) -> None:
        self.master = master
        self.replica = replica

    def wait_for_sync(self, master: redis.Redis) -> None:
        """Until the replica has acknowledged everything the master took (bounded): a
        replica whose link is up may not acknowledge anything for a second after it."""
        deadline = time.monotonic() + SYNC_SECONDS
        while True:
            with master.pipeline(transaction=False) as pipe:
                acknowledged = pipe.publish("sync", "").wait(1, 100).execute()[-1]
            if acknowledged == 1:
                return
            assert time.monotonic() < deadline, "the replica did not sync"

    @contextlib.contextmanager
    def replica_stopped(self) -> Iterator[None]:
        """The replica frozen (SIGSTOP): connected, never acknowledging."""
        os.kill(self.replica.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.replica.process.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    try:
        # No wait for more replicas before the first sync (Redis waits 5 s by default).
        master = RedisServer("--repl-diskless-sync-delay", "0").start()
    except RedisServerNotFound as error:
        skip_unless_ci(str(error))
    try:
        with RedisServer("--replicaof", "127.0.0.1", str(master.port)) as replica:
            yield Pair(master, replica)
    finally:
        master.close()


@pytest.fixture
def master(pair) -> Iterator[redis.Redis]:
    """The master's client (str replies), on a flushed master whose replica is in sync."""
    client = connection.connect(pair.master.url)
    client.flushall()
    pair.wait_for_sync(client)
    yield client
    client.close()


@pytest.fixture
def replicated(monkeypatch) -> None:
    monkeypatch.setenv(settings.MIN_REPLICAS_ENV, "1")
    monkeypatch.setenv(settings.MIN_REPLICAS_TIMEOUT_ENV, str(TIMEOUT))


@pytest.fixture
def stock_app(pair, master):
    client = connection.server_client(pair.master.url)
    yield stock.create_app(client).test_client()
    client.close()


class IdleProcessor:
    def start(self) -> bool:
        return True

    def stop(self) -> bool:
        return True


@pytest.fixture
def seat_app(pair, master):
    client = connection.server_client(pair.master.url)
    rq = connection.server_client(pair.master.url, decode_responses=False)
    Sale(client).join(renew=False)
    yield seats.create_app(client, rq, processor=IdleProcessor(), join_sale=False).test_client()
    rq.close()
    client.close()


@pytest.fixture
def batch(pair, master) -> Iterator[JobBatch]:
    rq = connection.rq_client(pair.master.url, socket_timeout=LISTEN_SOCKET_TIMEOUT)
    with JobBatch(jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, rq)) as job_batch:
        yield job_batch
    rq.close()


def data(count: int) -> list[dict]:
    return [{"phoneNumber": "4153518781", "message": f"code {n}"} for n in range(count)]


def create_jobs(batch: JobBatch, count: int) -> str:
    """What create_notification_jobs prints on stdout for ``count`` jobs (the creators'
    created lines), whether it reports unconfirmed jobs or lets NotReplicated out."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(replication.NotReplicated):
        notifications.create_notification_jobs(batch, data(count),
                                               notifications.push_tracked_notification)
    return out.getvalue()


@contextlib.contextmanager
def timed(at_most: float) -> Iterator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < at_most


# --- confirm -----------------------------------------------------------------------------

def test_confirm_returns_when_the_replica_has_the_write(master):
    master.set("key", "value")
    replication.confirm(master, 1, 2, written=["key"])
    replication.confirm(master, 0)  # nothing asked


def test_confirm_raises_within_the_timeout_when_the_replica_does_not_acknowledge(pair, master):
    with pair.replica_stopped():
        master.set("key", "value")
        with timed(TIMEOUT + 1), pytest.raises(replication.NotReplicated) as caught:
            replication.confirm(master, 1, TIMEOUT, written=["key"])
    assert str(caught.value) == "only 0 of 1 replicas have the write"
    assert (caught.value.acknowledged, caught.value.required) == (0, 1)


def test_more_replicas_than_there_are_is_never_confirmed(master):
    master.set("key", "value")
    with pytest.raises(replication.NotReplicated, match="only 1 of 2 replicas"):
        replication.confirm(master, 2, TIMEOUT)


def test_a_write_missing_from_the_server_is_not_confirmed(master):
    """After a failover that lost it, a retry's WAIT would confirm nothing of it."""
    with pytest.raises(replication.NotReplicated, match="not on Redis's master") as caught:
        replication.confirm(master, 1, 2, written=["never-written"])
    assert caught.value.missing


def test_a_master_demoted_to_replica_is_not_connected(pair, master):
    """Asked on a replica (the master demoted by a failover since the write), WAIT is
    refused: a ConnectionError, which the creators retry and the servers answer 503."""
    replica = connection.connect(pair.replica.url)
    with pytest.raises(redis.ConnectionError, match="replica"):
        replication.confirm(replica, 1, TIMEOUT)
    replica.close()


def test_exists_fence_and_wait_share_one_connection_however_busy_the_pool(pair, master):
    """WAIT counts its own connection's writes: the fence before it must go on the same one."""
    monitor_client = redis.Redis.from_url(pair.master.url, socket_timeout=5)
    with monitor_client.monitor() as monitor:
        held = [master.connection_pool.get_connection() for _ in range(3)]  # others in use
        for held_connection in held:
            master.connection_pool.release(held_connection)
        master.set("key", "value")
        replication.confirm(master, 1, 2, written=["key"])
        master.echo("end")
        seen = commands_until_end(monitor)
    monitor_client.close()
    confirming = [(c["client_address"], c["client_port"]) for c in seen
                  if c["command"].split()[0] in ("EXISTS", "PUBLISH", "WAIT")]
    assert len(confirming) == 3
    assert len(set(confirming)) == 1
    assert [c["command"].split()[0] for c in seen if c["command"].split()[0] in
            ("EXISTS", "PUBLISH", "WAIT")] == ["EXISTS", "PUBLISH", "WAIT"]


def commands_until_end(monitor) -> list[dict]:
    """The commands MONITOR reports up to ``ECHO end`` (its socket timeout bounds the wait)."""
    seen = []
    while True:
        command = monitor.next_command()
        if command["command"] == "ECHO end":
            return seen
        seen.append(command)


# --- the creators -----------------------------------------------------------------------

def test_jobs_are_created_once_the_replica_has_them(replicated, pair, batch):
    out = create_jobs(batch, 3)
    assert out.count("Notification job created: ") == 3
    replica = connection.rq_client(pair.replica.url)
    assert all(replica.exists(Job.key_for(job_id)) for job_id in batch.job_ids)
    replica.close()


def test_unconfirmed_jobs_are_reported_and_never_said_created(replicated, pair, batch):
    with pair.replica_stopped():
        with timed(TIMEOUT + 2), pytest.raises(replication.NotReplicated) as caught:
            batch.add_many(notifications.push_tracked_notification,
                           [(item,) for item in data(3)])
        assert "created" not in create_jobs(batch, 3)
    # The jobs are on the master, not confirmed: the error names them, the batch still
    # hears their events (they may run, or be found lost).
    assert len(caught.value.job_ids) == 3
    assert batch.job_ids[:3] == caught.value.job_ids
    assert len(batch.job_ids) == 6
    assert str(caught.value) == "only 0 of 1 replicas have the write"


def test_rq_enqueue_of_a_batch_is_confirmed_or_names_its_job(replicated, pair, batch):
    job = batch.add("builtins.len", "abc", job_id="confirmed-1")
    assert job.id == "confirmed-1"
    with pair.replica_stopped(), pytest.raises(replication.NotReplicated) as caught:
        batch.add("builtins.len", "abc", job_id="unconfirmed-1")
    assert caught.value.job_ids == ["unconfirmed-1"]
    assert batch.job_ids == ["confirmed-1", "unconfirmed-1"]


def test_a_confirmed_batch_s_ids_are_never_handed_out_again(replicated, pair, batch,
                                                            monkeypatch):
    """A failover between the ids' INCRBY and the batch's write loses the INCRBY, not the
    retried batch: the counter is raised past the batch before the replicas confirm it."""
    reserve = jobs.reserve_job_ids

    def reserve_then_lose_the_increment(rq, count):
        job_ids = reserve(rq, count)
        rq.set(JOB_ID_KEY, 0)
        return job_ids

    monkeypatch.setattr(jobs, "reserve_job_ids", reserve_then_lose_the_increment)
    assert batch.add_many(notifications.push_tracked_notification,
                          [(x,) for x in data(3)]) == ["1", "2", "3"]
    replica = redis.Redis.from_url(pair.replica.url)
    assert replica.get(JOB_ID_KEY) == b"3"
    replica.close()


def test_a_batch_retried_after_a_lost_reply_is_confirmed_once(replicated, pair, batch,
                                                               monkeypatch):
    """The script ran but its reply was lost: the retry writes nothing (the batch's
    marker is there) and the replicas confirm the batch, which is there once."""
    rq = batch.queue.connection
    register = rq.register_script

    def losing_first_reply(text):
        script = register(text)
        calls = []

        def run(**kwargs):
            result = script(**kwargs)
            calls.append(result)
            if len(calls) == 1:
                raise redis.ConnectionError("reply lost")
            return result
        return run

    monkeypatch.setattr(rq, "register_script", losing_first_reply)
    with contextlib.redirect_stdout(io.StringIO()):
        ids = batch.add_many(notifications.push_tracked_notification, [(x,) for x in data(3)])
    assert ids == ["1", "2", "3"]
    assert rq.llen(batch.queue.key) == 3
    assert rq.get(JOB_ID_KEY) == b"3"


# --- the servers --------------------------------------------------------------------------

def test_reservation_confirmed_when_the_replica_has_it(replicated, stock_app, pair):
    response = stock_app.get("/reserve_product/1")
    assert response.json == {"status": "Reservation confirmed", "itemId": 1}
    replica = redis.Redis.from_url(pair.replica.url, decode_responses=True)
    assert replica.get(stock.stock_key(1)) == "3"
    replica.close()


def test_reservation_not_replicated_is_503_never_confirmed(replicated, stock_app, pair, master):
    stock_app.get("/list_products/1")  # the stock keys, written and replicated
    with pair.replica_stopped(), timed(TIMEOUT + 2):
        response = stock_app.get("/reserve_product/1")
    assert response.status_code == 503
    assert json.loads(response.data) == {"status": "Service Unavailable",
                                         "reason": NOT_CONFIRMED}
    # Taken on the master, confirmed to no one.
    assert master.get(stock.stock_key(1)) == "3"


def test_none_left_needs_no_replica(replicated, stock_app, pair, master):
    master.set(stock.stock_key(3), 0)
    with pair.replica_stopped(), timed(TIMEOUT):
        response = stock_app.get("/reserve_product/3")
    assert response.json["status"] == "Not enough stock available"


def test_seat_queued_when_the_replica_has_the_job(replicated, seat_app):
    assert seat_app.get("/reserve_seat").json == {"status": "Reservation in process"}


def test_seat_not_replicated_is_503(replicated, seat_app, pair):
    with pair.replica_stopped(), timed(TIMEOUT + 2):
        response = seat_app.get("/reserve_seat")
    assert response.status_code == 503
    assert response.json == {"status": "Service Unavailable", "reason": NOT_CONFIRMED}


# --- the seat job's take ----------------------------------------------------------------

@pytest.fixture
def seat_rq(pair, master) -> Iterator[redis.Redis]:
    """The seat worker's client (bytes, as RQ needs), on a master with a sale of 50 open."""
    Sale(master).join(renew=False)
    rq = connection.seat_worker_client(pair.master.url)
    yield rq
    rq.close()


def queue_seat(rq: redis.Redis, master: redis.Redis) -> str:
    return seats.queue_reservation(rq, seats.open_sale(master))


def run_seat_worker(rq: redis.Redis, jobs_to_run: int = 1) -> None:
    """The seat server's worker, here, for ``jobs_to_run`` runs of a job (a job put back
    and run again counts twice)."""
    seat_worker.SeatWorker([RESERVE_SEAT_QUEUE], connection=rq, serializer=JSONSerializer).work(
        burst=True, max_jobs=jobs_to_run, logging_level="WARNING")


def seat_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("Seat reservation job ")]


def queued_seat_jobs(master: redis.Redis) -> list[str]:
    return master.lrange(f"rq:queue:{RESERVE_SEAT_QUEUE}", 0, -1)


def test_a_seat_taken_without_the_replica_is_not_completed(replicated, pair, master, seat_rq,
                                                           capsys):
    """The take is on the master only: a failover could lose it while the job says the seat
    is sold, and the seat would be sold again. The job goes back to its queue instead, and
    its next run completes it without taking a second seat."""
    job_id = queue_seat(seat_rq, master)
    with pair.replica_stopped():
        run_seat_worker(seat_rq)
    assert seat_lines(capsys.readouterr().out) == []  # neither completed nor failed
    assert queued_seat_jobs(master) == [job_id]
    assert Job.fetch(job_id, connection=seat_rq).get_status() == "queued"
    assert master.get(AVAILABLE_SEATS_KEY) == "49"  # taken, not confirmed
    pair.wait_for_sync(master)
    run_seat_worker(seat_rq)
    assert seat_lines(capsys.readouterr().out) == [f"Seat reservation job {job_id} completed"]
    assert master.get(AVAILABLE_SEATS_KEY) == "49"
    assert queued_seat_jobs(master) == []


def test_a_refusal_without_the_replica_is_not_final(replicated, pair, master, seat_rq, capsys):
    """"Not enough seats available" read on a master whose last takes the replica lacks
    may be undone by a failover: the job runs again rather than fail for good."""
    seats.reserve_seat(master, 0)
    job_id = queue_seat(seat_rq, master)
    with pair.replica_stopped():
        run_seat_worker(seat_rq)
    assert seat_lines(capsys.readouterr().out) == []
    assert queued_seat_jobs(master) == [job_id]
    pair.wait_for_sync(master)
    run_seat_worker(seat_rq)
    assert seat_lines(capsys.readouterr().out) == [
        f"Seat reservation job {job_id} failed: {seats.NOT_ENOUGH_SEATS}"]


def test_a_take_a_failover_lost_is_taken_again(replicated, pair, master, seat_rq, monkeypatch,
                                               capsys):
    """The take vanished before its confirmation (a failover to a replica that never had
    it): the confirmation finds the job's record missing, and the next run takes the seat
    again, once."""
    confirm = replication.confirm
    lost: list[str] = []

    def losing_the_take_once(client, *args, **kwargs):
        if not lost:
            lost.append(job_id)
            master.srem(SEAT_JOBS_KEY, job_id)
            master.incr(AVAILABLE_SEATS_KEY)
        return confirm(client, *args, **kwargs)

    monkeypatch.setattr(replication, "confirm", losing_the_take_once)
    job_id = queue_seat(seat_rq, master)
    run_seat_worker(seat_rq)
    assert lost == [job_id]
    assert seat_lines(capsys.readouterr().out) == []
    assert master.get(AVAILABLE_SEATS_KEY) == "50"
    run_seat_worker(seat_rq)
    assert seat_lines(capsys.readouterr().out) == [f"Seat reservation job {job_id} completed"]
    assert master.get(AVAILABLE_SEATS_KEY) == "49"
    assert master.smembers(SEAT_JOBS_KEY) == {job_id}


# --- the default mode -----------------------------------------------------------------------

def test_the_default_mode_sends_no_wait(monkeypatch, pair, master, stock_app, seat_app, batch):
    monkeypatch.delenv(settings.MIN_REPLICAS_ENV, raising=False)
    seat_worker_rq = connection.seat_worker_client(pair.master.url)
    monitor_client = redis.Redis.from_url(pair.master.url, socket_timeout=5)
    with monitor_client.monitor() as monitor:
        assert create_jobs(batch, 2).count("created") == 2
        batch.add("builtins.len", "abc", job_id="plain-1")
        assert stock_app.get("/reserve_product/1").json["status"] == "Reservation confirmed"
        assert seat_app.get("/reserve_seat").json["status"] == "Reservation in process"
        run_seat_worker(seat_worker_rq)  # the seat's take: no confirmation either
        master.echo("end")
        seen = commands_until_end(monitor)
    monitor_client.close()
    seat_worker_rq.close()
    names = {command["command"].split()[0] for command in seen}
    assert {"EVALSHA", "EVAL"} & names  # the writes were seen
    assert any(SEAT_JOBS_KEY in command["command"] for command in seen)  # the seat taken
    assert not {"WAIT", "PUBLISH"} & names


# --- settings ---------------------------------------------------------------------------------

def test_a_timeout_the_client_would_not_wait_for_is_refused_at_start(monkeypatch):
    monkeypatch.setenv(settings.MIN_REPLICAS_ENV, "1")
    monkeypatch.setenv(settings.MIN_REPLICAS_TIMEOUT_ENV, "5")
    client = connection.server_client("redis://127.0.0.1:1")  # never connects
    with pytest.raises(settings.ConfigError, match=r"REDIS_MIN_REPLICAS_TIMEOUT must be "
                       r"shorter than the Redis client's socket timeout \(5 s\), not 5"):
        stock.create_app(client)
    rq = connection.rq_client("redis://127.0.0.1:1", socket_timeout=LISTEN_SOCKET_TIMEOUT)
    JobBatch(jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, rq))  # the creators wait 15 s
    monkeypatch.setenv(settings.MIN_REPLICAS_ENV, "0")
    stock.create_app(client)  # no replicas asked: no wait to bound


def test_a_bad_replica_count_is_refused_at_start(monkeypatch):
    monkeypatch.setenv(settings.MIN_REPLICAS_ENV, "one")
    with pytest.raises(settings.ConfigError, match="REDIS_MIN_REPLICAS"):
        stock.create_app(connection.server_client("redis://127.0.0.1:1"))
