"""Task 7 (6-job_processor.js), terminal 2: an RQ worker on push_notification_code that
sends each job's notification. It runs until Ctrl-C.

RQ_VERBOSE=1 shows RQ's own logs. ``rq worker -w rq.worker.SimpleWorker -S json
push_notification_code``, run from this directory, does the same job.
"""

import stopping  # first: a stop signal during the imports below is handled too

# isort: split
import workers
from constants import PUSH_NOTIFICATION_QUEUE
from notifications import push_notification, send_notification

__all__ = ["push_notification", "send_notification"]


def main() -> int:
    return workers.run_workers(PUSH_NOTIFICATION_QUEUE, count=1)


if __name__ == "__main__":
    stopping.run(main)
