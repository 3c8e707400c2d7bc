"""RQ's job timeout (SIGALRM), with its signal handler installed once, not per job.

RQ's UnixSignalDeathPenalty installs its SIGALRM handler when a job starts and puts the
default back when it ends, and again around the job's callback: 7.4-8.6 us per penalty,
two a job. This one leaves its handler in place and only sets and clears the alarm:
3.1-3.3 us. A job over its timeout fails with RQ's exception and message (RQ's own
``handle_death_penalty`` raises it). An alarm with no job running does what it does
between RQ's jobs: it ends the process.
"""

from __future__ import annotations

import _signal  # signal.getsignal without its enum conversion: ~0.02 us, not ~3
import os
import signal
import threading
from types import FrameType

from rq.timeouts import UnixSignalDeathPenalty

_armed: UnixSignalDeathPenalty | None = None  # the penalty of the job running now


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    if _armed is None:  # no job running: the default action
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGALRM)
        return
    _armed.handle_death_penalty(signum, frame)


class AlarmDeathPenalty(UnixSignalDeathPenalty):
    """UnixSignalDeathPenalty whose handler stays installed between jobs."""

    def setup_death_penalty(self) -> None:
        global _armed
        if _signal.getsignal(signal.SIGALRM) is not _on_alarm:  # first, or replaced since
            signal.signal(signal.SIGALRM, _on_alarm)  # ValueError outside the main thread
        elif threading.current_thread() is not threading.main_thread():
            raise ValueError("signal only works in main thread of the main interpreter")
        _armed = self
        signal.alarm(self._timeout)

    def cancel_death_penalty(self) -> None:
        # An alarm that goes off meanwhile has its handler run as this call returns, while
        # still armed: it raises here, and BaseDeathPenalty.__exit__ ignores it, as with
        # RQ's. None can come after.
        global _armed
        signal.alarm(0)
        _armed = None
