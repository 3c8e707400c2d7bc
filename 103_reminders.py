"""Add, list and remove reminders: a text sent to some phones at set times of day.

    python 103_reminders.py add "Take your medicine" --phone 4153518780 --phone +14155550100
    python 103_reminders.py add "Stand up" --phone 4153518780 --times 10:30,15:30
    python 103_reminders.py add "Call home" --phone 1-415-351-8780 --timezone America/New_York
    python 103_reminders.py list
    python 103_reminders.py remove 1

Times default to 09:00, 12:00, 18:00 and 22:00, in the reminder's ``--timezone`` (an IANA
name), else REMINDER_TIMEZONE (default: local time). Phone numbers are read as people
type them (phones.py) and stored in E.164.
``104_scheduler.py`` (RQ's cron) sends them; ``105_worker.py`` delivers the SMS.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

import common
from queuing import reminders, settings
from queuing.constants import DEFAULT_REMINDER_TIMES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Manage the reminders stored in Redis.")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a reminder")
    add.add_argument("message")
    add.add_argument("--phone", action="append", required=True,
                     help="a recipient (repeat for several)")
    add.add_argument("--times", default=",".join(DEFAULT_REMINDER_TIMES),
                     help="comma-separated HH:MM (default: %(default)s)")
    add.add_argument("--timezone", default="",
                     help="an IANA time zone such as America/New_York "
                          "(default: REMINDER_TIMEZONE, else local time)")
    commands.add_parser("list", help="list the reminders and when each is next sent")
    remove = commands.add_parser("remove", help="remove a reminder")
    remove.add_argument("id")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tz = settings.timezone()
    grace = reminders.grace()
    client = common.connect()
    if args.command == "add":
        try:
            reminder = reminders.validate(args.message, args.phone, args.times, args.timezone)
        except reminders.InvalidReminder as error:
            common.log_error(f"Invalid reminder: {error}")
            return 1
        reminder = reminders.add_reminder(client, reminder)
        common.log(f"Reminder {reminder.id} added: {reminder.message!r} to "
                   f"{', '.join(reminder.phones)} at {', '.join(reminder.times)}"
                   f"{f' ({reminder.timezone})' if reminder.timezone else ''}")
    elif args.command == "list":
        now = datetime.now(timezone.utc)
        found = reminders.all_reminders(client)
        if not found:
            common.log("No reminders")
        for reminder in found:
            upcoming = reminders.upcoming_send(client, reminder, now, tz, grace)
            due = " (due now: the next tick sends it)" if upcoming <= now else ""
            zone = f" ({reminder.timezone})" if reminder.timezone else ""
            common.log(f"{reminder.id}: {reminder.message!r} to {', '.join(reminder.phones)} "
                       f"at {', '.join(reminder.times)}{zone}; "
                       f"next {upcoming:%Y-%m-%d %H:%M %Z}{due}")
    elif not reminders.remove_reminder(client, args.id):
        common.log_error(f"No reminder {args.id}")
        return 1
    else:
        common.log(f"Reminder {args.id} removed")
    return 0


if __name__ == "__main__":
    common.run(main)
