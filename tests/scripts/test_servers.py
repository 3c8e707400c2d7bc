"""Tasks 12 and 13 served as a learner and as production serve them, on a real redis-server:
the course's transcripts, no oversell under load from threads and processes, Redis outages."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections import Counter

import pytest
import redis

from tests.servers import Server, children, hammer, wait_for_lines

SEAT_LINE = "Seat reservation job "
COMPLETED = "Seat reservation job {} completed"
FAILED = "Seat reservation job {} failed: Not enough seats available"
REDIS_DOWN = b'{"status":"Service Unavailable","reason":"Redis is not reachable"}'
IN_PROCESS = b'{"status":"Reservation in process"}'
BLOCKED = b'{"status":"Reservation are blocked"}'


def start(running, server: Server) -> Server:
    running.append(server)
    return server


def stock_fleet(running, redis_url: str, kind: str) -> list[Server]:
    """Three processes sharing one Redis: separate scripts, or three granian workers."""
    if kind == "granian":
        return [start(running, Server.granian("queuing.stock:create_app", redis_url, workers=3))]
    return [start(running, Server.script("9_stock", redis_url)) for _ in range(3)]


def test_stock_as_in_the_course(redis_url, running):
    server = start(running, Server.script("9_stock", redis_url))
    assert server.get("/list_products") == (200, "application/json", (
        b'[{"itemId":1,"itemName":"Suitcase 250","price":50,"initialAvailableQuantity":4},'
        b'{"itemId":2,"itemName":"Suitcase 450","price":100,"initialAvailableQuantity":10},'
        b'{"itemId":3,"itemName":"Suitcase 650","price":350,"initialAvailableQuantity":2},'
        b'{"itemId":4,"itemName":"Suitcase 1050","price":550,"initialAvailableQuantity":5}]'))
    assert server.get("/list_products/1")[2] == (
        b'{"itemId":1,"itemName":"Suitcase 250","price":50,"initialAvailableQuantity":4,'
        b'"currentQuantity":4}')
    for path in ("/list_products/12", "/reserve_product/12"):
        assert server.get(path) == (404, "application/json", b'{"status":"Product not found"}')
    assert [server.get("/reserve_product/1")[2] for _ in range(5)] == [
        b'{"status":"Reservation confirmed","itemId":1}'] * 4 + [
        b'{"status":"Not enough stock available","itemId":1}']
    assert server.interrupt() in (0, 130)
    assert "Traceback" not in server.stderr


@pytest.mark.parametrize("kind", ["scripts", "granian"])
def test_stock_is_never_oversold(redis_url, real_redis, running, kind):
    servers = stock_fleet(running, redis_url, kind)
    ports = itertools.cycle(server.port for server in servers)
    urls = [f"http://127.0.0.1:{next(ports)}/reserve_product/{item}"
            for _ in range(100) for item in (2, 4)]
    answers = Counter(hammer(urls, threads=48))
    assert answers == {
        b'{"status":"Reservation confirmed","itemId":2}': 10,
        b'{"status":"Not enough stock available","itemId":2}': 90,
        b'{"status":"Reservation confirmed","itemId":4}': 5,
        b'{"status":"Not enough stock available","itemId":4}': 95,
    }
    assert (real_redis.get("item.2"), real_redis.get("item.4")) == ("0", "0")


def serve(kind: str, name: str, redis_url: str) -> Server:
    """``python <name>.py``, or the production command with two workers."""
    if kind == "granian":
        return Server.granian(f"queuing.{'stock' if name == '9_stock' else 'seats'}:create_app",
                              redis_url, workers=2)
    return Server.script(name, redis_url)


@pytest.mark.parametrize("kind", ["script", "granian"])
def test_stock_answers_503_while_redis_is_down_then_serves_again(redis_server, running, kind):
    redis_server.start()
    server = start(running, serve(kind, "9_stock", redis_server.url))
    assert server.get("/reserve_product/1")[0] == 200
    redis.Redis(port=redis_server.port).save()  # a Redis that keeps its data on disk
    redis_server.stop()
    for path in ("/list_products/1", "/reserve_product/1") * 4:  # reach every worker
        assert server.get(path) == (503, "application/json", REDIS_DOWN)
    redis_server.start()
    for _ in range(4):
        assert json.loads(server.get("/list_products/1")[2])["currentQuantity"] == 3
    assert server.get("/reserve_product/1")[2] == b'{"status":"Reservation confirmed","itemId":1}'
    assert "Traceback" not in server.stderr


def test_seats_as_in_the_course(redis_url, running):
    server = start(running, Server.script("100_seat", redis_url))
    assert server.get("/available_seats") == (200, "application/json",
                                              b'{"numberOfAvailableSeats":"50"}')
    assert server.get("/reserve_seat")[2] == IN_PROCESS
    assert server.get("/process")[2] == b'{"status":"Queue processing"}'
    server.wait_for(COMPLETED.format(1))
    assert server.get("/available_seats")[2] == b'{"numberOfAvailableSeats":"49"}'
    answers = []
    for job_id in range(2, 52):  # the course's loop, each job done before the next request
        answers.append(server.get("/reserve_seat")[2])
        if answers[-1] == IN_PROCESS:
            server.wait_for(COMPLETED.format(job_id))
    assert answers == [IN_PROCESS] * 49 + [BLOCKED]
    assert server.interrupt() in (0, 130)
    assert [line for line in server.lines if line.startswith(SEAT_LINE)] == [
        COMPLETED.format(n) for n in range(1, 51)]
    assert "Traceback" not in server.stderr


def sell_out(servers: list[Server], real_redis: redis.Redis, requests: int = 200) -> None:
    """Hammer /reserve_seat and /process across the servers; exactly 50 jobs complete,
    every job is reported once, by one process, and reservations end blocked."""
    ports = itertools.cycle(server.port for server in servers)
    urls = [f"http://127.0.0.1:{next(ports)}/{'process' if n % 20 == 0 else 'reserve_seat'}"
            for n in range(requests)]
    answers = Counter(hammer(urls, threads=48))
    jobs = int(real_redis.get("queuing:job_id"))  # ids 1..jobs, this sale's and earlier ones
    assert answers[IN_PROCESS] + answers[BLOCKED] + answers[b'{"status":"Queue processing"}'] \
        == requests
    lines = wait_for_lines(servers, SEAT_LINE, jobs)
    assert len(lines) == jobs
    completed = sorted(int(line.split()[3]) for line in lines if line.endswith(" completed"))
    failed = sorted(int(line.split()[3]) for line in lines
                    if line == FAILED.format(line.split()[3]))
    assert len(completed) == 50
    assert sorted(completed + failed) == list(range(1, jobs + 1))
    assert real_redis.get("available_seats") == "0"
    assert real_redis.get("reservation_enabled") == "0"
    for server in servers:
        assert server.get("/reserve_seat")[2] == BLOCKED
        assert server.get("/available_seats")[2] == b'{"numberOfAvailableSeats":"0"}'


def test_seats_second_and_third_processes_join_the_sale(redis_url, real_redis, running):
    first = start(running, Server.script("100_seat", redis_url))
    first.get("/reserve_seat")
    first.get("/process")
    first.wait_for(COMPLETED.format(1))
    others = [start(running, Server.script("100_seat", redis_url)) for _ in range(2)]
    for server in others:
        assert server.get("/available_seats")[2] == b'{"numberOfAvailableSeats":"49"}'
    sell_out([first, *others], real_redis)
    for server in (first, *others):
        assert server.interrupt() in (0, 130)
        assert "Traceback" not in server.stderr
    assert real_redis.zcard("seat_servers") == 0  # each gave its lease back
    fresh = start(running, Server.script("100_seat", redis_url))
    assert fresh.get("/available_seats")[2] == b'{"numberOfAvailableSeats":"50"}'
    assert fresh.get("/reserve_seat")[2] == IN_PROCESS


def test_seats_under_granian_sell_exactly_50(redis_url, real_redis, running):
    server = start(running, Server.granian("queuing.seats:create_app", redis_url, workers=3))
    assert server.get("/available_seats")[2] == b'{"numberOfAvailableSeats":"50"}'
    sell_out([server], real_redis, requests=300)
    assert server.interrupt() in (0, 130)
    assert "Traceback" not in server.stderr


@pytest.mark.parametrize("kind", ["script", "granian"])
def test_seats_503_while_redis_is_down_then_processing_resumes(redis_server, running, kind):
    redis_server.start()
    server = start(running, serve(kind, "100_seat", redis_server.url))
    server.get("/process")
    assert server.get("/reserve_seat")[2] == IN_PROCESS
    server.wait_for(COMPLETED.format(1))
    redis.Redis(port=redis_server.port).save()
    redis_server.stop()
    for _ in range(4):  # reach every worker
        assert server.get("/available_seats") == (503, "application/json", REDIS_DOWN)
        assert server.get("/reserve_seat") == (503, "application/json",
                                               b'{"status":"Reservation failed"}')
    redis_server.start()
    for _ in range(4):
        assert server.get("/available_seats")[2] == b'{"numberOfAvailableSeats":"49"}'
    assert server.get("/reserve_seat")[2] == IN_PROCESS
    server.wait_for(COMPLETED.format(2), timeout=30)
    assert server.get("/available_seats")[2] == b'{"numberOfAvailableSeats":"48"}'


@pytest.mark.parametrize(("factory", "path", "down_then_up"), [
    ("queuing.seats:create_app", "/available_seats", b'{"numberOfAvailableSeats":"50"}'),
    ("queuing.stock:create_app", "/list_products/4", b'"currentQuantity":5}'),
    ("queuing.webapp:create_app", "/tokens?id=unknown", b'{"status":"Token not found"}'),
], ids=["seats", "stock", "webapp"])
def test_granian_workers_started_while_redis_is_down_serve_503_then_recover(
        redis_server, running, factory, path, down_then_up):
    """A worker that starts while Redis is down (a slow start, or granian respawning one
    during an outage) must not die: granian would start it again, it would die again, and
    granian stops the whole server on such a crash loop."""
    server = start(running, Server.granian(factory, redis_server.url, workers=2))
    started = set()
    while len(started) < 2:
        line = server.read_line(timeout=30)
        assert line is not None and "crash loop" not in line, (server.lines, server.stderr)
        if line.startswith("[INFO] Started worker-"):
            started.add(line)
    for _ in range(4):  # reach both workers
        assert server.get(path) == (503, "application/json", REDIS_DOWN)
    redis_server.start()
    deadline = time.monotonic() + 30
    while down_then_up not in server.get(path)[2]:
        assert time.monotonic() < deadline, server.get(path)
        time.sleep(0.1)
    for _ in range(4):
        assert down_then_up in server.get(path)[2]
    assert "Traceback" not in server.stderr, server.stderr


def wait_for_leases(real_redis: redis.Redis, count: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while (leases := real_redis.zcard("seat_servers")) != count and time.monotonic() < deadline:
        time.sleep(0.05)
    return leases


def test_granian_workers_join_a_live_sale_respawn_and_give_their_leases_back(
        redis_url, real_redis, running):
    """Each granian worker process holds its own lease: it joins the live sale (never resets
    it), a worker killed and respawned joins it too, and a stop gives the leases back."""
    first = start(running, Server.script("100_seat", redis_url))
    first.get("/reserve_seat")
    first.get("/process")
    first.wait_for(COMPLETED.format(1))
    server = start(running, Server.granian("queuing.seats:create_app", redis_url, workers=3))
    assert wait_for_leases(real_redis, 1 + 3) == 4
    for _ in range(12):  # spread over the workers
        assert server.get("/available_seats")[2] == b'{"numberOfAvailableSeats":"49"}'

    worker = children(server.process.pid)[0]
    os.kill(worker, signal.SIGKILL)  # its lease stays until it expires; its successor joins
    assert wait_for_leases(real_redis, 1 + 3 + 1) == 5
    assert worker not in children(server.process.pid)
    for _ in range(12):
        assert server.get("/available_seats")[2] == b'{"numberOfAvailableSeats":"49"}'

    server.process.send_signal(signal.SIGTERM)  # systemd's, docker's stop
    assert server.finish() == 0
    assert "Traceback" not in server.stderr
    assert real_redis.zcard("seat_servers") == 1 + 1  # the script's, and the killed worker's
    first.kill()
    real_redis.delete("seat_servers")  # as if 15 s had passed: the two leases expired
    fresh = start(running, Server.granian("queuing.seats:create_app", redis_url, workers=2))
    assert fresh.get("/available_seats")[2] == b'{"numberOfAvailableSeats":"50"}'
    assert wait_for_leases(real_redis, 2) == 2
    assert fresh.interrupt() in (0, 130)  # Ctrl-C
    assert real_redis.zcard("seat_servers") == 0
    assert "Traceback" not in fresh.stderr
