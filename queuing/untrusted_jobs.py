"""Only our own job functions run, and one bad job stops nothing, whoever wrote it.

Jobs are data in Redis, and others may write there. Three things follow.

**Only our functions.** An RQ job names its function and its callbacks by dotted path
(``"os.system"``), and RQ imports whatever a job names: JSON payloads only limit the
arguments. So whoever can write to Redis could run any function in our workers.
:class:`AllowedJob` checks every name a job carries against :data:`JOB_FUNCTIONS` before
anything is imported or called; a job naming anything else fails with one line
(:class:`ForbiddenJob`), and a callback that is not ours is never called. The short names
batched jobs carry (``queuing.jobs.tracked``, jobs.SHORT_NAMES) count as the names they
stand for. Every worker of the project uses it as its ``job_class``; RQ's own CLI takes it
too (``rq worker --job-class queuing.untrusted_jobs.AllowedJob``).

``EXTRA_JOB_FUNCTIONS`` (comma-separated dotted paths) lets an operator allow more, as
the tests do for their own job functions; like every setting it is the operator's to set.

**Pickle reads plain data only.** Unpickling runs whatever code the bytes name, before
any job function is looked at: every queue of ours is JSON, but RQ's cron writes its
jobs with pickle, so the one worker that reads them (``105_worker.py --tick``) uses
:class:`DataOnlyPickle`, which refuses anything but plain data (the standard library's
"restricting globals").

**A job that cannot be read fails; the worker goes on.** RQ reads a job's hash when it
takes it from the queue, and one malformed field (``result_ttl=abc``, a bad date, a key
of the wrong type) raises there, which ends RQ's worker. :class:`SkipsUnreadableJobs`
fails such a job instead (:func:`fail_unreadable`): out of the queue, into the failed
registry, its creator told why when its reply stream can be read, one line printed.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import redis
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.utils import current_timestamp, import_attribute

from queuing import console, job_events, jobs, settings
from queuing.constants import JOB_EVENTS_PREFIX

# The job functions and callbacks the project enqueues, by the name RQ stores.
JOB_FUNCTIONS = frozenset({
    "queuing.notifications.push_notification",
    "queuing.notifications.push_tracked_notification",
    "queuing.job_events.job_completed",
    "queuing.job_events.job_failed",
    "queuing.seats.take_seat",
    "queuing.seats.seat_taken",
    "queuing.seats.seat_refused",
    "queuing.senders.send_sms",
    "queuing.reminders.tick",
})

# The names jobs queued before the library moved into the queuing package carry: such
# jobs still run, as the function of the new name.
FORMER_NAMES = {name.removeprefix("queuing."): name for name in JOB_FUNCTIONS}
# The seat job's callbacks had names that meant something else in job_events.
FORMER_NAMES |= {
    former: current
    for old, current in (("seats.job_completed", "queuing.seats.seat_taken"),
                         ("seats.job_failed", "queuing.seats.seat_refused"))
    for former in (old, f"queuing.{old}")
}


def current_name(name: str) -> str:
    """``name``, or the name it has now if a job queued by an older layout carries it, or
    the name it stands for if it is a batched job's short name (jobs.SHORT_NAMES): a
    short name is allowed only when that name is, and it is that name that is imported."""
    return FORMER_NAMES.get(name) or jobs.full_name(name)


class DataOnlyPickle:
    """RQ's default serializer (pickle), reading plain data only: numbers, text, bytes,
    lists, tuples, dicts, sets, None. A pickle that names any class or function (what
    an exploit does) fails to load, so nothing in it runs."""

    @staticmethod
    def dumps(value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: bytes) -> Any:
        return _DataOnlyUnpickler(io.BytesIO(data)).load()


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


class ForbiddenJob(Exception):
    """A job names a function or callback that is not one of ours."""


def allowed_names(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """The project's job functions and those ``EXTRA_JOB_FUNCTIONS`` adds (from ``env``,
    by default the environment), read on every job: a change of the setting counts at
    once."""
    extra = settings.extra_job_functions() if env is None else settings.extra_job_functions(env)
    return _with_ours(extra)


@lru_cache(maxsize=16)
def _with_ours(extra: frozenset[str]) -> frozenset[str]:
    return JOB_FUNCTIONS | extra


def forbidden_names(job: Job, allowed: frozenset[str]) -> list[str]:
    """The names ``job`` carries (function, callbacks) that are not in ``allowed``."""
    names = [job.func_name, job._success_callback_name, job._failure_callback_name,
             job._stopped_callback_name]
    return [name for name in names if name and current_name(name) not in allowed]


class AllowedJob(Job):
    """An RQ Job that imports only allowed names (see the module's docstring)."""

    @property
    def func(self) -> Any:
        refused = forbidden_names(self, allowed_names())
        if refused:
            raise ForbiddenJob(f"{', '.join(refused)} is not one of this project's "
                               "job functions")
        if self.instance is not None:
            raise ForbiddenJob("it calls a method of an object; only plain job functions "
                               "run here")
        name = self.func_name
        return import_attribute(current_name(name)) if name else None

    @property
    def success_callback(self) -> Any:
        return self._callback(self._success_callback_name)

    @property
    def failure_callback(self) -> Any:
        return self._callback(self._failure_callback_name)

    @property
    def stopped_callback(self) -> Any:
        return self._callback(self._stopped_callback_name)

    @staticmethod
    def _callback(name: str | None) -> Any:
        """The callback ``name`` names if it is allowed, else None (never imported)."""
        if not name or current_name(name) not in allowed_names():
            return None
        return import_attribute(current_name(name))


def fail_unreadable(queue: Queue, job_id: str, error: BaseException,
                    started_as: str | None = None) -> str | None:
    """Fail job ``job_id`` of ``queue``, whose hash RQ could not read, without reading it
    as RQ would: take it out of the queue (and the intermediate list RQ moved it to, and
    the started registry when ``started_as``, its entry there, is given), add it to the
    failed registry, and tell its creator when its meta names a reply stream. Returns
    the one-line reason, or None when another worker failed it already (two can meet
    the same job: one takes it, another's maintenance looks at it meanwhile)."""
    detail = str(error).strip().splitlines()
    reason = (f"its job cannot be read ({type(error).__name__}"
              f"{': ' + detail[0] if detail else ''})")
    connection = queue.connection
    with connection.pipeline(transaction=True) as pipe:
        pipe.lrem(queue.key, 0, job_id)
        pipe.lrem(queue.intermediate_queue_key, 0, job_id)
        if started_as is not None:
            pipe.zrem(StartedJobRegistry(queue=queue).key, started_as)
        pipe.zadd(FailedJobRegistry(queue=queue).key,
                  {job_id: current_timestamp() + DEFAULT_FAILURE_TTL}, nx=True)
        first = pipe.execute()[-1]
    if not first:
        return None
    job_key = queue.job_class.redis_job_namespace_prefix + job_id
    try:
        connection.hset(job_key, "status", "failed")
        reply_to = json.loads(connection.hget(job_key, "meta") or "{}").get(job_events.REPLY_TO)
    except (redis.ResponseError, ValueError, AttributeError):  # not a hash, meta unreadable
        reply_to = None
    if isinstance(reply_to, str) and reply_to.startswith(JOB_EVENTS_PREFIX):
        job_events.publish(connection, reply_to,
                           job_events.JobEvent(job_id, job_events.FAILED, error=reason))
    return reason


def _report_on_stderr(job_id: str, reason: str) -> None:
    console.log_error(f"Job {job_id} failed: {reason}")


class GuardedQueue(Queue):
    """RQ's Queue, whose ``fetch_job`` fails a job it cannot read (:func:`fail_unreadable`,
    reported with ``report_unreadable``) and returns None, as for a job that is gone: RQ's
    own maintenance fetches the jobs of other workers' intermediate lists this way, and
    would die on a malformed one."""

    report_unreadable: Callable[[str, str], None] = staticmethod(_report_on_stderr)

    def fetch_job(self, job_id: str) -> Job | None:
        try:
            return super().fetch_job(job_id)
        except Exception as error:  # RQ's Job.restore raises ValueError and others
            reason = fail_unreadable(self, job_id, error)
            if reason is not None:
                self.report_unreadable(job_id, reason)
            return None


class SkipsUnreadableJobs:
    """A worker mixin: a job whose hash cannot be read is failed (:func:`fail_unreadable`)
    and reported with ``report_unreadable(job_id, reason)``; the worker takes the next.
    Its queues that are GuardedQueues (give the worker ``queue_class = GuardedQueue``)
    report the same way."""

    report_unreadable: Callable[[str, str], None] = staticmethod(_report_on_stderr)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for queue in self.queues:
            if isinstance(queue, GuardedQueue):
                queue.report_unreadable = self.report_unreadable

    def dequeue_job_and_maintain_ttl(self, timeout: int | None,
                                     max_idle_time: int | None = None) -> Any:
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except Exception as error:
                queue, job_id = getattr(error, "queue", None), getattr(error, "job_id", None)
                if queue is None or job_id is None:  # not a job RQ failed to read
                    raise
                if isinstance(job_id, bytes):
                    job_id = job_id.decode(errors="replace")
                reason = fail_unreadable(queue, str(job_id), error)
                if reason is not None:
                    self.report_unreadable(str(job_id), reason)
