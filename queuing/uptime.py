"""Uptime checks: stored in Redis, run concurrently, an SMS alert when one goes up or down.

A check has the course's fields (protocol, url, method, successCodes, timeoutSeconds),
the phone to alert and its owner (the web app's user whose phone that is; none for a
check the admin CLI adds). An owner has at most ``max_checks`` checks, counted and
stored in one Lua script (lua/add_check.lua), so requests at once cannot pass the limit.

A round runs every check at once, each with its own timeout; a check is ``up`` when the
answer's status is one of its success codes, ``down`` otherwise, including a bad URL, a
refused connection or a timeout: a check never crashes the worker.

The state is written with ``SET ... GET``, which returns the previous state in the same
command: only the one write that changes the state queues an alert, even with two
workers, and the first run (no previous state) alerts nobody.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import redis
import requests

from queuing import addresses, phones, senders
from queuing.constants import (
    UPTIME_CHECK_ID_KEY,
    UPTIME_CHECK_KEY,
    UPTIME_CHECKS_KEY,
    UPTIME_LOG_KEY,
    UPTIME_LOG_LENGTH,
    UPTIME_STATE_KEY,
    UPTIME_USER_CHECKS_KEY,
)

PROTOCOLS = ("http", "https")
METHODS = ("get", "post", "put", "delete", "head")
MAX_TIMEOUT_SECONDS = 60
MAX_URL_LENGTH = 2000
MAX_CHECKS_AT_ONCE = 32
UP, DOWN = "up", "down"
ALERT = "Alert: your check for {method} {protocol}://{url} is now {state}"
ADD_CHECK_LUA = (Path(__file__).parent / "lua" / "add_check.lua").read_text()
# What ends a URL's host part (its "netloc"): a user name and password would be before it.
_END_OF_HOST = re.compile(r"[/?#]")
_CHECK_ID = re.compile(r"[1-9][0-9]{0,18}")  # what INCR gives; anything else is no check


class InvalidCheck(ValueError):
    """A check's fields are not usable; the message says which and why."""


class TooManyChecks(Exception):
    """The owner has as many checks as they may have already."""

    def __init__(self, max_checks: int) -> None:
        super().__init__(f"The user already has the maximum number of checks ({max_checks})")
        self.max_checks = max_checks


@dataclass(frozen=True)
class Check:
    id: str
    protocol: str
    url: str  # without the protocol: "example.com/health", as in the course
    method: str
    success_codes: tuple[int, ...]
    timeout_seconds: float
    phone: str
    owner: str = ""  # the user's phone (E.164); "" for a check the admin CLI added

    @property
    def full_url(self) -> str:
        return f"{self.protocol}://{self.url}"

    def describe(self) -> str:
        return f"{self.method.upper()} {self.full_url}"


@dataclass(frozen=True)
class Outcome:
    state: str
    checked_at: float
    status_code: int | None = None
    error: str | None = None

    def describe(self) -> str:
        return str(self.status_code) if self.error is None else self.error


