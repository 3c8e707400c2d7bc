"""Count Redis round trips, by phase, in this process (and in a script it runs).

A round trip is one call of redis-py's ``AbstractConnection.send_packed_command``: one
command, or one whole pipeline, written before its replies are read. Counting happens
only while a phase is set. In a worker process (see ``main``) every round trip counts:
it is "events" when it XADDs to a reply stream (a job event for the creator; RQ's own
XADD of a job's result to ``rq:results:<id>`` does not count), else "worker".

Run a script with counting on, tallies written to DIR/<pid>.json at exit::

    python bench/roundtrips.py DIR 7_job_processor.py
"""

from __future__ import annotations

import json
import os
import re
import runpy
import sys
from collections import Counter, defaultdict
from pathlib import Path

from redis.connection import AbstractConnection

from queuing.constants import JOB_EVENTS_PREFIX

_COMMAND = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n")
_EVENT = re.compile(rb"\r\nXADD\r\n\$\d+\r\n" + re.escape(JOB_EVENTS_PREFIX.encode()), re.I)

phase: str | None = None  # set by the caller; None: do not count
classify = False  # worker processes: phase from the commands sent
round_trips: Counter[str] = Counter()
commands: defaultdict[str, Counter[str]] = defaultdict(Counter)


def _joined(packed: bytes | list) -> bytes:
    return packed if isinstance(packed, bytes) else b"".join(bytes(part) for part in packed)


def install() -> None:
    """Wrap send_packed_command once; cheap when no phase is set."""
    original = AbstractConnection.send_packed_command
    if getattr(original, "counting", False):
        return

    def counting(self: AbstractConnection, command: bytes | list, check_health: bool = True):
        if phase is not None or classify:
            data = _joined(command)
            label = phase
            if classify:
                label = "events" if _EVENT.search(data) else "worker"
            round_trips[label] += 1
            commands[label].update(name.decode().upper() for name in _COMMAND.findall(data))
        return original(self, command, check_health)

    counting.counting = True  # type: ignore[attr-defined]
    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]


def tally() -> dict:
    return {label: {"round_trips": round_trips[label], "commands": dict(commands[label])}
            for label in round_trips}


def write_tally(folder: str) -> None:
    Path(folder, f"{os.getpid()}.json").write_text(json.dumps(tally()))


def read_tallies(folder: str) -> dict:
    """The sum of every process's tally in ``folder``."""
    total: dict = {}
    for path in Path(folder).glob("*.json"):
        for label, part in json.loads(path.read_text()).items():
            into = total.setdefault(label, {"round_trips": 0, "commands": Counter()})
            into["round_trips"] += part["round_trips"]
            into["commands"].update(part["commands"])
    return total


def main(argv: list[str]) -> None:
    """Run a script with every round trip of this process and its forked children counted.

    multiprocessing's children end with os._exit (no atexit), so that is where they write.
    """
    global classify
    if len(argv) < 2:
        sys.exit("usage: python bench/roundtrips.py TALLY_DIR SCRIPT [ARGS...]")
    folder, script, *args = argv
    classify = True
    install()
    real_exit = os._exit

    def exit_writing(status: int) -> None:
        write_tally(folder)
        real_exit(status)

    os._exit = exit_writing
    os.register_at_fork(after_in_child=lambda: (round_trips.clear(), commands.clear()))
    sys.argv = [script, *args]
    # What ``python SCRIPT`` does: the script's folder first (a numbered script imports
    # common.py beside it), instead of this file's.
    sys.path[0] = str(Path(script).resolve().parent)
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        write_tally(folder)


if __name__ == "__main__":
    main(sys.argv[1:])
