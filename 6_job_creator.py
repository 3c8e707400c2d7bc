"""Task 6 (6-job_creator.js), terminal 1: create one push notification job, then print
whether it completed or failed.

Run 6_job_processor.py in terminal 2, before or after this script: the job waits in Redis
and so do its events. Each run gets a new job id, one more than the last.

The job is enqueued with RQ's own ``Queue.enqueue``; the batch only adds where the job's
events go (its reply stream) and reads them back.
"""

import common
from queuing import jobs, notifications
from queuing.connection import rq_client
from queuing.constants import PUSH_NOTIFICATION_QUEUE
from queuing.job_batch import LISTEN_SOCKET_TIMEOUT, JobBatch

JOB_DATA = {
    "phoneNumber": "4153518780",
    "message": "This is the code to verify your account",
}


def main() -> None:
    connection = rq_client(socket_timeout=LISTEN_SOCKET_TIMEOUT)
    common.wait_until_connected(connection, quiet=True)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE, connection)
    with JobBatch(queue) as batch:
        # batch.reporting(): the job's meta names the batch's stream, and RQ callbacks
        # write the job's completed or failed event there (queuing/job_events.py).
        job = queue.enqueue(notifications.push_notification, JOB_DATA,
                            job_id=jobs.next_job_id(connection), **batch.reporting())
        batch.listen_for(job.id)
        common.log(notifications.created_line(job.id))
        notifications.print_events(batch, notifications.outcome_line)


if __name__ == "__main__":
    common.run(main)
