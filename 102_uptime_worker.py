"""The uptime worker: every minute, run every check at once and alert on a change of state.

This is the course's ``workers.init``: gather all checks, run them, loop. Each check is
``up`` or ``down``; when one changes (not on its first run) an SMS alert is queued on the
``sms`` queue for ``105_worker.py`` to send. ``UPTIME_INTERVAL_SECONDS`` (default 60) or
``--interval`` sets the period; ``--once`` runs a single round.
"""

from __future__ import annotations

from queuing import stopping

stopping.install()  # first: a stop signal during the imports below is handled too


# isort: split
import argparse  # noqa: E402
import time  # noqa: E402

import redis  # noqa: E402

import common  # noqa: E402
from queuing import connection, settings, uptime  # noqa: E402
from queuing.constants import DEFAULT_UPTIME_INTERVAL_SECONDS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the uptime checks in a loop.")
    parser.add_argument("--interval", type=float, help=f"seconds between rounds (default: "
                        f"{settings.UPTIME_INTERVAL_ENV} or {DEFAULT_UPTIME_INTERVAL_SECONDS})")
    parser.add_argument("--once", action="store_true", help="run one round and exit")
    args = parser.parse_args(argv)
    interval = args.interval or settings.uptime_interval_seconds()
    allow_private = settings.uptime_allow_private()
    client = common.connect()
    rq_client = connection.rq_client()
    common.wait_until_connected(client, sleep=stopping.sleep)
    if not args.once:
        common.log(f"Uptime worker started: a round every {interval:g}s")
    # Ctrl-C or SIGTERM lets the round in progress finish, then the loop ends (exit 0);
    # a second one stops at once (stopping.py).
    while not stopping.requested():
        started = time.monotonic()
        try:
            uptime.run_round(client, rq_client, log=common.log, allow_private=allow_private)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            common.log(common.not_connected_line(error))  # try again next round
        if args.once:
            break
        stopping.wait(max(0.0, interval - (time.monotonic() - started)))
    return 0


if __name__ == "__main__":
    common.run_until_stopped(main)
