"""REDIS_URL naming a master that Redis Sentinel watches: the URL's forms, the clients made
from it, and a real master, replica and sentinels (local_redis.SentinelRig: throwaway
redis-server processes)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from rq.cli.helpers import get_redis_from_config
from rq.connections import parse_connection

from queuing import connection, settings, urls
from queuing.local_redis import RedisServer, SentinelRig
from queuing.urls import SentinelURL, parse_sentinel_url
from tests.processes import ROOT, run_script, script_env, started_rig

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


# --- A real master, a replica and three sentinels (local_redis.SentinelRig) ---

RIG_WAIT = 20.0


def poll(condition: Callable[[], object], what: str, timeout: float = RIG_WAIT) -> object:
    """``condition()``'s first true value, asked again until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except redis.RedisError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def rig() -> Iterator[SentinelRig]:
    """One rig for the tests that leave its master where it is."""
    with started_rig() as started:
        yield started


@pytest.fixture
def switching() -> Iterator[SentinelRig]:
    """A rig of the test's own, to fail over."""
    with started_rig() as started:
        yield started


def master_url(rig: SentinelRig) -> str:
    """The direct URL of the rig's master (``redis://``)."""
    return rig.servers[rig.master_port()].url


def replica_url(rig: SentinelRig) -> str:
    """The direct URL of the rig's replica."""
    master = rig.master_port()
    [replica] = [server for port, server in rig.servers.items() if port != master]
    return replica.url


@pytest.mark.redis_server
def test_the_first_script_connects_through_the_sentinel(rig):
    result = run_script("0_redis_client", rig.url)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "Redis client connected to the server\n", "")


@pytest.mark.redis_server
@pytest.mark.parametrize("make", [connection.connect, connection.rq_client,
                                  connection.server_client, connection.seat_worker_client])
def test_every_client_writes_to_the_master_the_sentinel_names(rig, make):
    client = make(rig.url)
    try:
        assert client.set(f"written-by-{make.__name__}", "yes")
        assert connection.text(redis.Redis(port=rig.master_port()).get(
            f"written-by-{make.__name__}")) == "yes"
        host, port = client.connection_pool.get_master_address()
        assert (host, int(port)) == ("127.0.0.1", rig.master_port())
    finally:
        client.close()


@pytest.mark.redis_server
def test_the_async_client_reads_and_writes_through_the_sentinel(rig):
    async def set_and_get() -> str:
        client = connection.connect_async(rig.url)
        try:
            await connection.wait_until_connected_async(client)
            await client.set("async-key", "async-value")
            return await client.get("async-key")
        finally:
            await client.aclose()

    assert asyncio.run(set_and_get()) == "async-value"


@pytest.mark.redis_server
def test_set_and_get_through_connect(rig, capsys):
    client = connection.connect(rig.url)
    connection.wait_until_connected(client)
    assert client.set("course", "queuing")
    assert client.get("course") == "queuing"
    assert capsys.readouterr().out == "Redis client connected to the server\n"


@pytest.mark.redis_server
def test_a_replicas_readonly_is_not_connected(rig):
    # A direct URL naming the replica: what a client still on a demoted master meets.
    client = connection.connect(replica_url(rig))
    with pytest.raises(connection.FailoverInProgress) as caught:
        client.set("refused", "1")
    assert isinstance(caught.value, redis.ConnectionError)
    assert str(caught.value).startswith("READONLY You can't write against a read only replica")
    assert connection.is_not_connected(caught.value)
    with client.pipeline() as pipe:
        pipe.get("refused").set("refused", "1")
        with pytest.raises(connection.FailoverInProgress):
            pipe.execute()
    script = client.register_script("return redis.call('SET', KEYS[1], ARGV[1])")
    with pytest.raises(connection.FailoverInProgress):
        script(keys=["refused"], args=["1"])
    assert client.get("refused") is None  # reads still work


@pytest.mark.redis_server
def test_the_connected_check_waits_while_the_server_is_a_replica(rig, capsys):
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise KeyboardInterrupt  # enough: it would wait for ever

    with pytest.raises(KeyboardInterrupt):
        connection.wait_until_connected(connection.connect(replica_url(rig)), sleep=sleep)
    assert capsys.readouterr().out.splitlines() == [
        f"Redis client not connected to the server: {connection.REPLICA}"] * 2


@pytest.mark.redis_server
def test_a_direct_url_at_the_sentinel_itself_is_a_config_error(rig):
    at_a_sentinel = f"redis://127.0.0.1:{rig.sentinel_ports[0]}"
    with pytest.raises(settings.ConfigError, match="points at a Redis Sentinel"):
        connection.wait_until_connected(connection.connect(at_a_sentinel), sleep=pytest.fail)


@pytest.mark.redis_server
def test_a_command_blocked_on_a_master_that_is_demoted_is_not_connected():
    # A worker waits in a blocking pop; the master becomes a replica under it.
    with RedisServer() as old, RedisServer() as new:
        client = connection.rq_client(old.url, socket_timeout=10)
        outcome: list[BaseException | object] = []
        waiting = threading.Thread(target=lambda: outcome.append(_blpop(client)))
        waiting.start()
        admin = redis.Redis(port=old.port)
        poll(lambda: admin.info("clients")["blocked_clients"] == 1, "the pop to block")
        admin.replicaof("127.0.0.1", new.port)
        waiting.join(timeout=RIG_WAIT)
        admin.close()
        client.close()
    [error] = outcome
    assert isinstance(error, connection.FailoverInProgress), error
    assert str(error).startswith("UNBLOCKED ")


