"""The Flask servers of tasks 12 and 13 run as a learner runs them, plus a small HTTP client."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from queuing.local_redis import free_port
from tests.processes import Script

START_TIMEOUT = 20.0
# The README's production command, less --workers, --host and --port. granian 2.8 does
# not always end a worker on a signal: --workers-kill-timeout bounds the stop.
GRANIAN_OPTIONS = ["--interface", "wsgi", "--factory", "--blocking-threads", "2",
                   "--respawn-failed-workers", "--workers-kill-timeout", "5"]


class Server(Script):
    """``python 9_stock.py`` or granian on a free port; its stdout lines can be awaited."""

    def __init__(self, argv: list[str], redis_url: str, port: int | None = None,
                 **env: str) -> None:
        self.port = port or free_port()
        super().__init__(" ".join(argv), redis_url, argv=argv, PORT=str(self.port), **env)
        self._wait_until_listening()

    @classmethod
    def script(cls, name: str, redis_url: str, **env: str) -> Server:
        return cls([sys.executable, f"{name}.py"], redis_url, **env)

    @classmethod
    def granian(cls, factory: str, redis_url: str, workers: int = 3, **env: str) -> Server:
        """The README's production command, e.g.
        ``Server.granian("queuing.seats:create_app", url)``; ``env``: more variables."""
        port = free_port()
        return cls([sys.executable, "-m", "granian", *GRANIAN_OPTIONS, "--workers", str(workers),
                    "--host", "127.0.0.1", "--port", str(port), factory], redis_url, port=port,
                   **env)

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise AssertionError(f"{self.name} is not serving: {self.stderr}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server and its worker processes: granian's workers, unlike gunicorn's,
        go on serving when only their main process is killed."""
        workers = children(self.process.pid)
        super().kill()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def get(self, path: str) -> tuple[int, str, bytes]:
        try:
            return http_get(f"http://127.0.0.1:{self.port}{path}")
        except urllib.error.URLError as error:  # not an HTTP answer: say what the server did
            status = self.process.poll()
            raise AssertionError(
                f"{self.name}: GET {path}: {error.reason}; "
                f"{'running' if status is None else f'ended with status {status}'}; "
                f"its last lines {self.drain()[-10:]}; stderr:\n{self.stderr[-3000:]}"
            ) from None


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (granian's workers), none once it has ended."""
    try:
        return [int(child) for child in
                Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def kill_with_children(script: Script) -> None:
    """SIGKILL a script and the processes it started (a processor's workers), as a test's
    clean-up: nothing of theirs outlives the test, whether it passed or not."""
    started = children(script.process.pid)
    script.kill()
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def http_get(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    """(status, Content-Type, body), for errors too."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read()


def hammer(urls: Iterable[str], threads: int = 32) -> list[bytes]:
    """GET every URL at once from ``threads`` threads; the bodies (all must be 200)."""
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(http_get, urls))
    assert {status for status, _, _ in answers} == {200}, answers
    return [body for _, _, body in answers]


def wait_for_lines(servers: list[Server], prefix: str, count: int,
                   timeout: float = 60) -> list[str]:
    """Wait until the servers printed ``count`` lines starting with ``prefix``, together."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for server in servers for line in server.drain()
                 if line.startswith(prefix)]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)
