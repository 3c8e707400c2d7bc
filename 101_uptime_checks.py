"""Add, list and remove uptime checks (the course's POST /checks, from the command line).

    python 101_uptime_checks.py add http://127.0.0.1:8000/health --phone 4153518780
    python 101_uptime_checks.py add example.com --protocol https --method get \
        --success-codes 200,201 --timeout 3 --phone +14153518780
    python 101_uptime_checks.py list
    python 101_uptime_checks.py history 1
    python 101_uptime_checks.py remove 1

``102_uptime_worker.py`` runs them every minute and alerts by SMS when one goes up or down.
An admin tool: it lists and removes every check, the web app's users' too (``list``
shows whose each is).
"""

from __future__ import annotations

import argparse
from datetime import datetime

import redis

import common
from queuing import uptime


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Manage the uptime checks stored in Redis.")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a check")
    add.add_argument("url", help="host and path (example.com/health), or a full http(s) URL")
    add.add_argument("--protocol", default="http", help="http or https (default: http)")
    add.add_argument("--method", default="get", help="get, post, put, delete or head")
    add.add_argument("--success-codes", default="200,201",
                     help="comma-separated HTTP codes that mean up (default: 200,201)")
    add.add_argument("--timeout", default="3", help="seconds to wait for an answer (default: 3)")
    add.add_argument("--phone", required=True, help="the number to alert by SMS")
    commands.add_parser("list", help="list the checks with their state")
    history = commands.add_parser("history", help="a check's recent outcomes, newest first")
    history.add_argument("id")
    remove = commands.add_parser("remove", help="remove a check")
    remove.add_argument("id")
    return parser.parse_args(argv)


def when_shown(seconds: float) -> str:
    return f"{datetime.fromtimestamp(seconds):%Y-%m-%d %H:%M:%S}"


def show_history(client: redis.Redis, check_id: str) -> int:
    """One line per recent outcome of a check, newest first."""
    check = uptime.get_check(client, check_id)
    if check is None:
        common.log_error(f"No check {check_id}")
        return 1
    outcomes = uptime.log_of(client, check.id)
    if not outcomes:
        common.log(f"Check {check.id} {check.describe()}: not checked yet")
    for entry in outcomes:
        outcome = uptime.Outcome(entry["state"], entry["checked_at"], entry["status_code"],
                                 entry["error"])
        common.log(f"{when_shown(outcome.checked_at)} {outcome.state} ({outcome.describe()})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    client = common.connect()
    if args.command == "add":
        try:
            check = uptime.validate(args.protocol, args.url, args.method,
                                    args.success_codes.split(","), args.timeout, args.phone)
        except uptime.InvalidCheck as error:
            common.log_error(f"Invalid check: {error}")
            return 1
        check = uptime.add_check(client, check)
        common.log(f"Check {check.id} added: {check.describe()}, up on "
                   f"{','.join(map(str, check.success_codes))}, timeout "
                   f"{check.timeout_seconds:g}s, alerts {check.phone}")
    elif args.command == "list":
        checks = uptime.all_checks(client)
        if not checks:
            common.log("No checks")
        for check in checks:
            state = uptime.state_of(client, check.id) or "not checked yet"
            last = uptime.last_checked(client, check.id)
            when = f", checked {when_shown(last)}" if last else ""
            owner = f", user {check.owner}" if check.owner else ""
            common.log(f"{check.id}: {check.describe()} -> {state}{when} "
                       f"(up on {','.join(map(str, check.success_codes))}, "
                       f"timeout {check.timeout_seconds:g}s, alerts {check.phone}{owner})")
    elif args.command == "history":
        return show_history(client, args.id)
    elif not uptime.remove_check(client, args.id):
        common.log_error(f"No check {args.id}")
        return 1
    else:
        common.log(f"Check {args.id} removed")
    return 0


if __name__ == "__main__":
    common.run(main)
