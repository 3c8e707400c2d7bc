"""Task 7 (6-job_processor.js), terminal 2: an RQ worker on push_notification_code that
sends each job's notification. It runs until Ctrl-C.

RQ_VERBOSE=1 shows RQ's own logs. ``rq worker -w rq.worker.SimpleWorker -S json
push_notification_code``, run from this directory, does the same job.
"""

from queuing import stopping

stopping.install()  # first: a stop signal during the imports below is handled too

import common  # noqa: E402

# isort: split
from queuing import workers  # noqa: E402
from queuing.constants import PUSH_NOTIFICATION_QUEUE  # noqa: E402
from queuing.notifications import push_notification, send_notification  # noqa: E402

__all__ = ["push_notification", "send_notification"]


def main() -> int:
    return workers.run_workers(PUSH_NOTIFICATION_QUEUE, count=1)


if __name__ == "__main__":
    common.run_until_stopped(main)
