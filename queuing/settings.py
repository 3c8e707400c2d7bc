"""Every setting, from the environment (12-factor), with an optional ``.env`` file.

Each setting is an environment variable, read here and nowhere else: its name, default and
check live together, and :data:`DEFAULTS` names them all (``.env.example`` lists the same
names with the same defaults, and a test keeps the two in step). A ``.env`` file in the
current folder is read when present, but never overrides a variable that is already set:
what the shell or ``honcho`` exports wins. Nothing is read at import time; a script reads
its settings when it starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import tzinfo
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv

from queuing.constants import (
    DEFAULT_MAX_CHECKS,
    DEFAULT_PHONE_REGION,
    DEFAULT_PORT,
    DEFAULT_REDIS_URL,
    DEFAULT_REMINDER_GRACE_SECONDS,
    DEFAULT_TOKEN_SECONDS,
    DEFAULT_UPTIME_INTERVAL_SECONDS,
)

Env = Mapping[str, str]

# Every setting's name and its default, as .env.example writes it ("": unset).
DEFAULTS: dict[str, str] = {}


def _setting(name: str, default: object = "") -> str:
    DEFAULTS[name] = f"{default:g}" if isinstance(default, float) else str(default)
    return name


# The .env file scripts read at start (empty: none).
DEFAULT_ENV_FILE = ".env"
ENV_FILE_ENV = _setting("ENV_FILE", DEFAULT_ENV_FILE)
REDIS_URL_ENV = _setting("REDIS_URL", DEFAULT_REDIS_URL)
VERBOSE_ENV = _setting("RQ_VERBOSE", "0")
LEAN_WORKER_ENV = _setting("LEAN_WORKER", "on")
DEFAULT_SHUTDOWN_GRACE_SECONDS = 30.0
SHUTDOWN_GRACE_ENV = _setting("WORKER_SHUTDOWN_GRACE", DEFAULT_SHUTDOWN_GRACE_SECONDS)
EXTRA_JOB_FUNCTIONS_ENV = _setting("EXTRA_JOB_FUNCTIONS")
ACCOUNT_SID_ENV = _setting("TWILIO_ACCOUNT_SID")
AUTH_TOKEN_ENV = _setting("TWILIO_AUTH_TOKEN")
FROM_NUMBER_ENV = _setting("TWILIO_FROM_NUMBER")
# The course's name for TWILIO_FROM_NUMBER, read when that one is not set.
FROM_NUMBER_ALIAS_ENV = _setting("TWILIO_REMINDER_NUMBER")
API_BASE_URL_ENV = _setting("TWILIO_API_BASE_URL")
TIMEZONE_ENV = _setting("REMINDER_TIMEZONE")
GRACE_ENV = _setting("REMINDER_GRACE_SECONDS", DEFAULT_REMINDER_GRACE_SECONDS)
TICK_ENV = _setting("REMINDER_TICK_SECONDS")
UPTIME_INTERVAL_ENV = _setting("UPTIME_INTERVAL_SECONDS", DEFAULT_UPTIME_INTERVAL_SECONDS)
MAX_CHECKS_ENV = _setting("UPTIME_MAX_CHECKS", DEFAULT_MAX_CHECKS)
TOKEN_SECONDS_ENV = _setting("TOKEN_SECONDS", DEFAULT_TOKEN_SECONDS)
PHONE_REGION_ENV = _setting("PHONE_REGION", DEFAULT_PHONE_REGION)
PROXY_HOPS_ENV = _setting("PROXY_HOPS", 0)
ALLOW_PRIVATE_ENV = _setting("UPTIME_ALLOW_PRIVATE", "off")
# The replicated mode: a write is confirmed only once this many replicas have it (WAIT).
MIN_REPLICAS_ENV = _setting("REDIS_MIN_REPLICAS", 0)
DEFAULT_MIN_REPLICAS_TIMEOUT_SECONDS = 1.0
MIN_REPLICAS_TIMEOUT_ENV = _setting("REDIS_MIN_REPLICAS_TIMEOUT",
                                    DEFAULT_MIN_REPLICAS_TIMEOUT_SECONDS)
# Set by Heroku-style platforms, and by honcho, to the process's name (worker.1): the
# workers' names.
DYNO_ENV = _setting("DYNO")
HONCHO_PROCESS_NAME_ENV = _setting("HONCHO_PROCESS_NAME")
DEFAULT_HOST = "127.0.0.1"
HOST_ENV = _setting("HOST", DEFAULT_HOST)
PORT_ENV = _setting("PORT", DEFAULT_PORT)


class ConfigError(ValueError):
    """A setting from the environment cannot be used; the message names the variable."""


class InvalidRedisURL(ConfigError):
    """REDIS_URL cannot be used; the message never repeats the URL (it may hold a password)."""


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


def redis_url(env: Env = os.environ) -> str:
    """``REDIS_URL``, or the default when it is not set; a ConfigError when it is empty."""
    url = env.get(REDIS_URL_ENV)
    if url is None:
        return DEFAULT_REDIS_URL
    if not url.strip():
        raise ConfigError(EMPTY_REDIS_URL)
    return url


def positive_number(name: str, default: float, env: Env = os.environ) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be more than 0, not {raw!r}")
    return value


def timezone(env: Env = os.environ) -> tzinfo | None:
    """``REMINDER_TIMEZONE`` (an IANA name such as Europe/Paris), or None for local time."""
    name = env.get(TIMEZONE_ENV, "").strip()
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{TIMEZONE_ENV} is not a known time zone: {name!r}") from None


def reminder_grace_seconds(env: Env = os.environ) -> float:
    """``REMINDER_GRACE_SECONDS``: how late a missed reminder time is still sent."""
    return positive_number(GRACE_ENV, DEFAULT_REMINDER_GRACE_SECONDS, env)


def reminder_tick_seconds(env: Env = os.environ) -> int | None:
    """``REMINDER_TICK_SECONDS``: tick every N seconds, or None (unset) for every minute."""
    return int(positive_number(TICK_ENV, 0, env)) or None


def uptime_interval_seconds(env: Env = os.environ) -> float:
    """``UPTIME_INTERVAL_SECONDS``: seconds between two rounds of uptime checks."""
    return positive_number(UPTIME_INTERVAL_ENV, DEFAULT_UPTIME_INTERVAL_SECONDS, env)


def worker_shutdown_grace(env: Env = os.environ) -> float:
    """``WORKER_SHUTDOWN_GRACE``: how long a stop waits for a worker's running job."""
    return positive_number(SHUTDOWN_GRACE_ENV, DEFAULT_SHUTDOWN_GRACE_SECONDS, env)


