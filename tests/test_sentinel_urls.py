"""REDIS_URL naming a master that Redis Sentinel watches: the URL's forms, the clients made
from it, and a real master with a real sentinel (throwaway redis-server processes)."""

from __future__ import annotations

import pytest

from queuing import settings, urls
from queuing.urls import SentinelURL, parse_sentinel_url

SECRET = "s3cret"


@pytest.mark.parametrize(("url", "expected"), [
    ("redis+sentinel://127.0.0.1:26380/mymaster",
     SentinelURL([("127.0.0.1", 26380)], "mymaster", 0, None, None, None, False, {})),
    ("redis+sentinel://sentinel-a,sentinel-b:26400,sentinel-c/mymaster/3",
     SentinelURL([("sentinel-a", 26379), ("sentinel-b", 26400), ("sentinel-c", 26379)],
                 "mymaster", 3, None, None, None, False, {})),
    (f"redis+sentinel://app:{SECRET}@h1:1,h2:2/cache/",
     SentinelURL([("h1", 1), ("h2", 2)], "cache", 0, "app", SECRET, None, False, {})),
    (f"redis+sentinel://:p%40ss@h/m?sentinel_password={SECRET}&socket_timeout=2.5",
     SentinelURL([("h", 26379)], "m", 0, None, "p@ss", SECRET, False,
                 {"socket_timeout": "2.5"})),
    ("redis+sentinel://[::1]:26379,[::1]/mymaster?db=4&client_name=w1",
     SentinelURL([("::1", 26379), ("::1", 26379)], "mymaster", 4, None, None, None, False,
                 {"client_name": "w1"})),
    ("rediss+sentinel://h:26379/mymaster/1?ssl_cert_reqs=none&ssl_check_hostname=false",
     SentinelURL([("h", 26379)], "mymaster", 1, None, None, None, True,
                 {"ssl_cert_reqs": "none", "ssl_check_hostname": "false"})),
    ("redis+sentinel://h/my%2Dmaster?socket_keepalive=no&health_check_interval=0",
     SentinelURL([("h", 26379)], "my-master", 0, None, None, None, False,
                 {"socket_keepalive": "no", "health_check_interval": "0"})),
])
def test_sentinel_urls_are_read(url, expected):
    assert parse_sentinel_url(url) == expected
    urls.check_redis_url(url)


@pytest.mark.parametrize(("url", "says"), [
    (f"redis+sentinel://:{SECRET}@h1:26379,h2", "names no master"),
    (f"redis+sentinel://:{SECRET}@h1:26379/", "names no master"),
    (f"redis+sentinel://:{SECRET}@/mymaster", "names no sentinel"),
    ("redis+sentinel:///mymaster", "names no sentinel"),
    (f"redis+sentinel://:{SECRET}@h1,,h2/mymaster", "empty entry"),
    (f"redis+sentinel://:{SECRET}@h1,/mymaster", "empty entry"),
    (f"redis+sentinel://:{SECRET}@h1:notaport/mymaster", "port"),
    (f"redis+sentinel://:{SECRET}@h1:99999/mymaster", "port"),
    (f"redis+sentinel://:{SECRET}@h1:0,h2/mymaster", "port"),
    (f"redis+sentinel://:{SECRET}@[::1/mymaster", "port"),
    (f"redis+sentinel://:{SECRET}@h1/mymaster/x", "database"),
    (f"redis+sentinel://:{SECRET}@h1/mymaster/1/2", "database"),
    (f"redis+sentinel://:{SECRET}@h1/my%20master", "master's name"),
    (f"redis+sentinel://:{SECRET}@h1/mymaster?db=x", "db"),
    (f"redis+sentinel://:{SECRET}@h1/mymaster?foo=bar", "an option redis-py does not know"),
    (f"redis+sentinel://h1/mymaster?{SECRET}=1", "an option redis-py does not know"),
    (f"redis+sentinel://h1/mymaster?sentinel_pasword={SECRET}",
     "did you mean sentinel_password?"),
    (f"redis+sentinel://:{SECRET}@h1/mymaster?sentinel_password=", "sentinel_password"),
    (f"redis+sentinel://:{SECRET}@h1/mymaster?ssl_cert_reqs=none", "rediss+sentinel://"),
    (f"rediss+sentinel://:{SECRET}@h1/mymaster?ssl_cert_reqs=bogus", "ssl_cert_reqs"),
    (f"redis+sentinel://:{SECRET}@h1/mymaster?socket_timeout=-1", "socket_timeout"),
    (f"redis+sentinel://:{SECRET}@h1/mymaster?timeout=2", "timeout"),
    (f"redis+sentinel://:{SECRET}@h1/mymaster#{SECRET}", "not a URL that can be read"),
    (f"REDIS+SENTINEL://:{SECRET}@h1/mymaster", "redis+sentinel://"),
    (f"sentinel://:{SECRET}@h1/mymaster", "redis+sentinel://"),
])
def test_unusable_sentinel_url_is_one_line_without_secrets(url, says):
    with pytest.raises(settings.InvalidRedisURL) as caught:
        urls.check_redis_url(url)
    message = str(caught.value)
    assert message.startswith("REDIS_URL is not a usable Redis URL: ")
    assert says in message
    assert "\n" not in message
    assert SECRET not in message and "h1" not in message


def test_only_sentinel_schemes_are_sentinel_urls():
    assert urls.is_sentinel_url("redis+sentinel://h/m")
    assert urls.is_sentinel_url("rediss+sentinel://h/m")
    assert not urls.is_sentinel_url("redis://h:26379/0")
    with pytest.raises(settings.InvalidRedisURL, match="redis\\+sentinel://"):
        parse_sentinel_url("redis://h:26379/0")
