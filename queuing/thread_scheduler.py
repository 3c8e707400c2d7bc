"""RQ's scheduler in a thread of its worker, instead of the process RQ forks for it.

The scheduler queues the jobs whose time has come (the delays of RQ's ``Retry``). In a
thread it stops with its worker, even one that is killed, and takes no part in stop
signals (stopping.py): nothing is left behind.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from typing import Any

import redis
from rq.scheduler import RQScheduler


class ThreadScheduler(RQScheduler):
    """RQ's scheduler (it queues the jobs whose time has come: a ``Retry``'s delays), run
    in a thread of its worker instead of a process RQ forks: it stops with the worker,
    even one that is killed, and takes no part in stop signals."""

    def start(self) -> threading.Thread:
        self._status = self.Status.STARTED
        self._stop = threading.Event()
        self._process = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._process.start()
        return self._process

    def _loop(self) -> None:
        with suppress(redis.RedisError):
            self.register_birth()
        while not self._stop.is_set():
            try:
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
            except redis.RedisError:  # Redis away: the worker says so; try again later
                pass
            self._stop.wait(self.interval)
        with suppress(redis.RedisError):
            self.stop()

    def request_stop(self, signum: Any = None, frame: Any = None) -> None:
        self._stop.set()
