"""Task 13 on fakeredis: routes and bodies byte for byte, the job, the sale, one worker."""

import threading
import time

import fakeredis
import pytest
import redis
from rq.serializers import JSONSerializer

from queuing import seat_sale, seat_worker, seats
from queuing.constants import AVAILABLE_SEATS_KEY, SEAT_SERVERS_KEY
from queuing.seat_sale import Sale

IN_PROCESS = b'{"status":"Reservation in process"}'
BLOCKED = b'{"status":"Reservation are blocked"}'


class CountingProcessor:
    def __init__(self) -> None:
        self.starts = 0

    def start(self) -> bool:
        self.starts += 1
        return self.starts == 1

    def stop(self) -> bool:
        return True


@pytest.fixture
def rq_redis(fake_server):
    return fakeredis.FakeRedis(server=fake_server)  # bytes, as RQ needs


@pytest.fixture
def processor():
    return CountingProcessor()


@pytest.fixture
def app(fake_redis, rq_redis, processor):
    app = seats.create_app(fake_redis, rq_redis, processor=processor)
    yield app
    app.extensions["seat_sale"].leave()


@pytest.fixture
def client(app):
    return app.test_client()


def run_worker(rq_redis) -> None:
    """Process every queued job, as /process does, but in this thread and until empty."""
    seat_worker.SeatWorker(["reserve_seat"], connection=rq_redis,
                           serializer=JSONSerializer).work(burst=True, logging_level="WARNING")


@pytest.mark.parametrize(("path", "body"), [
    ("/available_seats", b'{"numberOfAvailableSeats":"50"}'),
    ("/reserve_seat", IN_PROCESS),
    ("/process", b'{"status":"Queue processing"}'),
])
def test_course_bodies(client, path, body):
    response = client.get(path)
    assert (response.status_code, response.data) == (200, body)
    assert response.headers["Content-Type"] == "application/json"


def test_the_course_session(client, rq_redis, capsys):
    assert client.get("/reserve_seat").data == IN_PROCESS
    assert client.get("/available_seats").data == b'{"numberOfAvailableSeats":"50"}'
    run_worker(rq_redis)
    assert client.get("/available_seats").data == b'{"numberOfAvailableSeats":"49"}'
    assert capsys.readouterr().out == "Seat reservation job 1 completed\n"


def test_exactly_50_jobs_complete_and_the_rest_fail(client, fake_redis, rq_redis, capsys):
    assert [client.get("/reserve_seat").data for _ in range(53)] == [IN_PROCESS] * 53
    run_worker(rq_redis)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ([f"Seat reservation job {n} completed" for n in range(1, 51)]
                     + [f"Seat reservation job {n} failed: Not enough seats available"
                        for n in range(51, 54)])
    assert client.get("/available_seats").data == b'{"numberOfAvailableSeats":"0"}'
    assert fake_redis.get("reservation_enabled") == "0"
    assert client.get("/reserve_seat").data == BLOCKED
    assert fake_redis.llen("rq:queue:reserve_seat") == 0


def test_jobs_are_json_with_kue_like_ids(client, rq_redis):
    client.get("/reserve_seat")
    client.get("/reserve_seat")
    assert rq_redis.lrange("rq:queue:reserve_seat", 0, -1) == [b"1", b"2"]


def test_every_process_call_asks_the_processor_to_start(client, processor):
    for _ in range(3):
        assert client.get("/process").data == b'{"status":"Queue processing"}'
    assert processor.starts == 3  # WorkerThread.start itself starts one thread, once


