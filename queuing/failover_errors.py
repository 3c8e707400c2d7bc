"""Redis's error replies during a failover, as "not connected".

While the master changes, a server answers errors rather than running a command: a
demoted master READONLY, a replica cut off from its master MASTERDOWN, a master short of
replicas NOREPLICAS, a blocked command cut short by a switch of role UNBLOCKED, a server
still loading its data LOADING. The clients of connection.py read replies with the parsers
below, which raise all of them as :class:`FailoverInProgress`, a ``redis.ConnectionError``:
every ``except (redis.ConnectionError, redis.TimeoutError)`` of the project then prints the
course's not-connected line (or answers 503) and tries again.
"""

from __future__ import annotations

import redis
from redis._parsers import (
    _AsyncHiredisParser,
    _AsyncRESP2Parser,
    _AsyncRESP3Parser,
    _HiredisParser,
    _RESP2Parser,
    _RESP3Parser,
)
from redis.utils import HIREDIS_AVAILABLE


class FailoverInProgress(redis.ConnectionError):
    """The server answered, but it is not the master right now: a demoted master (READONLY),
    a replica cut off from its master (MASTERDOWN), a master without the replicas it needs
    (NOREPLICAS), a blocked command cut short by a switch of role (UNBLOCKED), a server still
    loading its data (LOADING). None of these ran the command, so trying again is safe;
    being a ConnectionError, redis-py drops the connection (the next one asks the sentinels
    for the master again) and the project's retry loops treat it as not connected."""

    def __str__(self) -> str:
        message = super().__str__()
        return f"{self.status_code} {message}" if self.status_code else message


class _StillLoading(FailoverInProgress, redis.BusyLoadingError):
    """LOADING: what redis-py calls BusyLoadingError, and a failover step too."""


# Error reply codes that mean "the master is not here right now".
FAILOVER_REPLIES: dict[str, type[FailoverInProgress]] = {
    "READONLY": FailoverInProgress,
    "MASTERDOWN": FailoverInProgress,
    "NOREPLICAS": FailoverInProgress,
    "UNBLOCKED": FailoverInProgress,
    "LOADING": _StillLoading,
}
_EXCEPTION_CLASSES = {**_RESP2Parser.EXCEPTION_CLASSES, **FAILOVER_REPLIES}


# redis-py's parsers, hiredis included (it calls parse_error for every error reply), turn
# an error reply into the class EXCEPTION_CLASSES names for its code: these map the codes
# above to FailoverInProgress, for the clients made here only.
class _FailoverHiredisParser(_HiredisParser):
    EXCEPTION_CLASSES = _EXCEPTION_CLASSES


class _FailoverRESP2Parser(_RESP2Parser):
    EXCEPTION_CLASSES = _EXCEPTION_CLASSES


class _FailoverRESP3Parser(_RESP3Parser):
    EXCEPTION_CLASSES = _EXCEPTION_CLASSES


class _FailoverAsyncHiredisParser(_AsyncHiredisParser):
    EXCEPTION_CLASSES = _EXCEPTION_CLASSES


class _FailoverAsyncRESP2Parser(_AsyncRESP2Parser):
    EXCEPTION_CLASSES = _EXCEPTION_CLASSES


class _FailoverAsyncRESP3Parser(_AsyncRESP3Parser):
    EXCEPTION_CLASSES = _EXCEPTION_CLASSES


def failover_parser(protocol: int = 2, is_async: bool = False) -> type:
    """The parser class for a client's connections. redis-py swaps only its own RESP2
    parser for RESP3 when protocol=3, so the protocol picks the Python parser here."""
    if HIREDIS_AVAILABLE:
        return _FailoverAsyncHiredisParser if is_async else _FailoverHiredisParser
    if protocol == 3:
        return _FailoverAsyncRESP3Parser if is_async else _FailoverRESP3Parser
    return _FailoverAsyncRESP2Parser if is_async else _FailoverRESP2Parser


def is_not_connected(error: BaseException) -> bool:
    """Whether ``error`` means Redis cannot take commands right now (and a retry may work):
    a lost connection, a timeout, or a failover's error reply, also from a client not made
    here (redis-py's ReadOnlyError, ...) or returned inside a pipeline's replies."""
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
        return True
    if isinstance(error, redis.ResponseError):
        code = error.status_code or str(error).split(" ", 1)[0]
        return code in FAILOVER_REPLIES
    return False
