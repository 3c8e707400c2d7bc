"""The worker (the Procfile's ``worker``): sends the SMS queued by alerts and reminders.

    python 105_worker.py           # the ``sms`` queue, JSON jobs senders.send_sms
    python 105_worker.py --tick    # the ``reminders_tick`` queue filled by 104_scheduler.py

The SMS goes through the sender that the environment configures (``senders.py``): the
console by default, Twilio with the TWILIO_* variables; a missing or malformed one stops
the worker at once (exit 2). Each failed job prints one line, ``SMS job 12 failed: ...``.
It is the processors' worker (workers.py): it stops as they do on Ctrl-C or SIGTERM.
The tick queue has its own worker because RQ's cron writes its jobs with RQ's default
serializer (pickle) and a worker reads every queue with one serializer; the tick job
carries no data at all, and its worker unpickles plain data only (untrusted_jobs.py).
"""

from __future__ import annotations

from queuing import stopping

stopping.install()  # first: a stop signal during the imports below is handled too


# isort: split
import argparse  # noqa: E402

import common  # noqa: E402
from queuing import senders, workers  # noqa: E402
from queuing.constants import REMINDERS_TICK_QUEUE, SMS_QUEUE  # noqa: E402
from queuing.untrusted_jobs import DataOnlyPickle  # noqa: E402

SMS_JOB = "SMS job"
TICK_JOB = "Reminders tick job"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run an RQ worker for the SMS queue.")
    parser.add_argument("--tick", action="store_true", help="work the reminders' tick queue")
    parser.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    args = parser.parse_args(argv)
    if not args.tick:
        senders.check_settings()
    connection = common.connect(decode_responses=False)  # RQ wants bytes
    common.wait_until_connected(connection, sleep=stopping.sleep)
    connection.close()
    if args.tick:  # RQ's cron writes pickled jobs: read them as plain data only
        return workers.work(REMINDERS_TICK_QUEUE, serializer=DataOnlyPickle,
                            job_label=TICK_JOB, burst=args.burst)
    return workers.work(SMS_QUEUE, job_label=SMS_JOB, burst=args.burst)


if __name__ == "__main__":
    common.run_until_stopped(main)
