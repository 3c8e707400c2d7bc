"""Task 6 (6-job_creator.js), terminal 1: create one push notification job, then print
whether it completed or failed.

Run 6_job_processor.py in terminal 2, before or after this script: the job waits in Redis
and so do its events. Each run gets a new job id, one more than the last.
"""

import common
from queuing import jobs, notifications
from queuing.constants import PUSH_NOTIFICATION_QUEUE
from queuing.job_batch import LISTEN_SOCKET_TIMEOUT, JobBatch

JOB_DATA = {
    "phoneNumber": "4153518780",
    "message": "This is the code to verify your account",
}


def main() -> None:
    connection = jobs.rq_connection(socket_timeout=LISTEN_SOCKET_TIMEOUT)
    common.wait_until_connected(connection, quiet=True)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE, connection)
    with JobBatch(queue) as batch:
        notifications.create_notification_jobs(batch, [JOB_DATA], notifications.push_notification)
        notifications.print_events(batch, notifications.outcome_line)


if __name__ == "__main__":
    common.run(main)
