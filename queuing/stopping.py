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

A long-running script calls :func:`install` before its other imports, so that a signal
that comes during them is handled too. Importing this module installs nothing: a creator
that imports workers keeps Python's Ctrl-C, and so does a test.

A process started with SIGINT ignored (``cmd &`` in a shell script: the shell's way of
saying Ctrl-C is not meant for it) keeps ignoring it; SIGTERM, which a script uses to
stop what it started, always stops it.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


os.register_at_fork(after_in_child=_after_fork_in_child)
