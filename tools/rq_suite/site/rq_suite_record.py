"""A pytest plugin (``-p rq_suite_record``) that writes each test's outcome as it is
known, one JSON line per test, to $RQ_SUITE_RECORD: a run cut short by its time limit
still leaves the outcomes of the tests it ran. It also records which class stood in for
SimpleWorker, so the report shows the substitution really happened."""

from __future__ import annotations

import json
import os

_outcomes: dict[str, dict] = {}
_file = None


def _write(entry: dict) -> None:
    _file.write(json.dumps(entry) + "\n")
    _file.flush()


def _short(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        text = crash.message
    elif isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        text = str(report.longrepr[2])
    else:
        text = str(report.longrepr or "")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else "")[:240]


def pytest_configure(config):
    global _file
    path = os.environ.get("RQ_SUITE_RECORD")
    if path:
        _file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the session)
        import rq
        import rq.worker

        worker = rq.worker.SimpleWorker
        _write({"meta": "worker", "class": f"{worker.__module__}.{worker.__qualname__}",
                "mro": [f"{c.__module__}.{c.__qualname__}" for c in worker.__mro__[:8]],
                "same_in_rq": rq.SimpleWorker is worker})


def pytest_runtest_logreport(report):
    if _file is None:
        return
    entry = _outcomes.setdefault(report.nodeid, {"test": report.nodeid, "outcome": "passed",
                                                 "message": "", "duration": 0.0})
    entry["duration"] += report.duration
    if report.when == "call" and hasattr(report, "wasxfail"):
        entry["outcome"] = "xpassed" if report.passed else "xfailed"
    elif report.failed:
        if entry["outcome"] == "passed":
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["message"] = f"{report.when}: {_short(report)}" if report.when != "call" \
                else _short(report)
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
        entry["message"] = _short(report)
    if report.when == "teardown":
        _write(_outcomes.pop(report.nodeid))


def pytest_unconfigure(config):
    """Once pytest has reported: end the processes the tests left running (a worker pool
    whose test failed leaves workers that Python's exit would wait for, forever)."""
    if _file is None:
        return
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        child.terminate()
    _gone, alive = psutil.wait_procs(children, timeout=3)
    for child in alive:
        child.kill()
    if children:
        _write({"meta": "leftover", "processes": len(children)})
