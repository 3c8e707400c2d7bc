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
from typing import NoReturn
from urllib.parse import parse_qsl, urlsplit

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


def raise_refused_setting(error: redis.ResponseError) -> NoReturn:
    """Raise the ConfigError for a refused setting, or ``error`` itself."""
    refused = refused_setting(error)
    if refused is None:
        raise error
    raise refused from None
