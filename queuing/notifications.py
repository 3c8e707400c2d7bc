"""The course's push notifications (tasks 6-10): the job functions and the creators' lines.

The job functions are plain module-level functions, so RQ finds them by their dotted
path (``notifications.push_notification``) from our processors and from ``rq worker``
started at the project's root. A job's data is the course's object,
``{"phoneNumber": "...", "message": "..."}``, passed as the function's one argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from queuing import console, jobs, senders
from queuing.job_batch import JobBatch, in_batches
from queuing.job_events import COMPLETED, FAILED, PROGRESS, JobEvent, report_progress
from queuing.replication import NotReplicated

BLACKLISTED_NUMBERS = ("4153518780", "4153518781")
FIELDS = ("phoneNumber", "message")

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "null"}


class BadJobData(ValueError):
    """The job's data is not ``{"phoneNumber": string, "message": string}``."""


class BlacklistedNumber(jobs.ExpectedJobFailure):
    """Kue's ``done(new Error(...))`` for a blacklisted phone number."""


# --- Processor side ---------------------------------------------------------------------

def send_notification(phone_number: str, message: str) -> None:
    """Task 7's sendNotification, through the sender the environment configures: by
    default the course's line, ``Sending notification to PHONE_NUMBER, with message:
    MESSAGE``; a real SMS when Twilio is configured (senders.py). A number that cannot
    be sent to, or a refused SMS, raises senders.NotificationError: the job fails."""
    senders.sender_from_env().send(phone_number, message)


def send_tracked_notification(phone_number: str, message: str) -> None:
    """Task 9's sendNotification: progress 0, fail if blacklisted, progress 50, send."""
    report_progress(0)
    if phone_number in BLACKLISTED_NUMBERS:
        raise BlacklistedNumber(f"Phone number {phone_number} is blacklisted")
    report_progress(50)
    send_notification(phone_number, message)


def notification_fields(data: Any) -> tuple[str, str]:
    """The phone number and message of a job's data, or BadJobData saying what is wrong."""
    if not isinstance(data, dict):
        raise BadJobData(f"job data must be an object with {' and '.join(FIELDS)}, "
                         f"not {_json_type(data)}")
    for field in FIELDS:
        if field not in data:
            raise BadJobData(f"job data has no {field}")
        if not isinstance(data[field], str):
            raise BadJobData(f"{field} must be a string, not {_json_type(data[field])}")
    return data["phoneNumber"], data["message"]


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def push_notification(data: Any) -> None:
    """The job of queue push_notification_code (task 7)."""
    send_notification(*notification_fields(data))


def push_tracked_notification(data: Any) -> None:
    """The job of queues push_notification_code_2 and _3 (tasks 9 and 10).

    Data that cannot be sent fails the job before any progress is reported.
    """
    send_tracked_notification(*notification_fields(data))


# --- Creator side -----------------------------------------------------------------------

def created_line(job_id: str) -> str:
    return f"Notification job created: {job_id}"


def outcome_line(event: JobEvent) -> str | None:
    """Task 6's lines: the outcome only, without the job id; None for progress."""
    return {COMPLETED: "Notification job completed",
            FAILED: "Notification job failed"}.get(event.kind)


def lifecycle_line(event: JobEvent, id_prefix: str = "#") -> str:
    """Tasks 8 and 10's lines. The course's sample output writes ``#39``, the task 10 text
    ``39``: ``id_prefix`` chooses."""
    job = f"Notification job {id_prefix}{event.job_id}"
    if event.kind == PROGRESS:
        return f"{job} {event.progress}% complete"
    if event.kind == FAILED:
        return f"{job} failed: {event.error}"
    return f"{job} completed"


def not_confirmed_line(error: NotReplicated) -> str:
    """Said instead of the created lines of jobs the replicas did not confirm
    (REDIS_MIN_REPLICAS): "Notification job not confirmed: 12 (only 0 of 1 replicas have
    the write)", "Notification jobs not confirmed: 12 to 511 (...)"."""
    ids = error.job_ids
    if len(ids) == 1:
        return f"Notification job not confirmed: {ids[0]} ({error})"
    return f"Notification jobs not confirmed: {ids[0]} to {ids[-1]} ({error})"


def create_notification_jobs(batch: JobBatch, jobs_data: Iterable[Any],
                             func: Callable[[Any], None]) -> list[str]:
    """Enqueue one ``func(data)`` job per item, each with a new id, and print its created line.

    The jobs go in batches of ``ENQUEUE_BATCH``, one transaction each (JobBatch.add_many);
    each batch's created lines are printed together, in id order, once its jobs are in
    Redis: one write instead of one per line. In the replicated mode a batch the replicas
    did not confirm gets one not-confirmed line on stderr instead; the ids of such jobs
    are returned (the batch still hears their events).
    """
    unconfirmed: list[str] = []
    for items in in_batches(jobs_data):
        try:
            job_ids = batch.add_many(func, [(data,) for data in items])
        except NotReplicated as error:
            console.log_error(not_confirmed_line(error))
            unconfirmed += error.job_ids
            continue
        console.log("\n".join(created_line(job_id) for job_id in job_ids))
    return unconfirmed


def print_events(batch: JobBatch, line: Callable[[JobEvent], str | None]) -> None:
    """Print ``line(event)`` for each event of the batch's jobs, until each has ended."""
    for event in batch.events():
        text = line(event)
        if text is not None:
            console.log(text)
