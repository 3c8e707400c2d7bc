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
from queuing.replication import NotReplicated

JOB_DATA = {
    "phoneNumber": "4153518780",
    "message": "This is the code to verify your account",
}


def main() -> int | None:
    connection = rq_client(socket_timeout=LISTEN_SOCKET_TIMEOUT)
    common.wait_until_connected(connection, quiet=True)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE, connection)
    status = None
    with JobBatch(queue) as batch:
        # batch.add: Queue.enqueue with the batch's reporting options (the job's meta names
        # the batch's stream, and RQ callbacks write the job's completed or failed event
        # there: queuing/job_events.py); in the replicated mode, once the replicas have it.
        try:
            job = batch.add(notifications.push_notification, JOB_DATA,
                            job_id=jobs.next_job_id(connection))
        except NotReplicated as error:
            common.log_error(notifications.not_confirmed_line(error))
            status = 1
        else:
            common.log(notifications.created_line(job.id))
        notifications.print_events(batch, notifications.outcome_line)
    return status


if __name__ == "__main__":
    common.run(main)
