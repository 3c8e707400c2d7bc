"""The worker (the Procfile's ``worker``): sends the SMS queued by alerts and reminders.

    python 105_worker.py           # the ``sms`` queue, JSON jobs senders.send_sms
    python 105_worker.py --tick    # the ``reminders_tick`` queue filled by 104_scheduler.py

The SMS goes through the sender that the environment configures (``senders.py``): the
console by default, Twilio with the TWILIO_* variables. The tick queue has its own worker
because RQ's cron writes its jobs with RQ's default serializer (pickle) and a worker reads
every queue with one serializer; the tick job carries no data at all.
"""

from __future__ import annotations

import argparse

from rq import Queue, Worker
from rq.serializers import JSONSerializer

import common
import workers
from constants import REMINDERS_TICK_QUEUE, SMS_QUEUE
from jobs import json_queue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run an RQ worker for the SMS queue.")
    parser.add_argument("--tick", action="store_true", help="work the reminders' tick queue")
    parser.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    args = parser.parse_args(argv)
    workers.configure_logging()  # RQ's chatter only with RQ_VERBOSE=1, as the processors
    connection = common.connect(decode_responses=False)  # RQ wants bytes
    common.wait_until_connected(connection)
    if args.tick:
        worker = Worker([Queue(REMINDERS_TICK_QUEUE, connection=connection)],
                        connection=connection)
    else:
        worker = Worker([json_queue(SMS_QUEUE, connection)], connection=connection,
                        serializer=JSONSerializer)
    worker.work(burst=args.burst, logging_level=workers.logging_level())
    return 0


if __name__ == "__main__":
    common.run(main)
