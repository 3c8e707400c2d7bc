"""Task 10 (8-job.js): create_push_notifications_jobs(jobs, queue).

Kue's function registers event handlers and returns; Python has no event loop running
behind it, so ours creates the jobs (printing their created lines) and returns their
JobBatch: ``print_job_events(batch)`` prints the rest of the lines as the jobs run.
Run as a script it does what the course's 8-job-main.js does, then waits for a worker on
push_notification_code_3 (``rq worker -w rq.worker.SimpleWorker -S json
push_notification_code_3``) and prints the events; Ctrl-C stops it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from rq import Queue

import common
from queuing import jobs, notifications
from queuing.connection import rq_client
from queuing.constants import PUSH_NOTIFICATION_QUEUE_3
from queuing.fast_enqueue import require_json_queue
from queuing.job_batch import LISTEN_SOCKET_TIMEOUT, JobBatch
from queuing.replication import NotReplicated

NOT_AN_ARRAY = "Jobs is not an array"

# Task 10 writes "Notification job JOB_ID completed", without the '#' of task 8's sample.
event_line = partial(notifications.lifecycle_line, id_prefix="")


def create_push_notifications_jobs(jobs_data: Any, queue: Queue) -> JobBatch:
    """One job per item of ``jobs_data`` (a list) in ``queue`` (its connection, name and
    serializer); raise TypeError("Jobs is not an array") for anything else.

    ``queue`` must be a JSON queue (jobs.json_queue, as main's push_notification_code_3):
    the workers read JSON jobs only. Any other queue raises ValueError before anything
    is written or printed.
    """
    if not isinstance(jobs_data, list):
        raise TypeError(NOT_AN_ARRAY)
    require_json_queue(queue)
    batch = JobBatch(queue)
    try:
        for data in jobs_data:
            # RQ's own Queue.enqueue, as in task 6 (batch.add sends the job's events to
            # the batch's stream); in the replicated mode, once the replicas have it.
            try:
                job = batch.add(notifications.push_tracked_notification, data,
                                job_id=jobs.next_job_id(queue.connection))
            except NotReplicated as error:
                common.log_error(notifications.not_confirmed_line(error))
                continue
            common.log(notifications.created_line(job.id))
    except BaseException:
        batch.close()
        raise
    return batch


def print_job_events(batch: JobBatch) -> None:
    """Print each job's progress, completed and failed lines until every job has ended."""
    with batch:
        notifications.print_events(batch, event_line)


def main() -> None:
    connection = rq_client(socket_timeout=LISTEN_SOCKET_TIMEOUT)
    common.wait_until_connected(connection, quiet=True)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_3, connection)
    job_list = [
        {"phoneNumber": "4153518780", "message": "This is the code 1234 to verify your account"},
    ]
    print_job_events(create_push_notifications_jobs(job_list, queue))


if __name__ == "__main__":
    common.run(main)
