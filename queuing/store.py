"""The web app's Redis clients and clock, one of each per app (as flaskr's db.py).

Views ask for them with :func:`get_redis`, :func:`get_rq_redis` and :func:`now` instead
of making their own: a test hands the app fakeredis clients and a clock it can move
(``create_app({"REDIS": ..., "RQ_REDIS": ..., "CLOCK": ...})``); production makes them
from REDIS_URL, once per process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, current_app

from queuing import connection

EXTENSION = "queuing.store"


def init_app(app: Flask, test_config: dict[str, Any] | None = None) -> None:
    """Give ``app`` its clients and clock: from ``test_config`` when it has them."""
    config = test_config or {}
    client = config.get("REDIS")
    if client is None:
        client = connection.server_client()
        connection.check_server_accepts(client)
    app.extensions[EXTENSION] = {
        "redis": client,
        # RQ needs bytes replies; a server's client fails fast, so a request gets its 503.
        "rq_redis": config.get("RQ_REDIS") or connection.server_client(decode_responses=False),
    }
    app.config["CLOCK"] = config.get("CLOCK", time.time)


def get_redis() -> redis.Redis:
    """The app's client (answers str), for the app's own keys."""
    return current_app.extensions[EXTENSION]["redis"]


def get_rq_redis() -> redis.Redis:
    """The app's bytes client, for RQ's queues and jobs."""
    return current_app.extensions[EXTENSION]["rq_redis"]


def now() -> float:
    """Seconds since the epoch, by the app's clock."""
    clock: Callable[[], float] = current_app.config["CLOCK"]
    return clock()