def test_processor_starts_one_thread_however_many_calls(rq_redis, monkeypatch):
    runs = []
    release = threading.Event()
    monkeypatch.setattr(seat_worker.WorkerThread, "_run", lambda self: (runs.append(1),
                                                                     release.wait(10)))
    processor = seat_worker.WorkerThread(rq_redis)
    results = []
    threads = [threading.Thread(target=lambda: results.append(processor.start()))
               for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    release.set()
    processor._thread.join(10)
    assert sorted(results) == [False] * 19 + [True]
    assert runs == [1]


def test_nothing_is_processed_before_process(client, fake_redis, rq_redis):
    client.get("/reserve_seat")
    assert fake_redis.llen("rq:queue:reserve_seat") == 1
    assert client.get("/available_seats").data == b'{"numberOfAvailableSeats":"50"}'


def test_reserve_seat_when_queuing_fails(fake_redis, processor):
    down = fakeredis.FakeServer()
    down.connected = False
    app = seats.create_app(fake_redis, fakeredis.FakeRedis(server=down), processor=processor)
    response = app.test_client().get("/reserve_seat")
    assert (response.status_code, response.data) == (503, b'{"status":"Reservation failed"}')
    assert response.headers["Content-Type"] == "application/json"
    app.extensions["seat_sale"].leave()


def test_redis_down_is_json_503_then_service_resumes(client, fake_server):
    fake_server.connected = False
    response = client.get("/available_seats")
    assert response.status_code == 503
    assert response.data == b'{"status":"Service Unavailable","reason":"Redis is not reachable"}'
    assert client.get("/reserve_seat").data == b'{"status":"Reservation failed"}'
    fake_server.connected = True
    assert client.get("/available_seats").data == b'{"numberOfAvailableSeats":"50"}'
    assert client.get("/reserve_seat").data == IN_PROCESS


@pytest.mark.parametrize(("method", "path", "status", "body"), [
    ("get", "/nope", 404, b'{"status":"Not Found"}'),
    ("post", "/reserve_seat", 405, b'{"status":"Method Not Allowed"}'),
    ("delete", "/available_seats", 405, b'{"status":"Method Not Allowed"}'),
])
def test_errors_are_json(client, method, path, status, body):
    response = getattr(client, method)(path)
    assert (response.status_code, response.data) == (status, body)
    assert response.headers["Content-Type"] == "application/json"


def test_a_second_server_joins_the_sale_instead_of_resetting_it(fake_redis):
    first = Sale(fake_redis)
    assert first.join(renew=False) is True
    fake_redis.set("available_seats", 7)
    second = Sale(fake_redis)
    assert second.join(renew=False) is False
    assert fake_redis.get("available_seats") == "7"
    first.leave()
    second.leave()
    assert Sale(fake_redis).join(renew=False) is True
    assert (fake_redis.get("available_seats"), fake_redis.get("reservation_enabled")) == ("50", "1")


def test_a_dead_servers_lease_does_not_keep_the_old_sale(fake_redis):
    Sale(fake_redis).join(renew=False)  # never leaves, as after kill -9
    fake_redis.set("available_seats", 0)
    fake_redis.zadd("seat_servers", {member: 0 for member in fake_redis.zrange(
        "seat_servers", 0, -1)})  # its lease has run out
    assert Sale(fake_redis).join(renew=False) is True
    assert fake_redis.get("available_seats") == "50"


def test_a_reservation_of_an_old_sale_takes_no_seat_of_a_new_one(client, fake_redis, rq_redis,
                                                                  capsys):
    """Every server of a sale died (kill -9) with reservations still queued; a server
    started later opens a new sale of 50: the old reservations fail, they take none."""
    assert client.get("/reserve_seat").data == IN_PROCESS
    fake_redis.delete("seat_servers")  # the old servers' leases have run out
    assert Sale(fake_redis).join(renew=False) is True
    run_worker(rq_redis)
    assert fake_redis.get("available_seats") == "50"
    assert capsys.readouterr().out.splitlines()[-1].endswith(f"failed: {seats.SALE_ENDED}")
    client.get("/reserve_seat")  # a reservation of the new sale takes its seat
    run_worker(rq_redis)
    assert fake_redis.get("available_seats") == "49"


def test_a_take_that_meets_redis_away_runs_again_instead_of_failing(client, fake_redis,
                                                                    rq_redis, monkeypatch,
                                                                    capsys):
    """Redis went away (a restart, a failover) as the job took its seat: whether the take
    happened is unknown, and the reservation has not failed. The job goes back to its queue
    and runs again once Redis answers (taking its seat only if the first run did not)."""
    assert client.get("/reserve_seat").data == IN_PROCESS
    monkeypatch.setattr(rq_redis, "eval", _fails_once(rq_redis.eval))
    run_worker(rq_redis)
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "Seat reservation job 1 completed", out
    assert not any("failed" in line for line in out), out
    assert fake_redis.get("available_seats") == "49"


def test_a_job_taken_back_while_its_worker_hands_it_back_is_not_queued_twice(
        client, rq_redis, monkeypatch):
    """The worker hands back a job whose take met Redis away. Should recovery take it back
    meanwhile (the worker taken for dead) and another worker start it, the hand-back must
    not queue it again: it would run twice at once."""
    from queuing import recovery

    assert client.get("/reserve_seat").data == IN_PROCESS
    monkeypatch.setattr(rq_redis, "eval", _fails_once(rq_redis.eval))
    started = "rq:wip:reserve_seat"
    hand_back = recovery.put_back
    queued_after_hand_back = []

    def taken_back_and_started_elsewhere_meanwhile(queue, job, pipe):
        if not queued_after_hand_back:  # only the first hand-back meets the race
            # Recovery takes the job back (RQ's enqueue_job writes its hash)...
            rq_redis.delete(started)
            rq_redis.hset(job.key, "status", "queued")
            # ...and another worker starts it.
            rq_redis.hset(job.key, mapping={"status": "started", "worker_name": "another"})
            rq_redis.zadd(started, {f"{job.id}:another-workers-execution": time.time() + 60})
        hand_back(queue, job, pipe)

    def worker_hands_back(self, *args):
        type(self).put_back(self, *args)
        queued_after_hand_back.append(rq_redis.lrange("rq:queue:reserve_seat", 0, -1))

    monkeypatch.setattr(recovery, "put_back", taken_back_and_started_elsewhere_meanwhile)
    worker = seat_worker.SeatWorker(["reserve_seat"], connection=rq_redis,
                                    serializer=JSONSerializer)
    monkeypatch.setattr(worker, "put_back", worker_hands_back.__get__(worker))
    worker.work(burst=True, logging_level="WARNING")
    assert queued_after_hand_back == [[]]
    assert rq_redis.zrange(started, 0, -1) == [b"1:another-workers-execution"]


@pytest.mark.parametrize(("success", "failure"), [
    ("queuing.seats.job_completed", "queuing.seats.job_failed"),
    ("seats.job_completed", "seats.job_failed"),
])
def test_seat_jobs_queued_with_the_former_callback_names_still_run(
        client, fake_redis, rq_redis, capsys, success, failure):
    """The callbacks were renamed seat_taken and seat_refused (job_events has its own
    job_completed and job_failed): a job queued before carries the old names."""
    from rq import Callback

    from queuing import jobs

    queue = jobs.json_queue("reserve_seat", rq_redis)
    sale = seats.open_sale(fake_redis)
    for job_id in ("1", "2"):
        queue.enqueue("queuing.seats.take_seat", sale, job_id=job_id,
                      on_success=Callback(success), on_failure=Callback(failure))
    seats.reserve_seat(fake_redis, 1)
    run_worker(rq_redis)
    assert capsys.readouterr().out.splitlines() == [
        "Seat reservation job 1 completed",
        f"Seat reservation job 2 failed: {seats.NOT_ENOUGH_SEATS}"]


def test_a_server_that_started_during_an_outage_joins_the_sale_it_finds(fake_redis, monkeypatch):
    """Its fellow workers' leases may have lapsed during the outage: starting a new sale
    then would sell their seats again. It joins the sale in Redis instead."""
    Sale(fake_redis).join(renew=False)
    fake_redis.set(AVAILABLE_SEATS_KEY, 47)
    fake_redis.delete(SEAT_SERVERS_KEY)  # every lease lapsed while Redis was away
    monkeypatch.setattr(fake_redis, "eval", _fails_once(fake_redis.eval))
    monkeypatch.setattr(seat_sale, "JOIN_RETRY_SECONDS", 0.01)
    sale = Sale(fake_redis)
    sale.join_now_or_later()  # does not raise: the server starts and answers 503
    try:
        deadline = time.monotonic() + 30
        while fake_redis.zcard(SEAT_SERVERS_KEY) == 0:
            assert time.monotonic() < deadline, "the late join"
            time.sleep(0.01)
        assert fake_redis.get(AVAILABLE_SEATS_KEY) == "47"
    finally:
        sale.leave()


def test_a_late_joiner_starts_the_sale_when_there_was_none(fake_redis, monkeypatch):
    monkeypatch.setattr(fake_redis, "eval", _fails_once(fake_redis.eval))
    monkeypatch.setattr(seat_sale, "JOIN_RETRY_SECONDS", 0.01)
    sale = Sale(fake_redis)
    sale.join_now_or_later()
    try:
        deadline = time.monotonic() + 30
        while fake_redis.get(AVAILABLE_SEATS_KEY) is None:
            assert time.monotonic() < deadline, "the late start"
            time.sleep(0.01)
        assert fake_redis.get(AVAILABLE_SEATS_KEY) == "50"
    finally:
        sale.leave()


def _fails_once(call):
    failures = [redis.ConnectionError("Redis is down")]

    def wrapped(*args):
        if failures:
            raise failures.pop()
        return call(*args)

    return wrapped