def uptime_max_checks(env: Env = os.environ) -> int:
    """``UPTIME_MAX_CHECKS``: how many checks one user of the web app may have."""
    raw = env.get(MAX_CHECKS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_CHECKS
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{MAX_CHECKS_ENV} must be a whole number, at least 1, not {raw!r}")
    return int(raw)


def uptime_allow_private(env: Env = os.environ) -> bool:
    """``UPTIME_ALLOW_PRIVATE``: whether users' checks may reach private addresses
    (127.0.0.1, 10.x, 169.254.169.254...); off by default (addresses.py)."""
    return _switch(ALLOW_PRIVATE_ENV, False, env)


def min_replicas(env: Env = os.environ) -> int:
    """``REDIS_MIN_REPLICAS``: how many replicas must have a write before it is confirmed
    (a job "created", a reservation, a seat queued); 0, the default, confirms at once."""
    raw = env.get(MIN_REPLICAS_ENV, "").strip() or "0"
    if not raw.isdigit():
        raise ConfigError(f"{MIN_REPLICAS_ENV} must be a whole number (0: do not wait), "
                          f"not {raw!r}")
    return int(raw)


def min_replicas_timeout(env: Env = os.environ) -> float:
    """``REDIS_MIN_REPLICAS_TIMEOUT``: how long a write waits for its replicas (seconds)."""
    return positive_number(MIN_REPLICAS_TIMEOUT_ENV, DEFAULT_MIN_REPLICAS_TIMEOUT_SECONDS, env)


def token_seconds(env: Env = os.environ) -> float:
    """``TOKEN_SECONDS``: how long a sign-in token of the web app lasts (and each extension)."""
    return positive_number(TOKEN_SECONDS_ENV, DEFAULT_TOKEN_SECONDS, env)


def dyno(env: Env = os.environ) -> str:
    """The Procfile's name for this process (``worker.1``): ``DYNO`` on a Heroku-style
    platform, ``HONCHO_PROCESS_NAME`` under ``honcho start``; "" when neither is set."""
    return (env.get(DYNO_ENV, "") or env.get(HONCHO_PROCESS_NAME_ENV, "")).strip()


def proxy_hops(env: Env = os.environ) -> int:
    """``PROXY_HOPS``: how many proxies in front of the web app set X-Forwarded-For and
    X-Forwarded-Proto (a platform's router: 1). 0 trusts no such header."""
    raw = env.get(PROXY_HOPS_ENV, "").strip() or "0"
    if not raw.isdigit():
        raise ConfigError(f"{PROXY_HOPS_ENV} must be a whole number (0: no proxy), not {raw!r}")
    return int(raw)


def phone_region(env: Env = os.environ) -> str:
    """``PHONE_REGION``: the country a phone number without +country code is read in."""
    import phonenumbers  # here: only the web app and the CLIs that take phone numbers need it

    raw = env.get(PHONE_REGION_ENV, "").strip().upper() or DEFAULT_PHONE_REGION
    if raw not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"{PHONE_REGION_ENV} must be a two-letter region such as US or GB, "
                          f"not {raw!r}")
    return raw