def _blpop(client: redis.Redis) -> BaseException | object:
    try:
        return client.blpop(["queue"], timeout=8)
    except redis.RedisError as error:
        return error


# --- RQ's own command line: queuing.rq_settings ---

def test_rq_settings_give_rq_a_direct_url_as_it_is():
    assert connection.rq_config({"REDIS_URL": "redis://h:6390/2"}) == {
        "REDIS_URL": "redis://h:6390/2"}


def test_rq_settings_give_rq_its_sentinel_settings():
    url = (f"redis+sentinel://app:{SECRET}@h1:26380,h2/mymaster/3"
           f"?sentinel_password=s-{SECRET}&socket_timeout=7")
    config = connection.rq_config({"REDIS_URL": url})["SENTINEL"]
    assert (config["INSTANCES"], config["MASTER_NAME"], config["DB"]) == (
        [("h1", 26380), ("h2", 26379)], "mymaster", 3)
    assert (config["USERNAME"], config["PASSWORD"], config["SSL"]) == ("app", SECRET, False)
    assert config["SOCKET_TIMEOUT"] == 7.0
    assert config["SENTINEL_KWARGS"]["password"] == f"s-{SECRET}"
    kwargs = config["CONNECTION_KWARGS"]
    assert kwargs["parser_class"].EXCEPTION_CLASSES["READONLY"] is connection.FailoverInProgress
    assert kwargs["health_check_interval"] == connection.HEALTH_CHECK_SECONDS
    assert kwargs["socket_keepalive"] is True
    assert kwargs["decode_responses"] is False


@pytest.mark.parametrize("value", ["", "redis+sentinel://h1/mymaster?db=x"])
def test_rq_settings_refuse_a_bad_url(value):
    with pytest.raises(settings.ConfigError):
        connection.rq_config({"REDIS_URL": value})


@pytest.mark.redis_server
def test_rqs_own_helper_connects_through_the_sentinel(rig):
    client = get_redis_from_config(connection.rq_config({"REDIS_URL": rig.url}))
    try:
        assert client.set("from-rq-cli", "1")
        assert redis.Redis(port=rig.master_port()).get("from-rq-cli") == b"1"
        parser = client.connection_pool.connection_kwargs["parser_class"]
        assert parser.EXCEPTION_CLASSES["READONLY"] is connection.FailoverInProgress
    finally:
        client.close()


@pytest.mark.redis_server
def test_rq_info_reads_the_sentinel_url(rig):
    command = [sys.executable, "-m", "rq.cli", "info", "-c", "queuing.rq_settings"]
    result = subprocess.run(command, cwd=ROOT, env=script_env(rig.url), capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "0 workers, 0 queues" in result.stdout


def test_rq_info_with_a_bad_url_is_one_line_and_status_2():
    command = [sys.executable, "-m", "rq.cli", "info", "-c", "queuing.rq_settings"]
    url = f"redis+sentinel://:{SECRET}@h1/mymaster?socket_timeout=soon"
    result = subprocess.run(command, cwd=ROOT, env=script_env(url), capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "REDIS_URL is not a usable Redis URL: socket_timeout must be a " \
                            "number of seconds more than 0\n"


@pytest.mark.redis_server
def test_rqs_scheduler_rebuilds_a_working_client_from_a_sentinel_one(rig):
    # RQ's scheduler makes its own client from the worker's pool settings.
    client_class, connection_class, kwargs = parse_connection(connection.rq_client(rig.url))
    rebuilt = client_class(connection_pool=redis.ConnectionPool(connection_class=connection_class,
                                                                **kwargs))
    try:
        assert rebuilt.set("from-the-scheduler", "1")
        assert redis.Redis(port=rig.master_port()).get("from-the-scheduler") == b"1"
    finally:
        rebuilt.close()


@pytest.mark.redis_server
def test_a_client_follows_the_master_through_a_failover(switching, capsys):
    client = connection.connect(switching.url)
    server = connection.server_client(switching.url)
    assert client.set("before", "1") and server.get("before") == "1"
    old = switching.master_port()
    new = switching.failover()  # every sentinel names the replica, which answers as master
    # The old master is demoted (as the sentinels do within their 10 s round of INFO): a
    # client still connected to it may meet READONLY once, as not connected, then asks the
    # sentinels again and writes to the new master.
    redis.Redis(port=old).replicaof("127.0.0.1", new)
    assert connection.through_outages(client, client.set, "after", "2")
    assert poll(lambda: server.get("after"), "the server client to read it") == "2"
    assert redis.Redis(port=new).get("after") == b"2"
    client.close()
    server.close()
    out = capsys.readouterr().out
    assert set(out.splitlines()) <= {
        f"Redis client not connected to the server: {line}" for line in (
            "READONLY You can't write against a read only replica.",
            connection.REPLICA, "Connection closed by server.")
    } | {"Redis client connected to the server"}


@pytest.mark.redis_server
@pytest.mark.parametrize("url_of", [master_url, lambda rig: rig.url])
def test_connections_have_tcp_keepalive_set(rig, url_of):
    client = connection.rq_client(url_of(rig))
    try:
        client.ping()
        sock = client.connection_pool.get_connection()
        try:
            raw = sock._sock
            assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == \
                    connection.KEEPALIVE_IDLE
        finally:
            client.connection_pool.release(sock)
    finally:
        client.close()
