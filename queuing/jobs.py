"""RQ jobs that behave like the course's Kue jobs: JSON payloads, integer ids from one counter.

The module also gives the job functions and callbacks of batched jobs short names
(:data:`SHORT_NAMES`): ``queuing.jobs.tracked`` is ``notifications.push_tracked_notification``
itself, so RQ imports it as any job function.
"""

from __future__ import annotations

from typing import Any

import redis
from rq import Queue
from rq.serializers import JSONSerializer
from rq.utils import import_attribute

from queuing.constants import JOB_ID_KEY

# The names batched jobs (fast_enqueue) store for their function and callbacks, and the
# function each one is. Every pending job holds its function's name twice (``data``,
# ``description``) and its callbacks' once each: with these, a course job's ``data`` is
# 119 characters instead of 147 (a 128-byte allocation instead of 160 on a default
# server), and its hash stays under 512 bytes in the compact encoding (bench/README.md,
# "Memory per pending job"). Each is an attribute of this module (``__getattr__``), so
# any RQ worker imports it; AllowedJob allows it only as the name it stands for.
SHORT_NAMES = {
    "queuing.jobs.push": "queuing.notifications.push_notification",
    "queuing.jobs.tracked": "queuing.notifications.push_tracked_notification",
    "queuing.jobs.completed": "queuing.job_events.job_completed",
    "queuing.jobs.failed": "queuing.job_events.job_failed",
}
_SHORT_NAME_OF = {full: short for short, full in SHORT_NAMES.items()}


def short_name(name: str) -> str:
    """The short name of job function or callback ``name``, or ``name`` if it has none."""
    return _SHORT_NAME_OF.get(name, name)


def full_name(name: str) -> str:
    """The dotted path a short name stands for, or ``name`` itself."""
    return SHORT_NAMES.get(name, name)


def __getattr__(name: str) -> Any:
    """``queuing.jobs.tracked`` and the other short names: the functions themselves,
    imported when first asked for (they import this module)."""
    full = SHORT_NAMES.get(f"{__name__}.{name}")
    if full is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return import_attribute(full)


class ExpectedJobFailure(Exception):
    """A job failure the course expects (Kue's ``done(new Error(...))``, a blacklisted
    number): the job fails and its creator hears why, but the processor's screen does
    not show it, as in the course's sample output. Every other failure prints a line."""


def json_queue(name: str, connection: redis.Redis) -> Queue:
    """A queue whose job payloads are JSON, never pickle (RQ's default)."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def next_job_id(connection: redis.Redis) -> str:
    """The next job id, 1, 2, 3... never reused; RQ wants it as a string."""
    return str(connection.incr(JOB_ID_KEY))


def reserve_job_ids(connection: redis.Redis, count: int) -> list[str]:
    """``count`` consecutive job ids from one INCRBY: one round trip for a whole batch.

    The range is this caller's alone, whoever else takes ids at the same time, so ids
    are never reused. Ids reserved for jobs that are then not written (Ctrl-C before the
    batch's transaction) leave a gap, as an INCR would.
    """
    last = connection.incrby(JOB_ID_KEY, count)
    return [str(job_id) for job_id in range(last - count + 1, last + 1)]
