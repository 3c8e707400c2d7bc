"""stopping.py's policy, in a process of its own (it installs signal handlers)."""

from __future__ import annotations

import subprocess
import sys

from tests.processes import ROOT

HELD_WHILE_FORKING = """
import multiprocessing, os, signal, time
from queuing import stopping
stopping.install()
processes, known = [], []
stopping.on_signal(lambda signum, first: known.append([p.pid for p in processes]))
context = multiprocessing.get_context("fork")
with stopping.signals_held():
    os.kill(os.getpid(), signal.SIGTERM)  # comes while the workers are being forked
    for _ in range(2):
        process = context.Process(target=time.sleep, args=(0.01,))
        processes.append(process)
        process.start()
for process in processes:
    process.join()
print(known == [[p.pid for p in processes]], known)
"""


def test_a_stop_that_comes_while_workers_are_forked_is_handled_once_all_are_known():
    """A parent passes each stop signal on to the workers it knows: one handled in the
    middle of a fork would miss the worker being forked, which would run on for ever."""
    done = subprocess.run([sys.executable, "-c", HELD_WHILE_FORKING], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("True"), (done.stdout, done.stderr)
