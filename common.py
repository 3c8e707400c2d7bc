"""What every script shares: the Redis connection, the course's log lines, clean exits.

The connection comes from ``REDIS_URL`` (Redis as a backing service, 12-factor style).
Nothing here connects at import time: a client is made when a script asks for one,
and redis-py only opens a socket on the first command.
"""

from __future__ import annotations

import asyncio
import difflib
import math
import os
import re
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qsl, urlsplit

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
    _write_line(sys.stdout, line)


def log_error(line: object) -> None:
    """:func:`log` for stderr."""
    _write_line(sys.stderr, line)


def _write_line(stream, line: object) -> None:
    # One write call for the text and its newline: print() makes two, and when the stream
    # is unbuffered (PYTHONUNBUFFERED=1) each is its own write(2), so the lines of two
    # processes sharing a pipe could be cut in two by each other.
    stream.write(f"{line}\n")
    stream.flush()


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


EMPTY_REDIS_URL = (f"{REDIS_URL_ENV} is empty: unset it to use the default {DEFAULT_REDIS_URL}, "
                   "or set it to a Redis URL")


def redis_url() -> str:
    """``REDIS_URL``, or the default when it is not set; a ConfigError when it is empty."""
    url = os.environ.get(REDIS_URL_ENV)
    if url is None:
        return DEFAULT_REDIS_URL
    if not url.strip():
        raise ConfigError(EMPTY_REDIS_URL)
    return url


def connect(url: str | None = None, **options) -> redis.Redis:
    """A client for ``url`` (default: ``REDIS_URL``) that answers with str, not bytes."""
    return _from_url(redis.Redis, url, options)


def connect_async(url: str | None = None, **options) -> redis.asyncio.Redis:
    """The asyncio flavour of :func:`connect`."""
    return _from_url(redis.asyncio.Redis, url, options)


def _from_url(client_class, url: str | None, options: dict):
    url = redis_url() if url is None else url
    check_redis_url(url)
    options.setdefault("decode_responses", True)
    try:
        return client_class.from_url(url, **options)
    except ValueError:
        raise InvalidRedisURL(f"{REDIS_URL_ENV} is not a usable Redis URL") from None


# --- What a REDIS_URL may hold ---------------------------------------------------------
# redis-py's parse_url checks little: a database path that is not a number means db 0,
# an unknown option or one of another scheme fails at the first command (TypeError), and
# Redis refuses a client name with spaces. So the URL is checked here, up front, against
# the options redis-py 8 reads from a URL (redis/connection.py, URL_QUERY_ARGUMENT_PARSERS,
# plus the connection classes' own string arguments). Messages never repeat the URL or a
# value from it: either may hold a password.

_TRUE_WORDS = {"1", "t", "true", "y", "yes"}
_FALSE_WORDS = {"0", "f", "false", "n", "no"}  # redis-py's FALSE_STRINGS; "off" means True


def _whole(minimum: int) -> Callable[[str], bool]:
    return lambda value: value.isascii() and value.isdigit() and int(value) >= minimum


def _seconds(value: str) -> bool:
    try:
        seconds = float(value)
    except ValueError:
        return False
    return math.isfinite(seconds) and seconds > 0


def _flag(value: str) -> bool:
    return value.lower() in _TRUE_WORDS | _FALSE_WORDS


def _client_name(value: str) -> bool:
    # Redis takes the printable ASCII characters but the space.
    return all("!" <= char <= "~" for char in value)


def _verify_flags(value: str) -> bool:
    try:
        redis.connection.parse_ssl_verify_flags(value)
    except (AttributeError, ValueError):
        return False
    return True


def _anything(value: str) -> bool:
    return True


_TLS_VERSIONS = {str(int(version)) for version in ssl.TLSVersion}

# option: (check of its value, what the value must be)
_ANY_SCHEME_OPTIONS: dict[str, tuple[Callable[[str], bool], str]] = {
    "db": (_whole(0), "a database number (0, 1, ...)"),
    "socket_timeout": (_seconds, "a number of seconds more than 0"),
    "socket_connect_timeout": (_seconds, "a number of seconds more than 0"),
    "socket_read_size": (_whole(1), "a whole number more than 0"),
    "retry_on_timeout": (_flag, "true or false"),
    "health_check_interval": (_whole(0), "a whole number of seconds"),
    "max_connections": (_whole(1), "a whole number more than 0"),
    "protocol": (lambda value: value in ("2", "3"), "2 or 3"),
    "legacy_responses": (_flag, "true or false"),
    "client_name": (_client_name, "printable characters without spaces"),
    "username": (_anything, ""),
    "password": (_anything, ""),
}
_TCP_OPTIONS = {
    "socket_keepalive": (_flag, "true or false"),
}
_TLS_OPTIONS = {
    "ssl_cert_reqs": (lambda value: value in ("none", "optional", "required"),
                      "none, optional or required"),
    "ssl_check_hostname": (_flag, "true or false"),
    "ssl_min_version": (lambda value: value in _TLS_VERSIONS,
                        "a TLS version number (771 for TLS 1.2, 772 for TLS 1.3)"),
    "ssl_include_verify_flags": (_verify_flags, "names of ssl.VerifyFlags"),
    "ssl_exclude_verify_flags": (_verify_flags, "names of ssl.VerifyFlags"),
    **{name: (_anything, "") for name in ("ssl_keyfile", "ssl_certfile", "ssl_ca_certs",
                                          "ssl_ca_path", "ssl_password", "ssl_ciphers")},
}
# redis-py parses these from a URL, but the clients made here cannot take them.
_NOT_FROM_A_URL = {
    "timeout": "it is for the servers' connection pool, which sets its own wait",
    "retry_on_error": "it takes exception classes, which a URL cannot name",
}
_OPTIONS_BY_SCHEME = {
    "redis": _ANY_SCHEME_OPTIONS | _TCP_OPTIONS,
    "rediss": _ANY_SCHEME_OPTIONS | _TCP_OPTIONS | _TLS_OPTIONS,
    "unix": _ANY_SCHEME_OPTIONS,
}


