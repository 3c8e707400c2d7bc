"""Job functions the fault tests enqueue: processors find them as ``tests.fault_jobs.*``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rq import get_current_job

from queuing import notifications

GATE_KEY = "test:gate"
HOLD_LIMIT_SECONDS = 60


def held_notification(data: Any) -> None:
    """A tracked notification that waits until the test opens the gate (the key exists),
    so the test knows a job is running when it kills the worker."""
    connection = get_current_job().connection
    deadline = time.monotonic() + HOLD_LIMIT_SECONDS
    while not connection.exists(GATE_KEY) and time.monotonic() < deadline:
        time.sleep(0.01)
    notifications.push_tracked_notification(data)


def file_held_notification(gate: str, data: Any) -> None:
    """A tracked notification that waits, without touching Redis, until the file ``gate``
    exists: its worker stays busy while the test stops and restarts Redis."""
    deadline = time.monotonic() + HOLD_LIMIT_SECONDS
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    notifications.push_tracked_notification(data)


def slow_notification(data: Any) -> None:
    """A tracked notification that takes longer than a worker holds a job's events."""
    time.sleep(0.3)
    notifications.push_tracked_notification(data)
