"""The main job: a tour of the course, every task's script run as a learner runs it.

Each script runs as its own process against REDIS_URL, exactly as from a terminal;
two-terminal tasks run side by side with each line labelled by its terminal.
`./run demo` starts a throwaway redis-server loaded from dump.rdb for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import common
from queuing.constants import PUSH_NOTIFICATION_QUEUE_3
from queuing.local_redis import free_port

ROOT = Path(__file__).resolve().parent
STEP_TIMEOUT = 60


def heading(title: str) -> None:
    common.log(f"\n=== {title} ===")


def start(*argv: str, **env: str) -> subprocess.Popen:
    """``python SCRIPT ARGS...`` (or ``python -m MODULE ...``) as its own process.

    Its stderr is dropped: it holds the servers' access logs, not the course's lines.
    """
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, text=True,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def relay_in_background(process: subprocess.Popen, label: str) -> threading.Thread:
    thread = threading.Thread(target=relay, args=(process, label), daemon=True)
    thread.start()
    return thread


def stop(process: subprocess.Popen, relaying: threading.Thread) -> None:
    """Ctrl-C for a process that runs until stopped (a processor, a server)."""
    process.send_signal(signal.SIGINT)
    process.wait(timeout=STEP_TIMEOUT)
    relaying.join(timeout=STEP_TIMEOUT)


def relay(process: subprocess.Popen, label: str = "",
          until: str | None = None) -> threading.Thread | None:
    """Print the process's lines as they come, prefixed with ``label``.

    With ``until``, read in this thread up to that line and hand the rest to a
    background thread (returned), so a second terminal can start at the right moment.
    """
    prefix = f"{label} | " if label else ""
    for line in process.stdout:
        common.log(prefix + line.rstrip("\n"))
        if until is not None and line.rstrip("\n") == until:
            return relay_in_background(process, label)
    return None


def run_alone(script: str) -> None:
    process = start(script)
    relay(process)
    process.wait(timeout=STEP_TIMEOUT)


def run_pair(first: str, second: str, first_ready: str) -> None:
    """Terminal 1 runs ``first``; once it printed ``first_ready``, terminal 2 runs ``second``."""
    one = start(first)
    rest_of_one = relay(one, "terminal 1", until=first_ready)
    two = start(second)
    relay(two, "terminal 2")
    two.wait(timeout=STEP_TIMEOUT)
    one.wait(timeout=STEP_TIMEOUT)
    if rest_of_one:
        rest_of_one.join()


def task_0() -> None:
    heading("Task 0: the key of dump.rdb (redis-cli get Holberton)")
    client = common.connect()
    common.wait_until_connected(client)
    if client.get("Holberton") is None:
        common.log("(not loaded from dump.rdb: setting it as the course does with redis-cli)")
        client.set("Holberton", "School")
    common.log(f'"{client.get("Holberton")}"')


def basics() -> None:
    for number, script in [(1, "0_redis_client.py"), (2, "1_redis_op.py"),
                           (3, "2_redis_op_async.py"), (4, "4_redis_advanced_op.py")]:
        heading(f"Task {number}: python {script}")
        run_alone(script)


def pub_sub() -> None:
    heading("Task 5: python 5_subscriber.py (terminal 1), python 5_publisher.py (terminal 2)")
    run_pair("5_subscriber.py", "5_publisher.py", first_ready=common.CONNECTED)


def with_processor(creator: str, processor: str) -> None:
    """Terminal 2 runs a processor until Ctrl-C; terminal 1 runs the creator to its end."""
    worker = start(processor)
    worker_lines = relay_in_background(worker, "terminal 2")
    creator_process = start(creator)
    relay(creator_process, "terminal 1")
    creator_process.wait(timeout=STEP_TIMEOUT)
    stop(worker, worker_lines)


def job_queue() -> None:
    heading("Tasks 6-7: python 6_job_creator.py (terminal 1), "
            "python 6_job_processor.py (terminal 2)")
    with_processor("6_job_creator.py", "6_job_processor.py")
    heading("Tasks 8-9: python 7_job_creator.py (terminal 1), "
            "python 7_job_processor.py (terminal 2)")
    with_processor("7_job_creator.py", "7_job_processor.py")
    heading("Task 10: python 8_job.py (terminal 1), then RQ's own worker (terminal 2): "
            f"rq worker --burst -w rq.worker.SimpleWorker -S json {PUSH_NOTIFICATION_QUEUE_3}")
    creator = start("8_job.py")
    # Its first line says the job is queued: then start the worker, as you would.
    common.log(f"terminal 1 | {creator.stdout.readline().rstrip()}")
    rest = relay_in_background(creator, "terminal 1")
    worker = start("-m", "rq.cli", "worker", "--burst", "--quiet",  # it reads REDIS_URL
                   "-w", "rq.worker.SimpleWorker", "-S", "json", PUSH_NOTIFICATION_QUEUE_3)
    relay(worker, "terminal 2")
    worker.wait(timeout=STEP_TIMEOUT)
    creator.wait(timeout=STEP_TIMEOUT)
    rest.join(timeout=STEP_TIMEOUT)


def curl(port: int, path: str) -> None:
    """What ``curl localhost:PORT/PATH ; echo ""`` prints."""
    common.log(f'$ curl localhost:{port}/{path} ; echo ""')
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=10) as answer:
            common.log(answer.read().decode())
    except urllib.error.HTTPError as error:
        common.log(error.read().decode())


def serve(script: str) -> tuple[subprocess.Popen, threading.Thread, int]:
    """Start a server on a free port and wait until it answers."""
    port = free_port()
    server = start(script, PORT=str(port))
    lines = relay_in_background(server, "server")
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nowhere", timeout=1)
        except urllib.error.HTTPError:
            return server, lines, port  # it answers (404 for this path)
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"{script} did not start") from None
            time.sleep(0.1)


def stock_server() -> None:
    heading("Task 12: python 9_stock.py, then curl")
    server, lines, port = serve("9_stock.py")
    for path in ["list_products", "list_products/1", "list_products/12",
                 "reserve_product/12", "reserve_product/1", "list_products/1"]:
        curl(port, path)
    stop(server, lines)


def wait_for_seats_below(port: int, seats: int) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        url = f"http://127.0.0.1:{port}/available_seats"
        with urllib.request.urlopen(url, timeout=10) as answer:
            if int(json.loads(answer.read())["numberOfAvailableSeats"]) < seats:
                return
        time.sleep(0.05)


def seat_server() -> None:
    heading("Task 13: python 100_seat.py, then curl")
    server, lines, port = serve("100_seat.py")
    for path in ["available_seats", "reserve_seat", "process"]:
        curl(port, path)
    wait_for_seats_below(port, 50)  # the job runs in the server, as in the course
    curl(port, "available_seats")
    stop(server, lines)


STEPS: list[Callable[[], None]] = [task_0, basics, pub_sub, job_queue, stock_server,
                                   seat_server]


def without_password(url: str) -> str:
    """``url`` as it may be shown: a password in it becomes ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{netloc}").geturl()


def main() -> None:
    common.log(f"Touring the course against {without_password(common.redis_url())}")
    for step in STEPS:
        step()


if __name__ == "__main__":
    common.run(main)
