"""The scheduler: RQ's own cron queues the reminders' tick every minute.

The tick (``reminders.tick``) goes to the ``reminders_tick`` queue, where
``105_worker.py --tick`` runs it; it queues the SMS of every reminder due that minute.
Running two schedulers is safe: each reminder's time slot is claimed once (SET NX).

``--every SECONDS`` (or ``REMINDER_TICK_SECONDS``) ticks on an interval instead of at
each minute, for trying it out.

:func:`run` is RQ's ``CronScheduler.start()`` step for step, except how it stops: RQ's
raises an exception from the signal handler, which a log call or a Redis call in progress
can swallow (measured: a Ctrl-C in the first moments left a traceback, once a scheduler
that went on running). Here Ctrl-C or SIGTERM only records a stop that the loop checks
(stopping.py).
"""

from __future__ import annotations

from queuing import stopping

stopping.install()  # first: a stop signal during the imports below is handled too


# isort: split
import argparse  # noqa: E402
import threading  # noqa: E402

from rq.cron import CronScheduler  # noqa: E402

import common  # noqa: E402
from queuing import connection, reminders, settings, workers  # noqa: E402
from queuing.constants import REMINDERS_TICK_QUEUE  # noqa: E402

EVERY_MINUTE = "* * * * *"
TICK_TIMEOUT_SECONDS = 60
# A tick nobody ran within this long is dropped: the next one sends what is due.
TICK_TTL_SECONDS = 120


def run(scheduler: CronScheduler, stop: threading.Event | None = None) -> None:
    """Queue the registered jobs when due, until a stop signal (or ``stop`` is set)."""
    stopped, wait = (stop.is_set, stop.wait) if stop else (stopping.requested, stopping.wait)
    scheduler.register_birth()
    try:
        while not stopped():
            if scheduler.enqueue_jobs():
                scheduler.save()  # the jobs' next times, for `rq cron` monitoring
            scheduler.heartbeat()
            wait(scheduler.calculate_sleep_interval())
    finally:
        scheduler.register_death()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Queue the reminders' tick with RQ's cron.")
    parser.add_argument("--every", type=int, help="tick every N seconds, not every minute")
    args = parser.parse_args(argv)
    every = args.every or settings.reminder_tick_seconds()  # None: every minute (cron)
    settings.timezone()  # a bad REMINDER_TIMEZONE stops us here, not in every tick
    rq_client = connection.rq_client()
    common.wait_until_connected(rq_client, sleep=stopping.sleep)
    workers.configure_logging()  # RQ's chatter only with RQ_VERBOSE=1, as the processors
    scheduler = CronScheduler(connection=rq_client, logging_level=workers.logging_level())
    when = {"interval": every} if every else {"cron": EVERY_MINUTE}
    scheduler.register(reminders.tick, queue_name=REMINDERS_TICK_QUEUE,
                       job_timeout=TICK_TIMEOUT_SECONDS, ttl=TICK_TTL_SECONDS,
                       result_ttl=0, **when)  # a done tick is deleted at once
    common.log(f"Scheduler started: reminders tick "
               f"{f'every {every}s' if every else 'every minute'}")
    run(scheduler)
    common.log("Scheduler stopped")
    return 0


if __name__ == "__main__":
    common.run_until_stopped(main)