def host(env: Env = os.environ) -> str:
    """``HOST``: the address the development servers listen on."""
    return env.get(HOST_ENV, "").strip() or DEFAULT_HOST


def port(env: Env = os.environ) -> int:
    """``PORT``: the development servers' port (honcho sets it for each process)."""
    raw = env.get(PORT_ENV, "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{PORT_ENV} must be a port number (1-65535), not {raw!r}")
    return int(raw)


_ON = {"1", "on", "true", "yes"}
_OFF = {"0", "off", "false", "no"}


def _switch(name: str, default: bool, env: Env) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _ON:
        return True
    if raw in _OFF:
        return False
    raise ConfigError(f"{name} must be on or off, not {raw!r}")


def lean_worker(env: Env = os.environ) -> bool:
    """``LEAN_WORKER``: whether the processors use the lean worker (default on), which
    writes RQ's bookkeeping in one Lua script per job; off, they use RQ's own code."""
    return _switch(LEAN_WORKER_ENV, True, env)


def rq_verbose(env: Env = os.environ) -> bool:
    """``RQ_VERBOSE``: show RQ's own logs. Anything but empty, 0, false, no or off is on."""
    return env.get(VERBOSE_ENV, "").strip().lower() not in ("", *_OFF)


def extra_job_functions(env: Env = os.environ) -> frozenset[str]:
    """``EXTRA_JOB_FUNCTIONS``: comma-separated dotted paths of more job functions a
    worker may run (untrusted_jobs.py), besides the project's own. A worker asks ~3 times
    a job: the setting is read each time (a change counts at once), parsed once per text."""
    return _names(env.get(EXTRA_JOB_FUNCTIONS_ENV, ""))


@lru_cache(maxsize=16)
def _names(text: str) -> frozenset[str]:
    return frozenset(name.strip() for name in text.split(",") if name.strip())


class Twilio(NamedTuple):
    """The Twilio variables as set (stripped; "" when unset); senders.py checks them."""

    account_sid: str
    auth_token: str
    from_number: str
    from_number_name: str  # the variable from_number came from, for messages
    api_base_url: str


def twilio(env: Env = os.environ) -> Twilio:
    from_name = FROM_NUMBER_ENV if env.get(FROM_NUMBER_ENV) else FROM_NUMBER_ALIAS_ENV
    return Twilio(env.get(ACCOUNT_SID_ENV, "").strip(), env.get(AUTH_TOKEN_ENV, "").strip(),
                  env.get(from_name, "").strip(), from_name,
                  env.get(API_BASE_URL_ENV, "").strip())
