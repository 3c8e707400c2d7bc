"""The ``reserve_seat`` worker that runs inside a seat server, started by ``GET /process``.

It is an RQ SimpleWorker in a thread. Outside the main thread RQ can install no signal
handlers and its SIGALRM job timeouts fail silently, so this worker uses RQ's
timer-based death penalty and skips signal setup. Its blocking dequeue waits up to
405 s, so its client's socket timeout is longer than that (redis-py 8 defaults to 5 s).
"""

from __future__ import annotations

import threading
import time

import redis
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

import jobs
from constants import RESERVE_SEAT_QUEUE
from recovery import RecoveringWorker

RESTART_SECONDS = 1.0
# RQ blocks up to worker_ttl - 15 = 405 s per dequeue (and would raise a shorter timeout to 415).
DEQUEUE_SOCKET_TIMEOUT = 420


class SeatWorker(RecoveringWorker):
    death_penalty_class = TimerDeathPenalty
    max_connection_wait_time = 2.0  # retry a lost Redis every 2 s, not up to 60 s

    def _install_signal_handlers(self) -> None:
        """Signals belong to the main thread: the server's, not this worker's."""

    def handle_exception(self, job, *exc_info) -> None:
        """No traceback on the console: the job's failure callback prints the course's line."""


def worker_connection(url: str | None = None) -> redis.Redis:
    """A bytes-mode client (RQ needs one) whose blocking dequeue may wait for minutes."""
    return jobs.rq_connection(url, socket_timeout=DEQUEUE_SOCKET_TIMEOUT,
                              socket_connect_timeout=2)


class Processor:
    """At most one worker thread per process: the first :meth:`start` starts it."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start processing ``reserve_seat`` unless this process already does; True if started."""
        with self._lock:
            if self._thread is not None:
                return False
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="reserve_seat worker")
            self._thread.start()
            return True

    def _run(self) -> None:
        # RQ's work loop quits on some Redis errors (one during a job's bookkeeping, say):
        # start a new worker then, so processing resumes when Redis is back.
        while True:
            try:
                worker = SeatWorker([RESERVE_SEAT_QUEUE], connection=self.connection,
                                    serializer=JSONSerializer)
                worker.work(logging_level="WARNING")
            except redis.RedisError:
                pass
            time.sleep(RESTART_SECONDS)
