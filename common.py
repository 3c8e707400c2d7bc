"""What every script shares: the Redis connection, the course's log lines, clean exits.

The connection comes from ``REDIS_URL`` (Redis as a backing service, 12-factor style).
Nothing here connects at import time: a client is made when a script asks for one,
and redis-py only opens a socket on the first command.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import redis
import redis.asyncio
from dotenv import load_dotenv

from constants import DEFAULT_REDIS_URL

REDIS_URL_ENV = "REDIS_URL"
# The .env file scripts read at start (default: .env beside them; empty: none).
ENV_FILE_ENV = "ENV_FILE"
DEFAULT_ENV_FILE = Path(__file__).resolve().parent / ".env"

CONNECTED = "Redis client connected to the server"
NOT_CONNECTED = "Redis client not connected to the server: {error}"

# node_redis waits about 0.2 s before its first reconnection and 1.7 times longer each time.
FIRST_RETRY_DELAY = 0.2
RETRY_FACTOR = 1.7
MAX_RETRY_DELAY = 5.0

EXIT_INTERRUPTED = 130
EXIT_BAD_CONFIG = 2


class ConfigError(ValueError):
    """A setting from the environment cannot be used; the message names the variable."""


class InvalidRedisURL(ConfigError):
    """REDIS_URL cannot be used; the message never repeats the URL (it may hold a password)."""


def log(line: object) -> None:
    """Print one line and flush it, so it shows at once even when stdout is a pipe."""
    print(line, flush=True)


def redis_print(reply: object) -> None:
    """The equivalent of node_redis's ``redis.print``: ``Reply: OK``, ``Reply: 1``.

    redis-py turns the server's ``OK`` status reply into ``True``; print what the server said.
    """
    log(f"Reply: {'OK' if reply is True else reply}")


def load_env(path: Path | str | None = None) -> bool:
    """Read a ``.env`` file into os.environ if there is one; variables already set win.

    12-factor: configuration lives in the environment, and ``.env`` only fills it in for
    development, as honcho does. True if a file was read.
    """
    if path is None:
        path = os.environ.get(ENV_FILE_ENV, DEFAULT_ENV_FILE)
    return bool(path) and Path(path).is_file() and load_dotenv(path, override=False)


def redis_url() -> str:
    return os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


def connect(url: str | None = None, **options) -> redis.Redis:
    """A client for ``url`` (default: ``REDIS_URL``) that answers with str, not bytes."""
    return _from_url(redis.Redis, url, options)


def connect_async(url: str | None = None, **options) -> redis.asyncio.Redis:
    """The asyncio flavour of :func:`connect`."""
    return _from_url(redis.asyncio.Redis, url, options)


def _from_url(client_class, url: str | None, options: dict):
    options.setdefault("decode_responses", True)
    try:
        return client_class.from_url(url or redis_url(), **options)
    except ValueError as error:
        raise InvalidRedisURL(
            f"{REDIS_URL_ENV} is not a usable Redis URL (redis://, rediss:// or unix://): {error}"
        ) from None


def retry_delays() -> Iterator[float]:
    """Growing waits between connection attempts, as node_redis does, capped."""
    delay = FIRST_RETRY_DELAY
    while True:
        yield delay
        delay = min(delay * RETRY_FACTOR, MAX_RETRY_DELAY)


def not_connected_line(error: BaseException) -> str:
    return NOT_CONNECTED.format(error=error)


def wait_until_connected(client: redis.Redis | redis.client.PubSub,
                         check: Callable[[], object] | None = None,
                         sleep: Callable[[float], None] = time.sleep,
                         quiet: bool = False) -> None:
    """Run ``check`` (default: the client's PING) until the server answers, logging each
    failure, then log the connected line (node_redis logs it again on every reconnection).

    ``quiet``: log the connected line only after a failure, for the scripts whose course
    output has none (the job creators and processors).
    """
    failed = False
    for delay in retry_delays():
        try:
            (check or client.ping)()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log(not_connected_line(error))
            failed = True
            sleep(delay)
        else:
            if failed or not quiet:
                log(CONNECTED)
            return


async def wait_until_connected_async(client: redis.asyncio.Redis) -> None:
    """:func:`wait_until_connected` for redis.asyncio clients."""
    for delay in retry_delays():
        try:
            await client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log(not_connected_line(error))
            await asyncio.sleep(delay)
        else:
            log(CONNECTED)
            return


def run(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's ``main`` with ``.env`` read, and exit: Ctrl-C, a bad setting (exit 2)
    and a lost server end it without a traceback."""
    try:
        load_env()
        status = main()
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    except ConfigError as error:
        print(error, file=sys.stderr, flush=True)
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
