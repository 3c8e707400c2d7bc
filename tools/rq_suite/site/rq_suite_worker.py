"""The worker class put in place of RQ's SimpleWorker for an RQ-suite run.

``lean``: queuing.lean_worker.LeanWorker as the working tree has it, with one change:
its ``job_class`` is RQ's own ``Job`` (SimpleWorker's default). The project's workers use
untrusted_jobs.AllowedJob, which refuses to run any function but the project's, so
every job of RQ's tests would fail with ForbiddenJob; a test that passes
``job_class=...`` to the constructor still gets that class, as with SimpleWorker.
Everything else is LeanWorker's: the lean start/end scripts, the once-a-second
heartbeat, and its base recovery.RecoveringWorker's extras (a lease key per worker,
putting back the jobs of dead workers, failing unreadable jobs instead of raising).

``lean-core``: the same, without RecoveringWorker's extras: no lease, no recovery in the
heartbeat or maintenance (RQ's own clean_registries, register_birth/death). The
unreadable-job guard (untrusted_jobs.SkipsUnreadableJobs) stays: it sits in the middle
of LeanWorker's bases and cannot be taken out without copying LeanWorker's code.
"""

from __future__ import annotations

import sys

MODES = ("lean", "lean-core")


def build(mode: str) -> type:
    from rq.job import Job
    from rq.worker import SimpleWorker

    from queuing.lean_worker import LeanWorker

    if mode == "lean":
        class SuiteLeanWorker(LeanWorker):
            """LeanWorker running RQ's own Job class (see the module's docstring)."""

            job_class = Job

        return SuiteLeanWorker
    if mode == "lean-core":
        class SuiteLeanCoreWorker(LeanWorker):
            """LeanWorker with RQ's Job class and without recovery's lease and recovery."""

            job_class = Job

            def _recover(self, queue, taken=True):  # RecoveringWorker's heartbeat hook
                return None

            def register_birth(self, *args, **kwargs):
                return SimpleWorker.register_birth(self, *args, **kwargs)

            def register_death(self, *args, **kwargs):
                return SimpleWorker.register_death(self, *args, **kwargs)

            def clean_registries(self, *args, **kwargs):
                return SimpleWorker.clean_registries(self, *args, **kwargs)

        return SuiteLeanCoreWorker
    raise SystemExit(f"RQ_SUITE_WORKER must be rq, {' or '.join(MODES)}, not {mode!r}")


def install(mode: str) -> type:
    """Put the ``mode`` worker in place of SimpleWorker; return it."""
    import rq
    import rq.worker
    import rq.worker.worker_classes

    original = rq.worker.worker_classes.SimpleWorker
    worker = build(mode)
    assert issubclass(worker, original)
    for module in (rq, rq.worker, rq.worker.worker_classes):
        module.SimpleWorker = worker
    sys.modules[__name__].ORIGINAL = original
    return worker
