"""The stop-signal policy of every long-running script: processors, workers, the scheduler,
the uptime worker, and (at the end of this module) the web servers.

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

import contextlib
import os
import select
import signal
import socket
import threading
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


# -- The web servers ------------------------------------------------------------------
# Werkzeug's serving loop returns on KeyboardInterrupt, so the development servers keep
# Python's policy (the signal raises), for SIGTERM too; and until their modules are
# loaded there is nothing to clean up, so a signal then ends them at once.

def exit_at_once() -> None:
    """Ctrl-C and SIGTERM end the process now, quietly, with status 0: for a server while
    its modules load (an exception raised inside the import machinery could be
    swallowed). :func:`interrupt_on_signals` replaces it once the server runs."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda signum, frame: os._exit(0))


def interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt in the main thread (exit hooks run)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.default_int_handler)


_wakeup_sockets: list[socket.socket] = []


def in_granian_worker() -> bool:
    """Whether this is a granian worker process loading the app: until granian installs
    the worker's own handlers, its SIGINT handler is the one inherited through fork from
    granian's main process, a method of granian's server."""
    if threading.current_thread() is not threading.main_thread():
        return False
    server = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
    return type(server).__module__.startswith("granian.")


def on_granian_stop(*actions: Callable[[], object]) -> bool:
    """In a granian worker process, run ``actions`` (in a thread) as soon as the process
    gets SIGINT or SIGTERM, or now if it got one while it started; True if set up.

    granian 2.8 does not always end a worker on a signal: a worker signalled before it
    installed its handlers, or whose main thread does not get the signal, waits forever,
    until the main process kills it (``--workers-kill-timeout``), and a killed worker
    runs no exit hook. So what must be given back at exit (the seat lease, the RQ worker's
    registration) is given back here, when the signal comes. Python's C handler writes
    every signal's number to the wakeup fd, whichever thread the signal interrupts.
    """
    if not in_granian_worker():
        return False
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    early = getattr(signal.getsignal(signal.SIGINT).__self__, "interrupt_signal", False)

    _wakeup_sockets.extend((reader, writer))  # open as long as the process lives

    def watch() -> None:
        while not early:
            data = reader.recv(64)
            if not data or any(signum in data for signum in STOP_SIGNALS):
                break
        for action in actions:
            with contextlib.suppress(Exception):
                action()

    threading.Thread(target=watch, daemon=True, name="stop-signal watcher").start()
    return True


os.register_at_fork(after_in_child=_after_fork_in_child)
