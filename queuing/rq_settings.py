"""RQ's own command line on the project's ``REDIS_URL``, direct or Sentinel::

    rq worker -c queuing.rq_settings
    rq info -c queuing.rq_settings

RQ reads this module's UPPERCASE names (rq/cli/helpers.py, get_redis_from_config):
``REDIS_URL`` for a direct URL, ``SENTINEL`` for a ``redis+sentinel://`` one, which RQ
cannot read as a URL. Its connections get what the project's workers' have: READONLY and
the other failover replies as ConnectionError, keepalive, a check of idle connections.
``REDIS_URL`` is read as the scripts read it (``.env`` too); a bad one ends the command with
one line on stderr and exit status 2, as a script does.
"""

from __future__ import annotations

from typing import Any

from queuing import settings
from queuing.connection import rq_config
from queuing.console import log_error


def _read() -> dict[str, Any]:
    settings.load_env()
    try:
        return rq_config()
    except settings.ConfigError as error:
        log_error(error)
        raise SystemExit(2) from None


_config = _read()
REDIS_URL: str | None = _config.get("REDIS_URL")
SENTINEL: dict[str, Any] | None = _config.get("SENTINEL")
