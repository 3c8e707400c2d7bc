"""Every server stops on the first Ctrl-C (typed into its terminal) or SIGTERM, at any
moment from its launch on: within a few seconds, status 0, no traceback, and it leaves
nothing registered in Redis (no seat lease, no RQ worker of a stopped server)."""

from __future__ import annotations

import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from rq import Worker

from queuing.local_redis import free_port
from tests.processes import wait_until
from tests.servers import GRANIAN_OPTIONS
from tests.terminal import Terminal

TRIALS = 20
AT_ONCE = 5  # terminals running together
STOP_BOUND = 15.0  # seconds; granian's --workers-kill-timeout is 5
# Ctrl-C this long, less half a second, after the script's first line ran (granian: after
# it logs "Listening at"); None: once it serves (and, for seats, after /process). Not
# sooner: a signal while CPython itself starts (site, the encodings; over half a second
# on a loaded machine) or while granian's CLI imports ends it with a KeyboardInterrupt
# traceback or kills it, before any code of ours runs.
MOMENTS = [0.5, 0.7, 0.9, 1.1, 1.4, 1.7, 2.0, 2.5, 3.0, None]
COMMANDS = {
    "python 9_stock.py": ("9_stock", None),
    "python 100_seat.py": ("100_seat", None),
    "granian stock": ("granian", "queuing.stock:create_app"),
    "granian seats": ("granian", "queuing.seats:create_app"),
}


def launch(command: str, redis_url: str) -> tuple[Terminal, int]:
    name, factory = COMMANDS[command]
    port = free_port()
    argv = None
    if factory:
        argv = [sys.executable, "-m", "granian", *GRANIAN_OPTIONS, "--workers", "2",
                "--host", "127.0.0.1", "--port", str(port), factory]
    return Terminal(name, redis_url, argv=argv, PORT=str(port)), port


def get(port: str | int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        return b"".join(iter(lambda: conn.recv(65536), b""))


def wait_until_serving(terminal: Terminal, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if terminal.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"not serving; screen:\n{terminal.text}") from None
            time.sleep(0.02)


def trial(command: str, redis_url: str, number: int) -> float:
    """One launch and stop; how long the stop took."""
    moment = MOMENTS[number % len(MOMENTS)]
    terminal, port = launch(command, redis_url)
    try:
        if moment is None:
            wait_until_serving(terminal, port)
            if "seat" in command:
                get(port, "/reserve_seat")
                get(port, "/process")
        else:
            if COMMANDS[command][1]:  # granian: from its handlers on (see MOMENTS)
                terminal.wait_for("Listening at", timeout=30)
            else:  # a script: from its first line on (before it, Python's start-up)
                wait_until(lambda: terminal.catches(signal.SIGTERM), "the script started")
            time.sleep(moment - 0.5)
        started = time.monotonic()
        signum = signal.SIGTERM if number % 4 == 3 else signal.SIGINT
        if signum == signal.SIGTERM:
            terminal.process.send_signal(signum)  # systemd's, docker's stop
        else:
            terminal.ctrl_c()
        status = terminal.finish(STOP_BOUND)
        took = time.monotonic() - started
        # granian 2.8's own race on a Ctrl-C: a worker that ends on its SIGINT before the
        # main process handled its own is reported as a crash, and granian exits 1.
        granian_race = status == 1 and "Unexpected exit from worker" in terminal.text
        assert status == 0 or granian_race, \
            f"trial {number}: status {status}; screen:\n{terminal.text}"
        assert "Traceback" not in terminal.text, terminal.text
        return took
    finally:
        terminal.close()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_server_stops_at_once_on_the_first_signal(command, redis_url, real_redis):
    with ThreadPoolExecutor(AT_ONCE) as pool:
        took = list(pool.map(lambda n: trial(command, redis_url, n), range(TRIALS)))
    assert max(took) < STOP_BOUND
    assert real_redis.zcard("seat_servers") == 0  # every seat server gave its lease back
    assert Worker.all(connection=redis.Redis.from_url(redis_url)) == []


@pytest.mark.parametrize("command", ["python 100_seat.py", "granian seats"])
@pytest.mark.parametrize("stop", ["Ctrl-C", "SIGTERM"])
def test_a_stopped_seat_server_leaves_no_rq_worker(command, stop, redis_url, real_redis):
    terminal, port = launch(command, redis_url)
    rq_redis = redis.Redis.from_url(redis_url)
    try:
        wait_until_serving(terminal, port)
        get(port, "/reserve_seat")
        get(port, "/process")
        terminal.wait_for("Seat reservation job 1 completed")
        assert len(Worker.all(connection=rq_redis)) == 1
        if stop == "SIGTERM":
            terminal.process.send_signal(signal.SIGTERM)
        else:
            terminal.ctrl_c()
        status = terminal.finish(STOP_BOUND)
        # granian 2.8's own race on a Ctrl-C (see trial): exit 1, with that line.
        assert status == 0 or (status == 1 and "Unexpected exit from worker" in terminal.text), \
            terminal.text
        assert "Traceback" not in terminal.text
        assert Worker.all(connection=rq_redis) == []
        assert real_redis.zcard("seat_servers") == 0
    finally:
        terminal.close()
        rq_redis.close()
