"""Configuration from the environment, 12-factor style, with an optional ``.env`` file.

Every setting is an environment variable (``.env.example`` lists them all). A ``.env``
file in the project folder is read when present, but never overrides a variable that
is already set: what the shell or ``honcho`` exports wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# common.run reads .env before a script starts, and ends it on a ConfigError (status 2).
# REDIS_URL is checked in common, where every client is made.
from common import ConfigError, check_redis_url, load_env
from constants import DEFAULT_REDIS_URL

__all__ = ["DEFAULT_REDIS_URL", "ConfigError", "check_redis_url", "load_env",
           "positive_number", "timezone"]


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
