"""The text RQ stores for a failed job, made with what does not change remembered.

RQ stores ``''.join(traceback.format_exception(*exc_info))`` with each failure (rq-dashboard
and the creators show it): 175-365 us a failure (measured) on Python 3.11, where the course's
expected failures are 18 % of the jobs. Most of it is the same each time: finding each
frame's position in its code (a walk over the code's positions) and formatting each frame's
lines (Python 3.11 parses the source line with ``ast`` to place the carets). Both depend
only on the code and the instruction (the position) and on the frame's file, line,
position, name and source text (the lines), so they are remembered here; the source
lines are still read through linecache, as the standard library reads them. The text is
the standard library's, character for character (tests/test_workers_tracebacks.py compares).

Only on CPython 3.11, whose traceback module this follows (it uses two of its private
helpers); on any other version, the standard library's own function.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from types import CodeType, FrameType, TracebackType
from typing import Any

ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]

REMEMBERING = sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11)
# Entries kept, at most, in each memo; then it starts again.
MAX_ENTRIES = 1024
_positions: dict[tuple[int, int], tuple[CodeType, tuple]] = {}
_frames: dict[tuple, str] = {}


def format_exc_info(exc_info: ExcInfo) -> str:
    """What rq.job_lifecycle.format_exc_info returns for ``exc_info``."""
    _type, value, tb = exc_info
    if not REMEMBERING or value is None:
        return "".join(traceback.format_exception(*exc_info))
    # As traceback.format_exception builds it, the stack of ``tb`` apart (it is the only
    # use of ``tb`` there in 3.11); the exceptions chained to it have theirs built there.
    summary = traceback.TracebackException(type(value), value, None, compact=True)
    summary.stack = _RememberedFrames._extract_from_extended_frame_gen(_walk(tb))
    _remember_frames(summary)
    return "".join(summary.format())


def _walk(tb: TracebackType | None) -> Iterator[tuple[FrameType, tuple]]:
    """traceback._walk_tb_with_full_positions, each code position found once."""
    while tb is not None:
        code, index = tb.tb_frame.f_code, tb.tb_lasti
        known = _positions.get((id(code), index))
        if known is None or known[0] is not code:
            if len(_positions) >= MAX_ENTRIES:
                _positions.clear()
            known = _positions[(id(code), index)] = (
                code, traceback._get_code_position(code, index))
        positions = known[1]
        if positions[0] is None:  # as the standard library: the traceback's line then
            positions = (tb.tb_lineno, *positions[1:])
        yield tb.tb_frame, positions
        tb = tb.tb_next


class _RememberedFrames(traceback.StackSummary):
    """A StackSummary whose frames' lines are formatted once per distinct frame."""

    def format_frame_summary(self, frame_summary: traceback.FrameSummary) -> str:
        if frame_summary.locals:  # a frame with its locals: formatted each time
            return super().format_frame_summary(frame_summary)
        key = (frame_summary.filename, frame_summary.lineno, frame_summary.end_lineno,
               frame_summary.colno, frame_summary.end_colno, frame_summary.name,
               frame_summary._original_line)  # the source line as linecache has it now
        text = _frames.get(key)
        if text is None:
            if len(_frames) >= MAX_ENTRIES:
                _frames.clear()
            text = _frames[key] = super().format_frame_summary(frame_summary)
        return text


def _remember_frames(summary: traceback.TracebackException) -> None:
    """The stacks of ``summary`` and of the exceptions chained or grouped in it format
    through the memo."""
    todo: list[Any] = [summary]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if type(current.stack) is traceback.StackSummary:
            current.stack.__class__ = _RememberedFrames
        todo += [current.__cause__, current.__context__, *(current.exceptions or ())]
