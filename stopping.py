"""One stop-signal policy for the long-running scripts: processors, workers, the scheduler.

Ctrl-C (SIGINT) or SIGTERM asks the script to stop. The signal handler only records the
request and wakes :func:`wait`; it never raises. The script looks at the request where
stopping is clean: before it connects or registers, between rounds, before it waits for
a job. (Python's default raises KeyboardInterrupt wherever the program happens to be: in
an import, it prints a traceback; inside a ``__del__`` or a logging call it is swallowed
and the stop is lost; in the middle of registering a worker it leaves half a worker.)

A later signal, more than ``COPY_SECONDS`` after the first, forces the stop: the hooks
registered with :func:`on_signal` decide how (a worker stops its job), and without hooks
SystemExit is raised at once. A signal within ``COPY_SECONDS`` of the first is a copy of
it: a terminal sends Ctrl-C to every process of its group, and a processor passes the
signals it gets on to its workers.

A script imports this module before any other, so that a signal that comes during its
imports is handled too. Only that import installs the policy: not a module's import of it
(workers.py), so a creator that imports workers keeps Python's Ctrl-C, nor a test's.

A process started with SIGINT ignored (``cmd &`` in a shell script: the shell's way of
saying Ctrl-C is not meant for it) keeps ignoring it; SIGTERM, which a script uses to
stop what it started, always stops it.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

COPY_SECONDS = 1.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_FORCED = 130  # a second signal: stopped without finishing what was running

Hook = Callable[[int | None, bool], None]

_signals: tuple[int, ...] = ()
_requested_at: float | None = None
_hooks: list[Hook] = []
_wakeup: tuple[int, int] | None = None


class Stopped(Exception):
    """Raised by :func:`check` and :func:`sleep` once a stop was asked for."""


def signals() -> tuple[int, ...]:
    """The signals that stop this process (SIGTERM, and SIGINT unless ignored at start)."""
    return _signals


def install() -> None:
    global _signals
    keep_ignoring = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    _signals = (signal.SIGTERM,) if keep_ignoring else (signal.SIGINT, signal.SIGTERM)
    _new_wakeup()
    for signum in _signals:
        signal.signal(signum, _handle)


def _new_wakeup() -> None:
    """The pipe :func:`wait` watches: readable once a stop was asked for."""
    global _wakeup
    if _wakeup is not None:
        for fd in _wakeup:
            os.close(fd)
    _wakeup = os.pipe()
    for fd in _wakeup:
        os.set_blocking(fd, False)
    if _requested_at is not None:
        os.write(_wakeup[1], b".")


def _after_fork_in_child() -> None:
    """A forked worker keeps the request (a stop asked for before it started is its
    stop too), not its parent's hooks or pipe; it hears the signals held while it was
    forked (signals_held)."""
    _hooks.clear()
    if _wakeup is not None:
        _new_wakeup()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold the stop signals while the block runs, then let them in: for a parent that
    forks workers and passes each signal on to those it knows, a signal that came in the
    middle of a fork would reach neither the new child (not yet told of a stop) nor the
    parent's list (the child's pid not yet in it). Held, it is handled once every child
    is known; a child hears those sent to it while it was forked once it starts."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _handle(signum: int, frame: object) -> None:
    global _requested_at
    first = _requested_at is None
    if first:
        _requested_at = time.monotonic()
        if _wakeup is not None:
            os.write(_wakeup[1], b".")
    if _hooks:
        for hook in list(_hooks):
            hook(signum, first)
    elif not first and since_request() >= COPY_SECONDS:
        raise SystemExit(EXIT_FORCED)


def on_signal(hook: Hook) -> Callable[[], None]:
    """Call ``hook(signum, first)`` in the main thread for each stop signal from now on;
    at once with ``(None, True)`` if a stop was already asked for. Returns its remover."""
    _hooks.append(hook)
    if _requested_at is not None:
        hook(None, True)

    def remove() -> None:
        if hook in _hooks:
            _hooks.remove(hook)

    return remove


def requested() -> bool:
    return _requested_at is not None


def since_request() -> float:
    """Seconds since the first stop signal (0 if none came)."""
    return 0.0 if _requested_at is None else time.monotonic() - _requested_at


def check() -> None:
    if requested():
        raise Stopped


def wait(seconds: float) -> bool:
    """Wait ``seconds``, or less if a stop is asked for; True if it was."""
    if _wakeup is None:
        time.sleep(max(0.0, seconds))
    elif not requested():
        select.select([_wakeup[0]], [], [], max(0.0, seconds))
    return requested()


def sleep(seconds: float) -> None:
    """:func:`wait`, then Stopped if a stop was asked for (for retry loops)."""
    if wait(seconds):
        raise Stopped


def run(main: Callable[[], int | None]) -> NoReturn:
    """common.run for a long-running script: a stop asked for before or while ``main``
    starts (Stopped) ends it with exit 0, as a stop once it runs does."""
    import common

    def until_stopped() -> int | None:
        try:
            check()
            return main()
        except Stopped:
            return 0

    common.run(until_stopped)


def _imported_by_the_main_script() -> bool:
    """Whether the import running now is the program's own (``python 7_job_processor.py``),
    not a module's (notifications imports workers, which imports this) or a test's."""
    frame = sys._getframe(2)  # 0: here, 1: this module, 2: the import machinery
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        frame = frame.f_back
    return frame is not None and frame.f_globals.get("__name__") == "__main__"


os.register_at_fork(after_in_child=_after_fork_in_child)
if _imported_by_the_main_script():
    install()
