"""The main job: a tour of the course, every task's script run as a learner runs it.

Each script runs as its own process against REDIS_URL, exactly as from a terminal;
two-terminal tasks run side by side with each line labelled by its terminal.
`./run demo` starts a throwaway redis-server loaded from dump.rdb for it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import common

ROOT = Path(__file__).resolve().parent
STEP_TIMEOUT = 60


def heading(title: str) -> None:
    common.log(f"\n=== {title} ===")


def start(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, script, *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


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
            thread = threading.Thread(target=relay, args=(process, label), daemon=True)
            thread.start()
            return thread
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


STEPS: list[Callable[[], None]] = [task_0, basics, pub_sub]


def main() -> None:
    common.log(f"Touring the course against {common.redis_url()}")
    for step in STEPS:
        step()


if __name__ == "__main__":
    common.run(main)
