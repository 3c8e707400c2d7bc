"""Only our own job functions run, whoever wrote the job into Redis.

An RQ job names its function and its callbacks by dotted path (``"os.system"``), and RQ
imports whatever a job names: JSON payloads only limit the arguments. So whoever can
write to Redis could run any function in our workers. :class:`AllowedJob` checks every
name a job carries against :data:`JOB_FUNCTIONS` before anything is imported or called;
a job naming anything else fails with one line (:class:`ForbiddenJob`), and a callback
that is not ours is never called. Every worker of the project uses it as its
``job_class``; RQ's own CLI takes it too (``rq worker --job-class allowed_jobs.AllowedJob``).

``EXTRA_JOB_FUNCTIONS`` (comma-separated dotted paths) lets an operator allow more, as
the tests do for their own job functions; like every setting it is the operator's to set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from rq.job import Job

EXTRA_ENV = "EXTRA_JOB_FUNCTIONS"

# The job functions and callbacks the project enqueues, by the name RQ stores.
JOB_FUNCTIONS = frozenset({
    "notifications.push_notification",
    "notifications.push_tracked_notification",
    "job_events.job_completed",
    "job_events.job_failed",
    "seats.take_seat",
    "seats.job_completed",
    "seats.job_failed",
    "senders.send_sms",
    "reminders.tick",
})


class ForbiddenJob(Exception):
    """A job names a function or callback that is not one of ours."""


def allowed_names(env: Mapping[str, str] = os.environ) -> frozenset[str]:
    extra = {name.strip() for name in env.get(EXTRA_ENV, "").split(",") if name.strip()}
    return JOB_FUNCTIONS | extra


def forbidden_names(job: Job, allowed: frozenset[str]) -> list[str]:
    """The names ``job`` carries (function, callbacks) that are not in ``allowed``."""
    names = [job.func_name, job._success_callback_name, job._failure_callback_name,
             job._stopped_callback_name]
    return [name for name in names if name and name not in allowed]


class AllowedJob(Job):
    """An RQ Job that imports only allowed names (see the module's docstring)."""

    @property
    def func(self) -> Any:
        refused = forbidden_names(self, allowed_names())
        if refused:
            raise ForbiddenJob(f"job {self.id} names {', '.join(refused)}, "
                               "which is not one of this project's job functions")
        if self.instance is not None:
            raise ForbiddenJob(f"job {self.id} calls a method of an object; "
                               "only plain job functions run here")
        return super().func

    @property
    def success_callback(self) -> Any:
        return super().success_callback if self._callback_allowed(
            self._success_callback_name) else None

    @property
    def failure_callback(self) -> Any:
        return super().failure_callback if self._callback_allowed(
            self._failure_callback_name) else None

    @property
    def stopped_callback(self) -> Any:
        return super().stopped_callback if self._callback_allowed(
            self._stopped_callback_name) else None

    @staticmethod
    def _callback_allowed(name: str | None) -> bool:
        return not name or name in allowed_names()
