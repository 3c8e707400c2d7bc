"""Task 9 (7-job_processor.js), terminal 2: two RQ workers on push_notification_code_2,
so two jobs run at a time. Blacklisted numbers fail; the others report progress 0 then 50
and are sent. It runs until Ctrl-C.

RQ_VERBOSE=1 shows RQ's own logs. ``rq worker-pool -n 2 -w rq.worker.SimpleWorker -S json
push_notification_code_2``, run from this directory, does the same job.
"""

from queuing import stopping

stopping.install()  # first: a stop signal during the imports below is handled too

import common  # noqa: E402

# isort: split
from queuing import workers  # noqa: E402
from queuing.constants import PUSH_NOTIFICATION_QUEUE_2  # noqa: E402
from queuing.notifications import (  # noqa: E402
    BLACKLISTED_NUMBERS,
    push_tracked_notification,
    send_tracked_notification,
)

__all__ = ["BLACKLISTED_NUMBERS", "push_tracked_notification", "send_tracked_notification"]

JOBS_AT_A_TIME = 2


def main() -> int:
    return workers.run_workers(PUSH_NOTIFICATION_QUEUE_2, count=JOBS_AT_A_TIME)


if __name__ == "__main__":
    common.run_until_stopped(main)