def validate(protocol: str, url: str, method: str = "get",
             success_codes: Iterable[int | str] = (200, 201),
             timeout_seconds: float | str = 3, phone: str = "", check_id: str = "",
             owner: str = "", public_only: bool = False) -> Check:
    """A Check from user input, or InvalidCheck. ``url`` may include its protocol.
    ``public_only``: its host must resolve to public addresses only (addresses.py)."""
    url = url.strip()
    if "://" in url:
        protocol, url = url.split("://", 1)
    if "@" in protocol or "@" in _END_OF_HOST.split(url, maxsplit=1)[0]:
        raise InvalidCheck("url must not hold a user name or password")
    protocol = protocol.strip().lower()
    if protocol not in PROTOCOLS:
        raise InvalidCheck(f"protocol must be http or https, not {protocol!r}")
    _check_url(protocol, url)
    if public_only and (private := _private_address(protocol, url)):
        raise InvalidCheck(f"url must reach a public address, not a private one ({private})")
    method = method.strip().lower()
    if method not in METHODS:
        raise InvalidCheck(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    try:
        codes = tuple(sorted({int(code) for code in success_codes}))
    except (TypeError, ValueError):
        raise InvalidCheck(f"successCodes must be numbers, not {success_codes!r}") from None
    if not codes or any(not 100 <= code <= 599 for code in codes):
        raise InvalidCheck(f"successCodes must be HTTP status codes (100-599), not {codes!r}")
    try:
        timeout = float(timeout_seconds)
    except (TypeError, ValueError):
        raise InvalidCheck(f"timeoutSeconds must be a number, not {timeout_seconds!r}") from None
    if not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        raise InvalidCheck(f"timeoutSeconds must be more than 0 and at most "
                           f"{MAX_TIMEOUT_SECONDS}, not {timeout_seconds!r}")
    try:
        phone = phones.normalise(phone)
    except phones.InvalidPhone as error:
        raise InvalidCheck(str(error)) from None
    return Check(check_id, protocol, url, method, codes, timeout, phone, owner)


def _check_url(protocol: str, url: str) -> None:
    """InvalidCheck unless ``url`` is a host (and port) with an optional path.

    A user name or password was refused before: the URL is shown wherever the check is
    (lists, logs, the SMS). No message repeats the URL, which may still hold a secret.
    """
    if len(url) > MAX_URL_LENGTH:
        raise InvalidCheck(f"url is longer than {MAX_URL_LENGTH} characters")
    if not url or any(c.isspace() for c in url):
        raise InvalidCheck("url must be a host name with an optional path, without spaces")
    try:
        parts = urlsplit(f"{protocol}://{url}")
        host = parts.hostname
    except ValueError:
        host = None
    if not host:
        raise InvalidCheck("url has no host name")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is not None and not 1 <= port <= 65535:
        raise InvalidCheck("url's port must be a number from 1 to 65535")


def _private_address(protocol: str, url: str) -> str | None:
    parts = urlsplit(f"{protocol}://{url}")
    return addresses.non_public_address(parts.hostname or "", parts.port)


# -- Storage -------------------------------------------------------------------------------

def _check_key(check_id: str) -> str:
    return UPTIME_CHECK_KEY.format(check_id=check_id)


def _owner_key(owner: str) -> str:
    return UPTIME_USER_CHECKS_KEY.format(phone=owner)


def _to_hash(check: Check) -> dict[str, str]:
    return {"id": check.id, "protocol": check.protocol, "url": check.url,
            "method": check.method, "success_codes": json.dumps(list(check.success_codes)),
            "timeout_seconds": repr(check.timeout_seconds), "phone": check.phone,
            "owner": check.owner}


def _from_hash(fields: Mapping[str, str]) -> Check:
    return Check(id=fields["id"], protocol=fields["protocol"], url=fields["url"],
                 method=fields["method"],
                 success_codes=tuple(json.loads(fields["success_codes"])),
                 timeout_seconds=float(fields["timeout_seconds"]), phone=fields["phone"],
                 owner=fields.get("owner", ""))


def add_check(connection: redis.Redis, check: Check, max_checks: int | None = None) -> Check:
    """Store ``check`` under a new id and return it with that id.

    TooManyChecks when its owner has ``max_checks`` already (no limit when None, and
    none for a check without an owner). A refused check still used up its id.
    """
    stored = replace(check, id=str(connection.incr(UPTIME_CHECK_ID_KEY)))
    keys = [_check_key(stored.id), UPTIME_CHECKS_KEY]
    if stored.owner:
        keys.append(_owner_key(stored.owner))
    fields = [item for pair in _to_hash(stored).items() for item in pair]
    limit = "" if max_checks is None else str(max_checks)
    if not connection.eval(ADD_CHECK_LUA, len(keys), *keys, stored.id, limit, *fields):
        raise TooManyChecks(max_checks or 0)
    return stored


def update_check(connection: redis.Redis, check: Check) -> Check | None:
    """Write ``check``'s fields over the stored check of its id, which keeps its owner,
    state and log; None if there is no such check (removed meanwhile: not re-created)."""
    key = _check_key(check.id)
    fields = _to_hash(check)
    del fields["id"], fields["owner"]

    def edit(pipe: redis.client.Pipeline) -> dict[str, str]:
        stored = pipe.hgetall(key)
        if stored.get("id"):
            pipe.multi()
            pipe.hset(key, mapping=fields)
        return stored

    # watch_delay: a failover's READONLY comes back as a WatchError, retried; not at once.
    stored = connection.transaction(edit, key, value_from_callable=True, watch_delay=0.05)
    return _from_hash(stored | fields) if stored.get("id") else None


def get_check(connection: redis.Redis, check_id: str) -> Check | None:
    """The check, or None; also None for the time a round may write of a check removed
    while it ran (a hash without an id)."""
    if not _CHECK_ID.fullmatch(check_id):
        return None
    fields = connection.hgetall(_check_key(check_id))
    return _from_hash(fields) if fields.get("id") else None


def _checks(connection: redis.Redis, ids: Iterable[str]) -> list[Check]:
    with connection.pipeline() as pipe:
        for check_id in sorted(ids, key=int):
            pipe.hgetall(_check_key(check_id))
        return [_from_hash(fields) for fields in pipe.execute() if fields.get("id")]


def all_checks(connection: redis.Redis) -> list[Check]:
    """Every stored check, by id (the course's ``gatherAllChecks``)."""
    return _checks(connection, connection.smembers(UPTIME_CHECKS_KEY))


def checks_of(connection: redis.Redis, owner: str) -> list[Check]:
    """The checks of one user (their phone, E.164), by id."""
    return _checks(connection, connection.smembers(_owner_key(owner)))


def remove_check(connection: redis.Redis, check_id: str) -> bool:
    """Forget a check, its state and its log; False if there was no such check."""
    if not _CHECK_ID.fullmatch(check_id):
        return False
    owner = connection.hget(_check_key(check_id), "owner")
    with connection.pipeline() as pipe:
        pipe.srem(UPTIME_CHECKS_KEY, check_id)
        if owner:
            pipe.srem(_owner_key(owner), check_id)
        pipe.delete(_check_key(check_id), UPTIME_STATE_KEY.format(check_id=check_id),
                    UPTIME_LOG_KEY.format(check_id=check_id))
        removed = pipe.execute()[0]
    return bool(removed)


def remove_checks_of(connection: redis.Redis, owner: str) -> int:
    """Forget every check of a user who is deleted; how many there were."""
    removed = sum(remove_check(connection, check_id)
                  for check_id in connection.smembers(_owner_key(owner)))
    connection.delete(_owner_key(owner))
    return removed


def state_of(connection: redis.Redis, check_id: str) -> str | None:
    return connection.get(UPTIME_STATE_KEY.format(check_id=check_id))


def last_checked(connection: redis.Redis, check_id: str) -> float | None:
    """When the check last ran (seconds since the epoch), None before its first run."""
    when = connection.hget(_check_key(check_id), "last_checked")
    return float(when) if when else None


def log_of(connection: redis.Redis, check_id: str) -> list[dict]:
    """The latest outcomes, newest first."""
    return [json.loads(line)
            for line in connection.lrange(UPTIME_LOG_KEY.format(check_id=check_id), 0, -1)]


# -- Running -------------------------------------------------------------------------------

def run_check(check: Check, session: requests.Session | None = None,
              allow_private: bool = True) -> Outcome:
    """Request the check's URL once; never raises.

    The timeout bounds connecting and waiting for the status line; the body is not read.
    Redirects are not followed: a 301 is up only if 301 is one of the success codes.
    Unless ``allow_private``, a user's check whose host now resolves to a private address
    is down without a request (addresses.py); the admin's checks always run.
    """
    checked_at = time.time()
    if not allow_private and check.owner and _private_address(check.protocol, check.url):
        return Outcome(DOWN, checked_at, error="not a public address")
    try:
        response = (session or requests).request(
            check.method.upper(), check.full_url, timeout=check.timeout_seconds,
            allow_redirects=False, stream=True,
        )
    except requests.Timeout:
        return Outcome(DOWN, checked_at, error=f"timeout after {check.timeout_seconds:g}s")
    except requests.ConnectionError:
        return Outcome(DOWN, checked_at, error="connection failed")
    except Exception as error:  # a bad URL, a bad answer...: down, never a crash
        return Outcome(DOWN, checked_at, error=type(error).__name__)
    response.close()
    state = UP if response.status_code in check.success_codes else DOWN
    return Outcome(state, checked_at, status_code=response.status_code)


def record(connection: redis.Redis, check: Check, outcome: Outcome) -> str | None:
    """Store the outcome; return the previous state if this outcome changed it."""
    if not connection.sismember(UPTIME_CHECKS_KEY, check.id):
        return None  # removed while it ran: write nothing back
    previous = connection.set(UPTIME_STATE_KEY.format(check_id=check.id), outcome.state,
                              get=True)
    log_key = UPTIME_LOG_KEY.format(check_id=check.id)
    with connection.pipeline() as pipe:
        pipe.hset(UPTIME_CHECK_KEY.format(check_id=check.id),
                  mapping={"last_checked": outcome.checked_at})
        pipe.lpush(log_key, json.dumps(asdict(outcome) | {"previous": previous}))
        pipe.ltrim(log_key, 0, UPTIME_LOG_LENGTH - 1)
        pipe.execute()
    return previous if previous not in (None, outcome.state) else None


def alert_message(check: Check, state: str) -> str:
    return ALERT.format(method=check.method.upper(), protocol=check.protocol, url=check.url,
                        state=state)


def run_round(connection: redis.Redis, rq_connection: redis.Redis,
              log=print, allow_private: bool = True) -> list[tuple[Check, Outcome]]:
    """Run every check at once, record each outcome and queue an SMS per change of state.

    ``connection`` answers str (the project's client); ``rq_connection`` is the bytes-mode
    client RQ needs for the SMS queue. ``allow_private``: see :func:`run_check`.
    """
    checks = all_checks(connection)
    if not checks:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_CHECKS_AT_ONCE, len(checks))) as pool:
        outcomes = list(pool.map(partial(run_check, allow_private=allow_private), checks))
    for check, outcome in zip(checks, outcomes, strict=True):
        log(f"Check {check.id} {check.describe()} is {outcome.state} ({outcome.describe()})")
        if record(connection, check, outcome) is not None:
            message = alert_message(check, outcome.state)
            job = senders.enqueue_sms(rq_connection, check.phone, message)
            log(f"Alert queued as job {job.id}: {message}")
    return list(zip(checks, outcomes, strict=True))
