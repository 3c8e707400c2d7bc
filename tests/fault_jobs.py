"""Job functions the fault tests enqueue: processors find them as ``tests.fault_jobs.*``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rq import Queue, get_current_job
from rq.job import Job
from rq.registry import StartedJobRegistry

from queuing import notifications, recovery

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


def taken_back_notification(data: Any) -> None:
    """A tracked notification whose first run is taken back from its worker while it runs,
    as recovery takes back the job of a worker whose lease lapsed (a worker cut off from
    Redis, not dead): that run then ends late, after the job went back to the queue."""
    job = get_current_job()
    if job.connection.set(f"test:taken-back:{job.id}", 1, nx=True):
        queue = Queue(job.origin, connection=job.connection, serializer=job.serializer)
        [execution_id] = [execution for job_id, execution in StartedJobRegistry(
            queue=queue).get_job_and_execution_ids(cleanup=False) if job_id == job.id]
        recovery.take_back(queue, Job.fetch(job.id, connection=job.connection,
                                            serializer=job.serializer), execution_id)
    notifications.push_tracked_notification(data)
