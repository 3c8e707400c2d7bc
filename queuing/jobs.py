"""RQ jobs that behave like the course's Kue jobs: JSON payloads, integer ids from one counter."""

from __future__ import annotations

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from queuing.constants import JOB_ID_KEY


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
