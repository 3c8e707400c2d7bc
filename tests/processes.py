"""Load the numbered scripts in tests, and run them as a learner would.

Their names start with a digit, so ``import 1_redis_op`` is not valid Python:
:func:`load_script` imports them by file name instead.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

from queuing.local_redis import RedisServerNotFound, SentinelRig

ROOT = Path(__file__).resolve().parent.parent


def skip_unless_ci(reason: str) -> NoReturn:
    """Something a test needs (a redis-server, openssl) is missing: skip on a developer's
    machine, fail when CI=true, where a skip would hide a test that never ran."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs this test to run: {reason}")
    pytest.skip(reason)


def load_script(name: str) -> ModuleType:
    """Import ``ROOT/<name>.py`` (e.g. ``"1_redis_op"``) as a module, once."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(name)


def script_env(redis_url: str | None, **extra: str) -> dict[str, str]:
    """The environment a learner's terminal has, pointed at ``redis_url``.

    PYTHONUNBUFFERED is removed on purpose: our machines set it, and it hides scripts
    whose output would sit in a buffer when stdout is a pipe. A developer's .env is not
    read (ENV_FILE empty): its Twilio credentials must never reach a test.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "REDIS_URL")}
    env["ENV_FILE"] = ""
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def run_script(name: str, redis_url: str | None, *args: str, timeout: float = 30,
               **env: str) -> subprocess.CompletedProcess:
    """Run ``python <name>.py`` to the end and capture its output as text."""
    return subprocess.run(
        [sys.executable, f"{name}.py", *args], cwd=ROOT, env=script_env(redis_url, **env),
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


class Script:
    """A script running in the background whose output lines can be awaited one by one.

    ``argv`` runs another command instead of ``python <name>.py <args>`` (granian, say).
    """

    def __init__(self, name: str, redis_url: str | None, *args: str,
                 argv: list[str] | None = None, **env: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            argv or [sys.executable, f"{name}.py", *args], cwd=ROOT,
            env=script_env(redis_url, **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, bufsize=1,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.process.stdout, self._queue.put),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.process.stderr, self._stderr.append),
                         daemon=True).start()

    @staticmethod
    def _pump(stream, put) -> None:
        for line in stream:
            put(line.rstrip("\n"))
        put(None)

    def read_line(self, timeout: float = 10) -> str | None:
        """The next stdout line, or None at end of output; fails after ``timeout`` seconds."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self.name}: no output line within {timeout}s; so far {self.lines}, "
                f"stderr {self.stderr!r}"
            ) from None
        if line is not None:
            self.lines.append(line)
        else:
            self._queue.put(None)  # stay at end of output for later calls
        return line

    def drain(self) -> list[str]:
        """Every stdout line that arrived so far, without waiting."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is None:
                self._queue.put(None)
                return self.lines
            self.lines.append(line)

    def wait_for(self, expected: str, timeout: float = 10) -> None:
        """Read lines until ``expected`` is seen."""
        deadline = time.monotonic() + timeout
        while (line := self.read_line(max(0.01, deadline - time.monotonic()))) != expected:
            if line is None:
                raise AssertionError(f"{self.name} ended without {expected!r}: {self.lines}")

    def finish(self, timeout: float = 20) -> int:
        """Wait for the process to end, reading all its output; return its exit status."""
        status = self.process.wait(timeout=timeout)
        while self.read_line(timeout=5) is not None:
            pass
        return status

    def interrupt(self, timeout: float = 20) -> int:
        """Press Ctrl-C (SIGINT) and wait for the script to end."""
        self.process.send_signal(signal.SIGINT)
        return self.finish(timeout)

    @property
    def stderr(self) -> str:
        return "\n".join(line for line in self._stderr if line is not None)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this machine; a zombie (killed, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll ``condition`` until it holds; fail saying ``what`` was awaited after ``timeout``
    seconds (generous: the suite must pass on a busy machine)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting, after {timeout}s, for {what}")
        time.sleep(0.02)


class Honcho:
    """``honcho start ARGS`` in the project's folder, as a learner runs the Procfile: its
    output lines gathered as they come (``lines``), Ctrl-C to stop it.

    ``.env`` is an empty file of the test's (never a learner's .env); ``env`` is the
    processes' environment, with the venv's tools first on PATH, as after
    ``. .venv/bin/activate``."""

    def __init__(self, args: list[str], env: dict[str, str], env_file: Path) -> None:
        env_file.write_text("")
        venv_bin = str(Path(sys.executable).parent)
        env = {**env, "PATH": f"{venv_bin}:{env.get('PATH', '')}"}
        self.process = subprocess.Popen(
            [f"{venv_bin}/honcho", "start", "-e", str(env_file), *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout),
                         daemon=True).start()

    def count(self, *parts: str) -> int:
        """How many output lines so far hold every one of ``parts``."""
        return sum(all(part in line for part in parts) for line in list(self.lines))

    def stop(self, timeout: float = 30) -> None:
        """Ctrl-C, as in a terminal; its process group killed if it has not ended in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@contextlib.contextmanager
def started_rig() -> Iterator[SentinelRig]:
    """A SentinelRig (a master, an AOF replica, three sentinels), stopped and removed
    afterwards. Without a redis-server it skips, except in CI, where it fails."""
    try:
        rig = SentinelRig()
    except RedisServerNotFound as error:
        skip_unless_ci(str(error))
    with rig:
        yield rig
