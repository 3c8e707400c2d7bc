"""Run a command the way a learner does: in a terminal, and stop it with Ctrl-C.

A pipe is not a terminal. Programs behave differently in one: RQ colours its log lines
only when stdout is a TTY, Python line-buffers stdout, and Ctrl-C is a character the
terminal turns into SIGINT for every process of the foreground group (a processor and
its worker children alike). :class:`Terminal` gives the command a pseudo-terminal of its
own (the standard library's ``pty``) as its controlling terminal, reads what the screen
would show, and types Ctrl-C into it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

from tests.processes import ROOT, script_env

CTRL_C = b"\x03"
# Colours and other escape sequences RQ writes to a terminal.
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _take_terminal() -> None:
    """In the child: a session of its own, with the pty (its stdin) as controlling
    terminal, so the child's group is the terminal's foreground group."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """``python <name>.py <args>`` (or ``argv``) running in a pseudo-terminal of its own."""

    def __init__(self, name: str, redis_url: str | None, *args: str,
                 argv: list[str] | None = None, cwd: Path = ROOT, **env: str) -> None:
        self.name = name
        master, slave = pty.openpty()
        self._master = master
        self.process = subprocess.Popen(
            argv or [sys.executable, f"{name}.py", *args], cwd=cwd,
            env=script_env(redis_url, TERM="xterm", PYTHONFAULTHANDLER="1", **env),
            stdin=slave, stdout=slave, stderr=slave, preexec_fn=_take_terminal,
            close_fds=True)
        os.close(slave)
        self._output = bytearray()
        self._changed = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: every process holding the terminal has ended
                data = b""
            with self._changed:
                if not data:
                    self._closed = True
                    self._changed.notify_all()
                    return
                self._output += data
                self._changed.notify_all()

    @property
    def text(self) -> str:
        """Everything the screen showed so far, without colours, with plain newlines."""
        with self._changed:
            raw = bytes(self._output)
        return ESCAPES.sub("", raw.decode(errors="replace")).replace("\r\n", "\n")

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.split("\n") if line]

    def wait_for(self, expected: str, timeout: float = 30, count: int = 1) -> None:
        """Wait until ``expected`` appears ``count`` times on the screen (a line or part
        of one); fail with what the screen shows after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.text.count(expected) < count:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise AssertionError(
                        f"{self.name}: {expected!r} x{count} not on screen "
                        f"({'ended' if self._closed else f'after {timeout}s'}); "
                        f"screen:\n{self.text}")
                self._changed.wait(min(left, 0.5))

    def catches(self, signum: int) -> bool:
        """Whether the command has a handler of its own for ``signum`` (its first lines
        ran: before, only the interpreter's start-up runs, with Python's defaults)."""
        try:
            with open(f"/proc/{self.process.pid}/status") as status:
                caught = next(line for line in status if line.startswith("SigCgt:"))
        except (OSError, StopIteration):
            return self.process.poll() is not None
        return bool(int(caught.split()[1], 16) & (1 << (signum - 1)))

    def type(self, keys: bytes) -> None:
        os.write(self._master, keys)

    def ctrl_c(self) -> None:
        """Press Ctrl-C: the terminal sends SIGINT to every process of its foreground group."""
        self.type(CTRL_C)

    def finish(self, timeout: float = 30) -> int:
        """Wait for the command to end; its exit status (negative: killed by a signal)."""
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Python's faulthandler (on in every command started here) prints where each
            # thread of each process is on SIGABRT: the screen then says where it hung.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
            self.kill()
            self._reader.join(timeout=5)
            raise AssertionError(f"{self.name} still running {timeout}s later; "
                                 f"screen:\n{self.text}") from None
        self._reader.join(timeout=5)
        return status

    def interrupt(self, timeout: float = 30) -> int:
        """Ctrl-C, then wait for the command to end; its exit status."""
        self.ctrl_c()
        return self.finish(timeout)

    def kill(self) -> None:
        """SIGKILL the whole foreground group (the command and any children it started)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self._reader.join(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self._master)
