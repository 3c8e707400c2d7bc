"""What the numbered scripts share: the Redis connection, the course's lines, clean exits.

The connection comes from ``REDIS_URL`` (Redis as a backing service, 12-factor style);
unset, it is the course's ``redis://localhost:6379``. Everything else lives in the
``queuing`` package beneath this folder.
"""

from queuing.cli import run, run_until_stopped
from queuing.connection import (
    CONNECTED,
    connect,
    connect_async,
    not_connected_line,
    wait_until_connected,
    wait_until_connected_async,
)
from queuing.console import log, log_error, redis_print
from queuing.settings import redis_url

__all__ = [
    "CONNECTED",
    "connect",
    "connect_async",
    "log",
    "log_error",
    "not_connected_line",
    "redis_print",
    "redis_url",
    "run",
    "run_until_stopped",
    "wait_until_connected",
    "wait_until_connected_async",
]
