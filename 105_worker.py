"""The worker (the Procfile's ``worker``): sends the SMS queued by alerts and reminders.

    python 105_worker.py           # the ``sms`` queue, JSON jobs senders.send_sms
    python 105_worker.py --tick    # the ``reminders_tick`` queue filled by 104_scheduler.py

It is the processors' worker (``workers.run_workers``: RQ's non-forking SimpleWorker with
only the project's job functions, dead workers' jobs put back, one line per failed job),
and it stops as they do on Ctrl-C or SIGTERM. The SMS goes through the sender that the
environment configures (``senders.py``): the console by default, Twilio with the TWILIO_*
variables; a missing or malformed one stops the worker at once (exit 2). Each failed job
prints one line with its reason. An SMS is tried again 10 s, 1 min and 5 min after a
failure (senders.SMS_RETRY_INTERVALS), so the SMS worker also runs RQ's scheduler, which
brings the delayed jobs back (``rq worker --with-scheduler``)::

    SMS job 12 failed (retry 1 of 3 in 10s): Twilio could not be reached ...
    SMS job 12 failed (gave up after 3 retries): Twilio could not be reached ...

Every queue is JSON but the tick's. RQ 3.0's cron cannot be given a serializer:
``CronScheduler`` takes none, and ``CronJob.enqueue`` makes a plain
``Queue(name, connection=...)``, which pickles. So the tick queue has its own worker (a
worker reads every queue with one serializer), which unpickles plain data only
(``untrusted_jobs.DataOnlyPickle``): the tick job carries no data at all.
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
    if args.tick:  # RQ's cron writes pickled jobs: read them as plain data only
        return workers.run_workers(REMINDERS_TICK_QUEUE, serializer=DataOnlyPickle,
                                   job_label=TICK_JOB, burst=args.burst)
    senders.check_settings()
    return workers.run_workers(SMS_QUEUE, job_label=SMS_JOB, burst=args.burst,
                               with_scheduler=True)


if __name__ == "__main__":
    common.run_until_stopped(main)
