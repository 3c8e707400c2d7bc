"""What a ``REDIS_URL`` may hold, checked before any client is made.

redis-py's parse_url checks little: a database path that is not a number means db 0, an
unknown option or one of another scheme fails at the first command (TypeError), and Redis
refuses a client name with spaces. So the URL is checked here, up front, against the
options redis-py 8 reads from a URL (redis/connection.py, URL_QUERY_ARGUMENT_PARSERS, plus
the connection classes' own string arguments). Messages never repeat the URL or a value
from it: either may hold a password.
"""

from __future__ import annotations

import difflib
import math
import re
import ssl
from collections.abc import Callable
from typing import NamedTuple, NoReturn
from urllib.parse import parse_qsl, unquote, urlsplit

import redis

from queuing.settings import EMPTY_REDIS_URL, REDIS_URL_ENV, ConfigError, InvalidRedisURL

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


SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_PASSWORD_OPTION = "sentinel_password"


class SentinelURL(NamedTuple):
    """A ``redis+sentinel://`` URL, read: where the sentinels are, which master they name,
    and how to talk to it. ``username``/``password`` are the master's (and its replicas');
    ``sentinel_password`` the sentinels' own. ``options`` are the query's other options,
    as text, for the master's connections."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None
    tls: bool
    options: dict[str, str]


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names a Sentinel-managed master rather than one server."""
    return url.startswith(tuple(f"{scheme}://" for scheme in SENTINEL_SCHEMES))


def check_redis_url(url: str) -> None:
    """Raise :class:`ConfigError` unless ``url`` is a Redis URL redis-py reads as written."""
    if not url.strip():
        raise ConfigError(EMPTY_REDIS_URL)
    if is_sentinel_url(url):
        parse_sentinel_url(url)
        return
    scheme = url.partition("://")[0]
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise _unusable("it must start with redis://, rediss:// or unix:// (or, for a "
                        "master that Sentinel watches, redis+sentinel:// or "
                        "rediss+sentinel://)")
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
    _check_options(parse_qsl(parts.query, keep_blank_values=True), _OPTIONS_BY_SCHEME[scheme])


def _check_options(options: list[tuple[str, str]],
                   known: dict[str, tuple[Callable[[str], bool], str]],
                   tls_scheme: str = "rediss://",
                   any_scheme: str = "redis:// or rediss://") -> None:
    for name, value in options:
        if name in _NOT_FROM_A_URL:
            raise _unusable(f"the option {name} cannot be used here: {_NOT_FROM_A_URL[name]}")
        if name not in known:
            if any(name in scheme_options for scheme_options in _OPTIONS_BY_SCHEME.values()):
                needs = tls_scheme if name in _TLS_OPTIONS else any_scheme
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


def _sentinel_address(entry: str) -> tuple[str, int]:
    if not entry:
        raise _unusable("its list of sentinels has an empty entry (host:port,host:port,...)")
    try:
        parts = urlsplit(f"//{entry}")
        port = parts.port
    except ValueError:
        raise _unusable("each sentinel's port must be a number from 1 to 65535") from None
    if not parts.hostname or port == 0 or parts.path:
        raise _unusable("each sentinel must be host or host:port, the port a number "
                        "from 1 to 65535")
    return unquote(parts.hostname), port or DEFAULT_SENTINEL_PORT


def parse_sentinel_url(url: str) -> SentinelURL:
    """Read ``redis+sentinel://[user:pw@]host1[:port],host2[:port]/service[/db][?options]``
    (``rediss+sentinel://``: TLS to the master and the sentinels; port 26379 by default),
    the form rq-dashboard reads, or raise :class:`InvalidRedisURL` (one line, no secret)."""
    scheme, _, rest = url.partition("://")
    if scheme not in SENTINEL_SCHEMES:
        raise _unusable("a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://")
    netloc, slash, path_and_query = rest.partition("/")
    path, _, query = (slash + path_and_query).partition("?")
    if "#" in query or "#" in path:
        raise _unusable("it is not a URL that can be read")
    userinfo, _, hosts = netloc.rpartition("@")
    if not hosts:
        raise _unusable("it names no sentinel: redis+sentinel://host:26379,host2/master-name")
    sentinels = [_sentinel_address(entry) for entry in hosts.split(",")]
    username, has_password, password = userinfo.partition(":")
    segments = path.strip("/").split("/") if path.strip("/") else []
    if not segments:
        raise _unusable("it names no master: the name Sentinel monitors it by comes after "
                        "the sentinels, as in redis+sentinel://host:26379/mymaster")
    if len(segments) > 2 or (len(segments) == 2 and not re.fullmatch(r"\d+", segments[1],
                                                                      flags=re.ASCII)):
        raise _unusable("the database after the master's name must be a number "
                        "(0, 1, ...) or nothing")
    service = unquote(segments[0])
    if not service.strip() or any(char.isspace() for char in service):
        raise _unusable("the master's name must not be empty or hold spaces")
    tls = scheme == "rediss+sentinel"
    options = parse_qsl(query, keep_blank_values=True)
    _check_options(options, {**_OPTIONS_BY_SCHEME["rediss" if tls else "redis"],
                             SENTINEL_PASSWORD_OPTION: (_anything, "")},
                   tls_scheme="rediss+sentinel://", any_scheme="redis+sentinel://")
    as_dict: dict[str, str] = {}
    for name, value in options:  # as redis-py reads a query: a repeated option's first value
        as_dict.setdefault(name, value)
    sentinel_password = as_dict.pop(SENTINEL_PASSWORD_OPTION, None)
    db = int(as_dict.pop("db", segments[1] if len(segments) == 2 else 0))
    return SentinelURL(
        sentinels=sentinels, service=service, db=db,
        username=unquote(username) or None,
        password=unquote(password) if has_password and password else None,
        sentinel_password=sentinel_password, tls=tls, options=as_dict)


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


def raise_refused_setting(error: redis.ResponseError) -> NoReturn:
    """Raise the ConfigError for a refused setting, or ``error`` itself."""
    refused = refused_setting(error)
    if refused is None:
        raise error
    raise refused from None
