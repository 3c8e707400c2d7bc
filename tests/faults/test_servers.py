"""The servers against an adversary: a stalled Redis, Redis losing its data,
a burst of concurrent requests, HEAD requests, malformed HTTP, hostile seat jobs, a
restart after a kill. Every test uses redis-servers of its own (loopback only)."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from queuing import jobs, stock
from queuing.connection import rq_client, server_client
from queuing.constants import RESERVE_SEAT_QUEUE
from tests.servers import Server, http_get, wait_for_lines

ROOT = Path(__file__).resolve().parents[2]
CONFIRMED = b'{"status":"Reservation confirmed","itemId":2}'
TOO_LATE = b'{"status":"Service Unavailable","reason":"Redis did not answer in time"}'
STOCK_GONE = (b'{"status":"Service Unavailable",'
              b'"reason":"The stock is not in Redis (Redis lost its data?)"}')


def eval_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))


class _LastRetry(ExponentialBackoff):
    """redis-py's backoff, which sets :data:`LAST_RETRIES` once every request has begun
    its last retry (redis-py copies a Retry per connection, so the count is global)."""

    requests = 0
    count = 0
    lock = threading.Lock()

    def compute(self, failures: int) -> float:
        with _LastRetry.lock:
            _LastRetry.count += failures == 2
            if _LastRetry.count >= _LastRetry.requests:
                LAST_RETRIES.set()
        return super().compute(failures)


LAST_RETRIES = threading.Event()


def test_a_redis_stall_takes_no_unit_it_does_not_confirm(redis_server):
    """Item 6: Redis stands still (SIGSTOP) under 3 reservations; the app's client times
    out (0.5 s here, 5 s in production) and sends each again, twice. Redis resumes while
    the last tries wait, and runs the first and the last of each. Before: 3 confirmations
    for 6 units; now nothing is taken after the deadline, and the 503s took nothing."""
    redis_server.start()
    observer = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client = server_client(redis_server.url, socket_timeout=0.5)
    client.connection_pool.connection_kwargs["retry"] = Retry(
        _LastRetry(cap=0.1, base=0.02), 2)
    _LastRetry.requests, _LastRetry.count = 3, 0
    LAST_RETRIES.clear()
    app = stock.create_app(client).test_client()
    warm = [client.connection_pool.get_connection() for _ in range(3)]  # sent at once
    for connection in warm:
        client.connection_pool.release(connection)
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(app.get, "/reserve_product/2") for _ in range(3)]
            assert LAST_RETRIES.wait(30)
            os.kill(redis_server.process.pid, signal.SIGCONT)
            answers = [future.result(timeout=60) for future in futures]
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    for _ in range(200):  # until Redis has run what it got while it stood still
        if eval_calls(observer) >= 6:
            break
        threading.Event().wait(0.05)
    confirmed = sum(answer.data == CONFIRMED for answer in answers)
    units = 10 - int(observer.get("item.2"))
    print(f"stall: runs {eval_calls(observer)}, answers "
          f"{Counter(answer.data for answer in answers)}, units taken {units}")
    assert units == confirmed
    assert {answer.data for answer in answers} <= {CONFIRMED, TOO_LATE}
    assert app.get("/reserve_product/2").data == CONFIRMED
    assert int(observer.get("item.2")) == 10 - units - 1
    observer.close()


def start(running, server: Server) -> Server:
    running.append(server)
    return server


def test_stock_lost_by_redis_is_not_sold_again(redis_server, running):
    """Item 7: Redis restarts without persistence after the 4 units of item 1 were sold.
    Before: the missing key read as full stock, and 4 more were confirmed (8 of 4)."""
    redis_server.start()
    server = start(running, Server.script("9_stock", redis_server.url))
    sold = [server.get("/reserve_product/1")[2] for _ in range(5)]
    assert sold.count(b'{"status":"Reservation confirmed","itemId":1}') == 4
    redis_server.stop()
    redis_server.start()  # this one keeps nothing: the data is gone
    after = [server.get(path) for path in ["/reserve_product/1"] * 4 + ["/list_products/1"]]
    print(f"data loss: after the restart {Counter(status for status, _, _ in after)}")
    assert {(status, body) for status, _, body in after} == {(503, STOCK_GONE)}


def test_a_burst_over_the_pool_size_gets_no_false_503(redis_server, running):
    """Item 8: 250 requests at once to one dev server, while Redis holds every answer for
    a moment (CLIENT PAUSE), need more connections than the pool's 100. Before: the
    requests beyond 100 got 503 "Redis is not reachable" at once; now they wait."""
    redis_server.start()
    server = start(running, Server.script("9_stock", redis_server.url))
    assert server.get("/list_products/1")[0] == 200
    admin = redis.Redis.from_url(redis_server.url)
    requests = 250
    ready = threading.Barrier(requests + 1)

    def detail(_) -> int:
        ready.wait(30)
        return http_get(f"http://127.0.0.1:{server.port}/list_products/1")[0]

    with ThreadPoolExecutor(requests) as pool:
        answers = pool.map(detail, range(requests))
        admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        ready.wait(30)
        statuses = Counter(answers)
    admin.close()
    print(f"burst: {requests} concurrent requests, answers {statuses}")
    assert statuses == {200: requests}


def test_the_procfile_puts_no_redis_url_on_a_command_line():
    """Item 9: ``ps aux`` shows every argument, so the password of a REDIS_URL too."""
    procfile = (ROOT / "Procfile").read_text()
    for line in procfile.splitlines():
        _, _, command = line.partition(":")
        arguments = command.split()
        assert not any(argument.startswith(("--redis-url", "-u")) for argument in arguments)
        # Only in an environment assignment before the command, which ps does not show.
        assert all(argument.startswith("RQ_DASHBOARD_REDIS_URL=")
                   for argument in arguments if "REDIS_URL" in argument), line
    assert "RQ_DASHBOARD_REDIS_URL=${REDIS_URL" in procfile


def raw(port: int, request: bytes) -> tuple[int, bytes, bytes]:
    """Send ``request`` as it is; (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


def test_head_of_a_reserving_route_changes_nothing(redis_url, real_redis, running):
    """Item 10: Flask answered HEAD with the GET view: a HEAD reserved a unit, or queued a
    seat job. Now 405, Allow: GET, and nothing changes."""
    stock_server = start(running, Server.script("9_stock", redis_url))
    seat_server = start(running, Server.script("100_seat", redis_url))
    for server, path in ((stock_server, "/reserve_product/1"), (seat_server, "/reserve_seat"),
                         (seat_server, "/process")):
        status, head, body = raw(server.port, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n"
                                              "Connection: close\r\n\r\n".encode())
        assert (status, body) == (405, b""), head
        assert b"Allow: GET\r\n" in head and b"Content-Type: application/json" in head
    assert real_redis.get("item.1") == "4"
    assert real_redis.get("queuing:job_id") is None
    assert real_redis.keys("rq:worker*") == []


def test_the_dev_servers_own_errors_are_json(redis_url, running):
    """Item 10: what werkzeug's dev server answers before Flask sees the request."""
    server = start(running, Server.script("9_stock", redis_url))
    cases = {
        b"GET / HTTP/1.1 extra\r\n\r\n": 400,
        b"GET / HTTP/9.9\r\n\r\n": 505,
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n": 414,
        b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n": 431,
    }
    for request, code in cases.items():
        status, head, body = raw(server.port, request)
        assert status == code, head
        assert b"Content-Type: application/json" in head
        assert json.loads(body) == {"status": HTTPStatus(code).phrase}
    assert server.get("/list_products")[0] == 200


def test_hostile_and_malformed_seat_jobs_fail_with_one_line_and_the_sale_goes_on(
        redis_url, real_redis, running, tmp_path):
    """A job naming os.system (RQ's own JSON enqueue) and a job hash RQ cannot read, in
    the reserve_seat queue: each fails with the course's line, and the seat worker (which
    used to crash-loop on the second) goes on selling."""
    server = start(running, Server.script("100_seat", redis_url))
    connection = rq_client(redis_url)
    queue = jobs.json_queue(RESERVE_SEAT_QUEUE, connection)
    marker = tmp_path / "ran"
    hostile = queue.enqueue("os.system", f"touch {marker}")
    malformed = queue.create_job("queuing.seats.take_seat")
    malformed.save()
    connection.hset(malformed.key, "result_ttl", "abc")
    connection.rpush(queue.key, malformed.id)
    assert server.get("/process")[2] == b'{"status":"Queue processing"}'
    assert server.get("/reserve_seat")[2] == b'{"status":"Reservation in process"}'
    lines = wait_for_lines([server], "Seat reservation job ", 3, timeout=30)
    assert lines[-1] == "Seat reservation job 1 completed", lines
    assert [line for line in lines if hostile.id in line] == [
        f"Seat reservation job {hostile.id} failed: os.system is not one of this project's "
        "job functions"]
    assert [line for line in lines if malformed.id in line] == [
        f"Seat reservation job {malformed.id} failed: its job cannot be read "
        "(ValueError: invalid literal for int() with base 10: b'abc')"], lines
    assert not marker.exists()
    assert "Traceback" not in server.stderr
    assert server.get("/available_seats")[2] == b'{"numberOfAvailableSeats":"49"}'
    connection.close()
