"""The traceback text a failed job stores is the standard library's, character for character
(tracebacks.py), however the exception is shaped, and when a source file changes."""

from __future__ import annotations

import builtins
import importlib
import sys
import traceback

import pytest
from rq import Callback
from rq.serializers import JSONSerializer

from queuing import jobs, settings, tracebacks
from queuing.connection import rq_client
from queuing.lean_worker import LeanWorker


def _nested(depth: int) -> None:
    if depth:
        _nested(depth - 1)
    values = {"a": [1, 2]}
    values["a"][0] + values[  # a line with carets under part of it, over two lines
        "b"]


def _chained() -> None:
    try:
        _nested(2)
    except KeyError as error:
        raise ValueError("while nesting") from error


def _implicit() -> None:
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        int("x")


def _suppressed() -> None:
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        raise RuntimeError("no context") from None


def _group() -> None:
    errors = []
    for call in (_chained, _implicit):
        try:
            call()
        except Exception as error:
            errors.append(error)
    group = builtins.ExceptionGroup  # Python 3.11 on (SHAPES)
    raise group("two", [*errors, group("inner", [KeyError("k")])])


def _recursive(n: int) -> int:
    return _recursive(n + 1)


def _syntax() -> None:
    compile("def f(:\n  pass", "<job>", "exec")


def _without_source() -> None:
    exec(compile("def f():\n    raise LookupError('exec')\nf()", "<no file>", "exec"), {})


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError


def _unprintable() -> None:
    raise _Unprintable


def _noted() -> None:
    error = TypeError("wide: 日本語 " + "x")
    if hasattr(error, "add_note"):  # Python 3.11 on
        error.add_note("a note")
    raise error


def _exc_info(call) -> tuple:
    try:
        call()
    except BaseException:
        return sys.exc_info()
    raise AssertionError("no exception")


SHAPES = [lambda: _nested(3), _chained, _implicit, _suppressed, lambda: _recursive(0),
          _syntax, _without_source, _unprintable, _noted,
          *([_group] if hasattr(builtins, "ExceptionGroup") else [])]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_text_is_the_standard_librarys_each_time(shape):
    for _ in range(3):  # the first time, and with what was remembered
        exc_info = _exc_info(shape)
        assert tracebacks.format_exc_info(exc_info) == "".join(
            traceback.format_exception(*exc_info))


def test_a_traceback_limit_counts(monkeypatch):
    monkeypatch.setattr(sys, "tracebacklimit", 2, raising=False)
    exc_info = _exc_info(lambda: _nested(4))
    assert tracebacks.format_exc_info(exc_info) == "".join(
        traceback.format_exception(*exc_info))


def test_a_source_file_changed_on_disk_shows_its_new_line_as_the_standard_library_does(
        tmp_path, monkeypatch):
    source = tmp_path / "changing_job.py"
    source.write_text("def fail():\n    raise KeyError('first')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("changing_job")
    texts = []
    for line in ("    raise KeyError('first')", "    raise KeyError('edited')  # longer"):
        source.write_text(f"def fail():\n{line}\n")
        exc_info = _exc_info(module.fail)
        texts.append(tracebacks.format_exc_info(exc_info))
        assert texts[-1] == "".join(traceback.format_exception(*exc_info))
    assert "edited" in texts[1]


# --- through the lean worker --------------------------------------------------------

_seen: list[str] = []


def failing_job(depth: int) -> None:
    _chained() if depth else _nested(depth)


def remember_text(job, connection, exc_type, exc_value, tb) -> None:
    """A failure callback: the standard library's text for the job's failure."""
    _seen.append("".join(traceback.format_exception(exc_type, exc_value, tb)))


def test_the_lean_worker_stores_the_standard_librarys_text(redis_url, monkeypatch):
    here = __name__
    monkeypatch.setenv(settings.EXTRA_JOB_FUNCTIONS_ENV,
                       f"{here}.failing_job,{here}.remember_text")
    connection = rq_client(redis_url)
    queue = jobs.json_queue("tracebacks", connection)
    queued = [queue.enqueue(failing_job, depth, on_failure=Callback(remember_text))
              for depth in (0, 1, 0)]
    _seen.clear()
    LeanWorker([queue], connection=connection, serializer=JSONSerializer).work(burst=True)
    stored = [queue.fetch_job(job.id).latest_result().exc_string for job in queued]
    assert stored == _seen
    assert len(stored) == 3 and "while nesting" in stored[1]