def _unusable(reason: str) -> InvalidRedisURL:
    return InvalidRedisURL(f"{REDIS_URL_ENV} is not a usable Redis URL: {reason}")


def check_redis_url(url: str) -> None:
    """Raise :class:`ConfigError` unless ``url`` is a Redis URL redis-py reads as written."""
    if not url.strip():
        raise ConfigError(EMPTY_REDIS_URL)
    scheme = url.partition("://")[0]
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise _unusable("it must start with redis://, rediss:// or unix://")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ of an IPv6 address
        raise _unusable("it is not a URL that can be read") from None
    try:
        port = parts.port
    except ValueError:
        raise _unusable("its port must be a number from 1 to 65535") from None
    if scheme == "unix":
        if not parts.path:
            raise _unusable("a unix:// URL needs the socket's path, as in "
                            "unix:///run/redis/redis.sock")
    else:
        if port == 0:
            raise _unusable("its port must be a number from 1 to 65535")
        if not re.fullmatch(r"/?|/\d+/?", parts.path, flags=re.ASCII):
            raise _unusable("the database after the host and port must be a number "
                            "(0, 1, ...) or nothing")
    known = _OPTIONS_BY_SCHEME[scheme]
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _NOT_FROM_A_URL:
            raise _unusable(f"the option {name} cannot be used here: {_NOT_FROM_A_URL[name]}")
        if name not in known:
            if any(name in options for options in _OPTIONS_BY_SCHEME.values()):
                needs = "rediss://" if name in _TLS_OPTIONS else "redis:// or rediss://"
                raise _unusable(f"the option {name} needs a {needs} URL")
            # The unknown name is not shown: it could be a password put in the wrong place.
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise _unusable(f"it has an option redis-py does not know{hint}")
        check, expected = known[name]
        if not value:
            raise _unusable(f"{name} has no value")
        if not check(value):
            raise _unusable(f"{name} must be {expected}")


# What a Redis server answers when it refuses a setting of the URL, as redis-py reports it
# (without the "ERR "), and the line that says so.
_REFUSED_SETTINGS = {
    "DB index is out of range": (
        f"{REDIS_URL_ENV} names a database the Redis server does not have "
        "(it has 16, numbered 0 to 15, unless its databases setting says otherwise)"),
    "invalid DB index": (
        f"{REDIS_URL_ENV} names a database the Redis server does not have "
        "(it has 16, numbered 0 to 15, unless its databases setting says otherwise)"),
    "Client names cannot contain": (
        f"{REDIS_URL_ENV} has a client_name the Redis server refuses "
        "(no spaces, newlines or special characters)"),
}


def refused_setting(error: BaseException) -> ConfigError | None:
    """The ConfigError to end with when ``error`` is a server refusing a setting, else None.

    A wrong password is not one: redis-py raises AuthenticationError, a ConnectionError,
    and scripts keep waiting for a server that lets them in, as node_redis does.
    """
    if isinstance(error, redis.ResponseError):
        for answer, line in _REFUSED_SETTINGS.items():
            if str(error).startswith(answer) or str(error).startswith(f"ERR {answer}"):
                return ConfigError(line)
    return None


def _raise_refused_setting(error: redis.ResponseError) -> NoReturn:
    refused = refused_setting(error)
    if refused is None:
        raise error
    raise refused from None


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
        except redis.ResponseError as error:
            _raise_refused_setting(error)
        else:
            if failed or not quiet:
                log(CONNECTED)
            return


def check_server_accepts(client: redis.Redis) -> None:
    """One PING, for a server process that starts whether Redis is up or not (it answers
    503 until it is): a ConfigError if the server refuses a setting of REDIS_URL."""
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError):
        pass
    except redis.ResponseError as error:
        _raise_refused_setting(error)


async def wait_until_connected_async(client: redis.asyncio.Redis) -> None:
    """:func:`wait_until_connected` for redis.asyncio clients."""
    for delay in retry_delays():
        try:
            await client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log(not_connected_line(error))
            await asyncio.sleep(delay)
        except redis.ResponseError as error:
            _raise_refused_setting(error)
        else:
            log(CONNECTED)
            return


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
