"""Loaded at start-up by every Python process of an RQ-suite run (this folder is on
PYTHONPATH, after the folder that holds the working tree's ``queuing``).

With RQ_SUITE_WORKER=lean, RQ's ``SimpleWorker`` is replaced, before anything else
imports it, by the project's lean worker wherever RQ's tests and RQ itself look it up:
``rq.SimpleWorker``, ``rq.worker.SimpleWorker``, ``rq.worker.worker_classes.SimpleWorker``
(and so ``import_attribute('rq.worker.SimpleWorker')``, the CLI's ``--worker-class``).
Subprocesses started by the tests (the ``rq`` CLI, worker pools) load this file too.
Without RQ_SUITE_WORKER, or with ``rq``, nothing is changed.
"""

import os

_MODE = os.environ.get("RQ_SUITE_WORKER", "rq")

if _MODE != "rq":
    from rq_suite_worker import install

    install(_MODE)
