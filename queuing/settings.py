"""Every setting, from the environment (12-factor), with an optional ``.env`` file.

Each setting is an environment variable, read here and nowhere else: its name, default and
check live together (``.env.example`` lists them all, and a test keeps the two in step).
A ``.env`` file in the current folder is read when present, but never overrides a variable
that is already set: what the shell or ``honcho`` exports wins. Nothing is read at import
time; a script reads its settings when it starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv

from queuing.constants import DEFAULT_REDIS_URL

REDIS_URL_ENV = "REDIS_URL"
# The .env file scripts read at start (default: .env in the current folder; empty: none).
ENV_FILE_ENV = "ENV_FILE"
DEFAULT_ENV_FILE = ".env"


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


def redis_url(env: Mapping[str, str] = os.environ) -> str:
    """``REDIS_URL``, or the default when it is not set; a ConfigError when it is empty."""
    url = env.get(REDIS_URL_ENV)
    if url is None:
        return DEFAULT_REDIS_URL
    if not url.strip():
        raise ConfigError(EMPTY_REDIS_URL)
    return url


def positive_number(name: str, default: float, env: Mapping[str, str] = os.environ) -> float:
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


def timezone(env: Mapping[str, str] = os.environ) -> tzinfo | None:
    """``REMINDER_TIMEZONE`` (an IANA name such as Europe/Paris), or None for local time."""
    name = env.get("REMINDER_TIMEZONE", "").strip()
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"REMINDER_TIMEZONE is not a known time zone: {name!r}") from None


LEAN_WORKER_ENV = "LEAN_WORKER"
_ON = {"1", "on", "true", "yes"}
_OFF = {"0", "off", "false", "no"}


def lean_worker(env: Mapping[str, str] = os.environ) -> bool:
    """``LEAN_WORKER``: whether the processors use the lean worker (default on), which
    writes RQ's bookkeeping in one Lua script per job; off, they use RQ's own code."""
    raw = env.get(LEAN_WORKER_ENV, "").strip().lower()
    if not raw or raw in _ON:
        return True
    if raw in _OFF:
        return False
    raise ConfigError(f"{LEAN_WORKER_ENV} must be on or off, not {raw!r}")
