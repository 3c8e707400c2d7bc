"""How a numbered script runs: ``.env`` read, then ``main``, then one clean exit.

Ctrl-C, a bad setting (one line on stderr, exit 2) and a lost server end a script without a
traceback. Long-running scripts (processors, workers, the scheduler) use
:func:`run_until_stopped`, with the stop-signal policy of :mod:`queuing.stopping`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

import redis

from queuing import stopping
from queuing.connection import not_connected_line
from queuing.console import log, log_error
from queuing.settings import ConfigError, load_env
from queuing.urls import refused_setting

EXIT_INTERRUPTED = 130
EXIT_BAD_CONFIG = 2


def run(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's ``main`` with ``.env`` read, and exit: Ctrl-C, a bad setting (exit 2,
    one line on stderr, also when the server refused it) and a lost server end it without a
    traceback."""
    try:
        load_env()
        status = main()
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    except ConfigError as error:
        log_error(error)
        status = EXIT_BAD_CONFIG
    except redis.ResponseError as error:
        # A setting only the server could refuse, met after the first PING (a worker's
        # registration, a request): one line too. Any other answer is a bug to show.
        refused = refused_setting(error)
        if refused is None:
            raise
        log_error(refused)
        status = EXIT_BAD_CONFIG
    except (redis.ConnectionError, redis.TimeoutError) as error:
        # The server went away in the middle of the work: say so in the course's words.
        log(not_connected_line(error))
        status = 1
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    sys.exit(status or 0)


def run_until_stopped(main: Callable[[], int | None]) -> NoReturn:
    """:func:`run` for a long-running script: a stop asked for before or while ``main``
    starts (:class:`stopping.Stopped`) ends it with exit 0, as a stop once it runs does."""

    def until_stopped() -> int | None:
        try:
            stopping.check()
            return main()
        except stopping.Stopped:
            return 0

    run(until_stopped)
