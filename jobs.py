"""RQ jobs that behave like the course's Kue jobs: JSON payloads, integer ids from one counter."""

from __future__ import annotations

import redis
from rq import Queue
from rq.serializers import JSONSerializer

import common
from constants import JOB_ID_KEY


def json_queue(name: str, connection: redis.Redis) -> Queue:
    """A queue whose job payloads are JSON, never pickle (RQ's default)."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def next_job_id(connection: redis.Redis) -> str:
    """The next job id, 1, 2, 3... never reused; RQ wants it as a string."""
    return str(connection.incr(JOB_ID_KEY))


def rq_connection(url: str | None = None, **options) -> redis.Redis:
    """A client for RQ (default: ``REDIS_URL``): RQ needs bytes replies, not str."""
    return common.connect(url, decode_responses=False, **options)
