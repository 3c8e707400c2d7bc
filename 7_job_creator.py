"""Task 8 (7-job_creator.js), terminal 1: create the course's 11 push notification jobs,
then print each job's progress, completion or failure as it happens; exit when all ended.

Run 7_job_processor.py in terminal 2, before or after this script.

Unlike tasks 6 and 10, which call RQ's ``Queue.enqueue`` once per job (three round trips
each), this creator takes the batched path (queuing/fast_enqueue.py): up to 500 jobs in one
transaction, the same job hashes RQ writes. Eleven jobs do not need it; the benchmarks,
which create thousands with this script's code, do (bench/README.md).
"""

from functools import partial

import common
from queuing import jobs, notifications
from queuing.connection import rq_client
from queuing.constants import PUSH_NOTIFICATION_QUEUE_2
from queuing.job_batch import LISTEN_SOCKET_TIMEOUT, JobBatch

JOBS = [
    {"phoneNumber": "4153518780", "message": "This is the code 1234 to verify your account"},
    {"phoneNumber": "4153518781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4153518743", "message": "This is the code 4321 to verify your account"},
    {"phoneNumber": "4153538781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4153118782", "message": "This is the code 4321 to verify your account"},
    {"phoneNumber": "4153718781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4159518782", "message": "This is the code 4321 to verify your account"},
    {"phoneNumber": "4158718781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4153818782", "message": "This is the code 4321 to verify your account"},
    {"phoneNumber": "4154318781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4151218782", "message": "This is the code 4321 to verify your account"},
]

# The course's sample output writes "Notification job #39 0% complete".
event_line = partial(notifications.lifecycle_line, id_prefix="#")


def main() -> int | None:
    connection = rq_client(socket_timeout=LISTEN_SOCKET_TIMEOUT)
    common.wait_until_connected(connection, quiet=True)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        unconfirmed = notifications.create_notification_jobs(
            batch, JOBS, notifications.push_tracked_notification)
        notifications.print_events(batch, event_line)
    return 1 if unconfirmed else None


if __name__ == "__main__":
    common.run(main)
