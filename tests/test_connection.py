"""common.py: the connection from REDIS_URL, the course's log lines, clean exits."""

import asyncio
import itertools
import os
import re
import subprocess
import sys

import pytest
import redis

from queuing import cli, connection, console, failover_errors, settings
from queuing.connection import (
    MAX_RETRY_DELAY,
    check_server_accepts,
    connect,
    connect_async,
    retry_delays,
    wait_until_connected,
    wait_until_connected_async,
)
from queuing.local_redis import RedisServer, RedisServerNotFound, free_port
from tests.processes import ROOT, run_script, skip_unless_ci


def test_redis_print_shows_the_server_reply(capsys):
    console.redis_print(True)  # redis-py's form of the server's OK
    console.redis_print(1)
    console.redis_print(0)
    assert capsys.readouterr().out == "Reply: OK\nReply: 1\nReply: 0\n"


def test_retry_delays_grow_like_node_redis_and_are_capped():
    delays = list(itertools.islice(retry_delays(), 12))
    assert delays[0] == pytest.approx(0.2)
    assert delays[1] == pytest.approx(0.34)
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    assert delays[-1] == MAX_RETRY_DELAY


def test_connect_reads_redis_url(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@example.test:6390/3")
    kwargs = connect().connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("example.test", 6390, 3)
    assert kwargs["password"] == "s3cret"


def test_connect_defaults_to_localhost(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    kwargs = connect().connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"]) == ("localhost", 6379)


@pytest.mark.parametrize(("url", "connection_class"), [
    ("redis://localhost:6379", redis.Connection),
    ("rediss://user:pw@localhost:6380", redis.SSLConnection),
    ("unix:///run/redis/redis.sock", redis.UnixDomainSocketConnection),
])
def test_connect_accepts_every_scheme(url, connection_class):
    assert connect(url).connection_pool.connection_class is connection_class


@pytest.mark.parametrize("url", ["http://localhost", "localhost:6379",
                                 "redis://:s3cret@localhost:notaport"])
def test_invalid_url_names_the_variable_and_hides_the_password(url):
    with pytest.raises(settings.InvalidRedisURL) as caught:
        connect(url)
    message = str(caught.value)
    assert message.startswith("REDIS_URL is not a usable Redis URL")
    assert "s3cret" not in message
    assert "\n" not in message


def test_nothing_connects_at_import_or_construction():
    # A port nobody listens on: building a client must not try it.
    connect("redis://127.0.0.1:1")


REFUSED = "Error 111 connecting to 127.0.0.1:6379. Connection refused."


class FlakyClient:
    """Refuses ``failures`` pings, then answers."""

    def __init__(self, failures):
        self.failures = failures

    def ping(self):
        if self.failures:
            self.failures -= 1
            raise redis.ConnectionError(REFUSED)
        return True


def test_wait_until_connected_logs_each_failure_then_connects(capsys):
    waits = []
    wait_until_connected(FlakyClient(3), sleep=waits.append)
    assert capsys.readouterr().out.splitlines() == [
        f"Redis client not connected to the server: {REFUSED}",
    ] * 3 + ["Redis client connected to the server"]
    assert waits == list(itertools.islice(retry_delays(), 3))


def test_wait_until_connected_runs_the_given_check(capsys):
    calls = []
    wait_until_connected(FlakyClient(0), check=lambda: calls.append("subscribed"))
    assert calls == ["subscribed"]
    assert capsys.readouterr().out == "Redis client connected to the server\n"


@pytest.mark.parametrize(("error", "status"), [
    (KeyboardInterrupt(), 130),
    (settings.InvalidRedisURL("REDIS_URL is not a usable Redis URL: bad scheme"), 2),
])
def test_run_ends_without_traceback(error, status, capsys):
    def main():
        raise error

    with pytest.raises(SystemExit) as exited:
        cli.run(main)
    assert exited.value.code == status
    assert "Traceback" not in capsys.readouterr().err


def test_run_exits_with_mains_status():
    with pytest.raises(SystemExit) as exited:
        cli.run(lambda: None)
    assert exited.value.code == 0


def test_quiet_wait_says_connected_only_after_a_failure(capsys):
    wait_until_connected(FlakyClient(0), quiet=True, sleep=lambda _: None)
    assert capsys.readouterr().out == ""
    wait_until_connected(FlakyClient(1), quiet=True, sleep=lambda _: None)
    assert capsys.readouterr().out.splitlines() == [
        f"Redis client not connected to the server: {REFUSED}",
        "Redis client connected to the server",
    ]


# --- REDIS_URL: every unusable value is one line naming the variable, never its value ---

SECRET = "s3cret"


@pytest.mark.parametrize(("url", "says"), [
    ("http://localhost", "redis://, rediss:// or unix://"),
    ("REDIS://localhost", "redis://, rediss:// or unix://"),
    ("localhost:6379", "redis://, rediss:// or unix://"),
    (f"redis://:{SECRET}@localhost:notaport", "port"),
    (f"redis://:{SECRET}@localhost:99999", "port"),
    (f"redis://:{SECRET}@localhost:0", "port"),
    (f"redis://:{SECRET}@[::1", "not a URL that can be read"),
    (f"redis://:{SECRET}@localhost:6379/notadb", "database"),
    (f"redis://:{SECRET}@localhost:6379/-1", "database"),
    (f"redis://:{SECRET}@localhost:6379/1/2", "database"),
    (f"redis://:{SECRET}@localhost:6379?db=x", "db"),
    (f"redis://:{SECRET}@localhost:6379?db=-1", "db"),
    (f"redis://:{SECRET}@localhost:6379?db=", "db"),
    (f"rediss://:{SECRET}@localhost:6380?ssl_cert_reqs=bogus", "none, optional or required"),
    (f"rediss://:{SECRET}@localhost:6380?ssl_check_hostname=maybe", "ssl_check_hostname"),
    (f"rediss://:{SECRET}@localhost:6380?ssl_min_version=99", "ssl_min_version"),
    (f"rediss://:{SECRET}@localhost:6380?ssl_include_verify_flags=NOPE", "ssl_include_verify"),
    (f"redis://:{SECRET}@localhost:6379?ssl_cert_reqs=none", "rediss://"),
    (f"redis://:{SECRET}@localhost:6379?client_name=a%20b", "client_name"),
    (f"redis://:{SECRET}@localhost:6379?client_name=a%0Ab", "client_name"),
    (f"redis://:{SECRET}@localhost:6379?socket_timeout=-1", "socket_timeout"),
    (f"redis://:{SECRET}@localhost:6379?socket_timeout=nan", "socket_timeout"),
    (f"redis://:{SECRET}@localhost:6379?socket_connect_timeout=soon", "socket_connect_timeout"),
    (f"redis://:{SECRET}@localhost:6379?max_connections=0", "max_connections"),
    (f"redis://:{SECRET}@localhost:6379?health_check_interval=-1", "health_check_interval"),
    (f"redis://:{SECRET}@localhost:6379?protocol=4", "protocol"),
    (f"redis://:{SECRET}@localhost:6379?retry_on_timeout=off", "retry_on_timeout"),
    (f"redis://:{SECRET}@localhost:6379?timeout=2", "timeout"),
    (f"redis://:{SECRET}@localhost:6379?retry_on_error=x", "retry_on_error"),
    (f"redis://:{SECRET}@localhost:6379?foo=bar", "an option redis-py does not know"),
    (f"rediss://:{SECRET}@localhost:6379?ssl_cert_req=none", "did you mean ssl_cert_reqs?"),
    (f"redis://localhost:6379?{SECRET}=1", "an option redis-py does not know"),
    ("unix://", "path"),
    (f"unix://:{SECRET}@/run/redis.sock?socket_keepalive=yes", "socket_keepalive"),
])
def test_unusable_redis_url_is_one_line_naming_the_variable(url, says):
    with pytest.raises(settings.InvalidRedisURL) as caught:
        connect(url)
    message = str(caught.value)
    assert message.startswith("REDIS_URL is not a usable Redis URL")
    assert says in message
    assert "\n" not in message
    assert SECRET not in message and "localhost" not in message


@pytest.mark.parametrize("url", [
    "redis://localhost:6379",
    "redis://localhost",
    "redis://",
    "redis://:pw@localhost:6379/0",
    "redis://user:pw@localhost:6379/15/",
    "redis://localhost:6379?db=3&socket_timeout=2.5&socket_connect_timeout=1"
    "&socket_keepalive=true&retry_on_timeout=no&health_check_interval=0&max_connections=5"
    "&protocol=3&client_name=queuing-system&socket_read_size=65536",
    "redis://[::1]:6379/1",
    "rediss://user:pw@localhost:6380?ssl_cert_reqs=none&ssl_check_hostname=false",
    "rediss://localhost:6380?ssl_ca_certs=/tmp/ca%20dir/ca.pem&ssl_cert_reqs=required"
    "&ssl_min_version=771&ssl_include_verify_flags=VERIFY_X509_STRICT",
    "unix:///run/redis/redis.sock",
    "unix:///run/redis/redis.sock?db=2&client_name=worker",
])
def test_usable_redis_urls_are_accepted(url):
    connect(url)
    connect_async(url)


def test_url_options_reach_the_client():
    url = "rediss://localhost:6380/4?ssl_cert_reqs=optional&socket_timeout=2.5&client_name=w1"
    kwargs = connect(url).connection_pool.connection_kwargs
    assert (kwargs["db"], kwargs["ssl_cert_reqs"], kwargs["socket_timeout"]) == (4, "optional", 2.5)
    assert kwargs["client_name"] == "w1"


EMPTY_URL_LINE = ("REDIS_URL is empty: unset it to use the default redis://localhost:6379, "
                  "or set it to a Redis URL")


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_redis_url_is_refused_not_taken_for_localhost(value, monkeypatch):
    monkeypatch.setenv("REDIS_URL", value)
    with pytest.raises(settings.ConfigError) as caught:
        connect()
    assert str(caught.value) == EMPTY_URL_LINE


CLIENT_MAKERS = (connect, connect_async, connection.rq_client, connection.server_client,
                 connection.seat_worker_client)


def test_every_client_maker_refuses_an_empty_redis_url(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "")
    for make in CLIENT_MAKERS:
        with pytest.raises(settings.ConfigError, match=r"^REDIS_URL is empty"):
            make()


def test_every_client_maker_refuses_an_unusable_url():
    for make in CLIENT_MAKERS:
        with pytest.raises(settings.InvalidRedisURL):
            make("redis://127.0.0.1:notaport")


def test_each_kind_of_client_answers_as_its_users_need():
    url = "redis://127.0.0.1:1"
    decodes = {make.__name__: make(url).connection_pool.connection_kwargs["decode_responses"]
               for make in CLIENT_MAKERS if make is not connect_async}
    assert decodes == {"connect": True, "rq_client": False, "server_client": True,
                       "seat_worker_client": False}
    assert connection.socket_timeout(connection.server_client(url)) == 5.0
    assert connection.socket_timeout(connection.seat_worker_client(url)) == 420
    pool = connection.server_client(url).connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)


# Where a client may be made from a URL: the factories, and the throwaway-server helper.
MAKES_CLIENTS = re.compile(r"\bRedis\(|\bfrom_url\(|StrictRedis")


def test_only_the_factories_make_clients():
    sources = [*ROOT.glob("queuing/*.py"), *ROOT.glob("*.py")]
    makers = {str(path.relative_to(ROOT)) for path in sources
              if MAKES_CLIENTS.search(path.read_text())}
    assert makers <= {"queuing/connection.py", "queuing/local_redis.py"}


@pytest.mark.parametrize("value", [b"caf\xc3\xa9", "caf\u00e9"])
def test_text_reads_replies_of_either_client(value):
    assert connection.text(value) == "caf\u00e9"


def test_an_empty_redis_url_ends_a_script_with_one_line_before_any_connection(monkeypatch,
                                                                              capsys):
    monkeypatch.setenv("REDIS_URL", "")
    with pytest.raises(SystemExit) as exited:
        cli.run(lambda: (connect(), 99)[1])  # 99: the URL was taken
    assert exited.value.code == 2
    assert capsys.readouterr() == ("", EMPTY_URL_LINE + "\n")


# --- What only the server can tell about a setting ---

class RefusingClient:
    """Its PING fails as a server refusing the connection's settings makes it fail."""

    def __init__(self, error):
        self.error = error

    def ping(self):
        raise self.error


DB_OUT_OF_RANGE = redis.ResponseError("DB index is out of range")
NAME_REFUSED = redis.ResponseError(
    "Client names cannot contain spaces, newlines or special characters.")


@pytest.mark.parametrize(("error", "says"), [
    (DB_OUT_OF_RANGE, "REDIS_URL names a database the Redis server does not have"),
    (NAME_REFUSED, "REDIS_URL has a client_name the Redis server refuses"),
])
def test_a_setting_the_server_refuses_is_a_config_error(error, says, capsys):
    with pytest.raises(settings.ConfigError, match=f"^{says}"):
        wait_until_connected(RefusingClient(error), sleep=pytest.fail)
    assert capsys.readouterr().out == ""


def test_a_web_server_checks_its_settings_once_and_starts_without_redis(capsys):
    with pytest.raises(settings.ConfigError, match=r"^REDIS_URL names a database"):
        check_server_accepts(RefusingClient(DB_OUT_OF_RANGE))
    check_server_accepts(RefusingClient(redis.ConnectionError(REFUSED)))
    check_server_accepts(FlakyClient(0))
    assert capsys.readouterr().out == ""


def test_a_setting_the_server_refuses_is_a_config_error_for_async_clients():
    class AsyncRefusingClient:
        async def ping(self):
            raise DB_OUT_OF_RANGE

    with pytest.raises(settings.ConfigError, match=r"^REDIS_URL names a database"):
        asyncio.run(wait_until_connected_async(AsyncRefusingClient()))


def test_other_server_errors_are_not_taken_for_settings():
    error = redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        wait_until_connected(RefusingClient(error), sleep=pytest.fail)


def test_a_wrong_password_is_waited_out_as_before(capsys):
    class WrongPasswordThenRight:
        failures = 2

        def ping(self):
            if self.failures:
                self.failures -= 1
                raise redis.AuthenticationError("invalid username-password pair")
            return True

    wait_until_connected(WrongPasswordThenRight(), sleep=lambda _: None)
    assert capsys.readouterr().out.splitlines() == [
        "Redis client not connected to the server: invalid username-password pair",
    ] * 2 + ["Redis client connected to the server"]


@pytest.mark.parametrize("error", [DB_OUT_OF_RANGE, NAME_REFUSED])
def test_run_ends_a_refused_setting_with_one_line_and_status_2(error, capsys):
    def main():
        raise error  # as RQ's worker registration or a request would meet it

    with pytest.raises(SystemExit) as exited:
        cli.run(main)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("REDIS_URL ") and err.count("\n") == 1


def test_run_lets_other_server_errors_through():
    with pytest.raises(redis.ResponseError):
        cli.run(lambda: (_ for _ in ()).throw(redis.ResponseError("WRONGTYPE")))


# --- Each line reaches stdout whole, in one write ---

class CountingStream:
    """A stream that records each write call, as an unbuffered stdout passes them on."""

    def __init__(self):
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, text):
        self.writes.append(text)
        return len(text)

    def flush(self):
        self.flushes += 1


def test_log_writes_each_line_with_its_newline_in_one_call(monkeypatch):
    stream = CountingStream()
    monkeypatch.setattr(sys, "stdout", stream)
    console.log("Notification job #1 completed")
    console.redis_print(True)
    assert stream.writes == ["Notification job #1 completed\n", "Reply: OK\n"]
    assert stream.flushes == 2


def test_log_error_writes_each_line_with_its_newline_in_one_call(monkeypatch):
    stream = CountingStream()
    monkeypatch.setattr(sys, "stderr", stream)
    console.log_error("REDIS_URL is empty")
    assert stream.writes == ["REDIS_URL is empty\n"]
    assert stream.flushes == 1


WRITER = """
import sys
import common
sys.stderr.write("ready\\n")
sys.stderr.flush()
sys.stdin.readline()  # both writers start together
for number in range({lines}):
    common.log(f"Sending notification to 4153518780, with message: code {{number}} from "
              + sys.argv[1])
"""


def test_two_unbuffered_processes_never_cut_each_others_lines():
    # PYTHONUNBUFFERED=1, as in containers: without one write per line, a line of one
    # process can end in the middle of the other's ("...code 162Sending notification...").
    lines = 20000
    read_end, write_end = os.pipe()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    try:
        writers = [subprocess.Popen([sys.executable, "-c", WRITER.format(lines=lines), name],
                                    cwd=ROOT, env=env, stdout=write_end,
                                    stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for name in ("A", "B")]
    finally:
        os.close(write_end)
    for writer in writers:
        assert writer.stderr.readline() == "ready\n"
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.close()
    with os.fdopen(read_end) as reader:
        output = reader.read()
    for writer in writers:
        assert writer.wait(timeout=60) == 0
        writer.stderr.close()
    got = output.splitlines()
    assert len(got) == 2 * lines
    pattern = re.compile(r"Sending notification to 4153518780, with message: code \d+ from [AB]")
    cut = [line for line in got if not pattern.fullmatch(line)]
    assert cut == []


# --- Sentinel URLs: every factory gives a client on the master the sentinels name ---

SENTINEL_URL = (f"redis+sentinel://app:{SECRET}@127.0.0.1:1,127.0.0.1:2/mymaster/2"
                f"?sentinel_password=sentinel-{SECRET}")


def test_every_client_maker_takes_a_sentinel_url():
    for make in CLIENT_MAKERS:
        client = make(SENTINEL_URL)  # nothing connects yet
        pool = client.connection_pool
        assert pool.service_name == "mymaster"
        kwargs = pool.connection_kwargs
        assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (2, "app", SECRET)
        sentinels = pool.sentinel_manager.sentinels
        assert [sentinel.connection_pool.connection_kwargs["port"]
                for sentinel in sentinels] == [1, 2]
        assert {sentinel.connection_pool.connection_kwargs["password"]
                for sentinel in sentinels} == {f"sentinel-{SECRET}"}


def test_sentinel_clients_answer_and_wait_as_their_direct_twins():
    direct, sentinel = "redis://127.0.0.1:1", "redis+sentinel://127.0.0.1:1/mymaster"
    for make in (connect, connection.rq_client, connection.server_client,
                 connection.seat_worker_client):
        twin = make(direct).connection_pool.connection_kwargs
        kwargs = make(sentinel).connection_pool.connection_kwargs
        for option in ("decode_responses", "socket_timeout", "socket_connect_timeout",
                       "socket_keepalive", "health_check_interval", "parser_class"):
            assert kwargs.get(option) == twin.get(option), (make.__name__, option)
        assert type(kwargs.get("retry")) is type(twin.get("retry"))
    pool = connection.server_client(sentinel).connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert (pool.max_connections, pool.timeout) == (connection.POOL_SIZE,
                                                    connection.POOL_WAIT_SECONDS)
    assert isinstance(connect_async(sentinel).connection_pool,
                      redis.asyncio.sentinel.SentinelConnectionPool)


def test_a_tls_sentinel_url_speaks_tls_to_the_master_and_the_sentinels():
    client = connect("rediss+sentinel://h:26379/mymaster?ssl_cert_reqs=none")
    pool = client.connection_pool
    assert issubclass(pool.connection_class, redis.sentinel.SentinelManagedSSLConnection)
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
    [sentinel] = pool.sentinel_manager.sentinels
    assert sentinel.connection_pool.connection_class is redis.SSLConnection
    assert sentinel.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"
    plain = connect("redis+sentinel://h/mymaster").connection_pool
    assert issubclass(plain.connection_class, redis.sentinel.SentinelManagedConnection)
    assert not issubclass(plain.connection_class, redis.SSLConnection)


def test_a_dead_sentinel_is_not_retried_and_its_timeouts_are_short():
    [sentinel] = connection.seat_worker_client(
        "redis+sentinel://h/mymaster").connection_pool.sentinel_manager.sentinels
    kwargs = sentinel.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 2.0
    assert kwargs["retry"].get_retries() == 0
    [async_sentinel] = connect_async(
        "redis+sentinel://h/mymaster").connection_pool.sentinel_manager.sentinels
    retry = async_sentinel.connection_pool.connection_kwargs["retry"]
    assert isinstance(retry, redis.asyncio.retry.Retry) and retry.get_retries() == 0


def test_no_sentinel_answering_is_not_connected(capsys):
    client = connect("redis+sentinel://127.0.0.1:1/mymaster")
    with pytest.raises(redis.ConnectionError, match="No master found for 'mymaster'"):
        client.ping()
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        if len(waits) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        wait_until_connected(client, sleep=sleep)
    assert capsys.readouterr().out.startswith(
        "Redis client not connected to the server: No master found for 'mymaster'")


# --- A failover's error replies are "not connected" ---

@pytest.mark.parametrize("reply", [
    "READONLY You can't write against a read only replica.",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "NOREPLICAS Not enough good replicas to write.",
    "UNBLOCKED force unblock from blocking operation, instance state changed "
    "(master -> replica?)",
    "LOADING Redis is loading the dataset in memory",
])
@pytest.mark.parametrize(("protocol", "is_async"), [(2, False), (3, False), (2, True),
                                                    (3, True)])
def test_failover_replies_are_connection_errors(reply, protocol, is_async):
    error = connection.failover_parser(protocol, is_async).parse_error(reply)
    assert isinstance(error, connection.FailoverInProgress)
    assert isinstance(error, redis.ConnectionError)
    assert str(error) == reply
    assert connection.is_not_connected(error)


@pytest.mark.parametrize("parser", [
    failover_errors._FailoverHiredisParser, failover_errors._FailoverRESP2Parser,
    failover_errors._FailoverRESP3Parser, failover_errors._FailoverAsyncHiredisParser,
    failover_errors._FailoverAsyncRESP2Parser, failover_errors._FailoverAsyncRESP3Parser,
])
def test_every_parser_maps_readonly_and_leaves_other_errors_alone(parser):
    assert isinstance(parser.parse_error("READONLY no"), connection.FailoverInProgress)
    assert isinstance(parser.parse_error("LOADING wait"), redis.BusyLoadingError)
    assert type(parser.parse_error("WRONGTYPE Operation")) is redis.ResponseError
    assert isinstance(parser.parse_error("NOSCRIPT No matching"), redis.exceptions.NoScriptError)


def test_hiredis_raises_the_mapped_error_for_a_reply_off_the_wire():
    hiredis = pytest.importorskip("hiredis")
    reader = hiredis.Reader(replyError=failover_errors._FailoverHiredisParser.parse_error)
    reader.feed(b"-READONLY You can't write against a read only replica.\r\n")
    assert isinstance(reader.gets(), connection.FailoverInProgress)


@pytest.mark.parametrize(("error", "expected"), [
    (redis.ConnectionError("Connection refused"), True),
    (redis.TimeoutError("Timeout reading from socket"), True),
    (redis.BusyLoadingError("loading"), True),
    (redis.exceptions.ReadOnlyError("You can't write", status_code="READONLY"), True),
    (redis.exceptions.MasterDownError("Link with MASTER is down", status_code="MASTERDOWN"),
     True),
    (redis.ResponseError("NOREPLICAS Not enough good replicas to write."), True),
    (redis.ResponseError("UNBLOCKED force unblock"), True),
    (redis.ResponseError("WRONGTYPE Operation against a key"), False),
    (redis.ResponseError("DB index is out of range"), False),
    (ValueError("READONLY"), False),
])
def test_is_not_connected(error, expected):
    assert connection.is_not_connected(error) is expected


@pytest.mark.parametrize("make", CLIENT_MAKERS)
def test_every_client_parses_failover_replies(make):
    for url in ("redis://127.0.0.1:1", "redis+sentinel://127.0.0.1:1/m",
                "unix:///run/redis.sock"):
        parser = make(url).connection_pool.connection_kwargs["parser_class"]
        assert parser.EXCEPTION_CLASSES["READONLY"] is connection.FailoverInProgress


def test_a_resp3_url_gets_a_parser_for_resp3(monkeypatch):
    monkeypatch.setattr(failover_errors, "HIREDIS_AVAILABLE", False)
    for url in ("redis://h?protocol=3", "redis+sentinel://h/m?protocol=3"):
        assert (connect(url).connection_pool.connection_kwargs["parser_class"]
                is failover_errors._FailoverRESP3Parser)
    assert (connect("redis://h").connection_pool.connection_kwargs["parser_class"]
            is failover_errors._FailoverRESP2Parser)


# --- The connected check asks ROLE ---

class RoleClient(redis.Redis):
    """A client whose server answers ROLE (or refuses it) as ``answer`` says."""

    def __init__(self, answer):
        super().__init__(port=1)
        self.answer = answer
        self.pings = 0

    def role(self):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def ping(self, **kwargs):
        self.pings += 1
        return True

    def info(self, section=None, *args, **kwargs):
        return {"cluster_enabled": 0}


def test_a_replica_is_not_connected(capsys):
    waits = []
    client = RoleClient([b"slave", b"127.0.0.1", 6390, b"connected", 100])

    def sleep(seconds):
        waits.append(seconds)
        client.answer = [b"master", 100, []]

    wait_until_connected(client, sleep=sleep)
    assert capsys.readouterr().out.splitlines() == [
        f"Redis client not connected to the server: {connection.REPLICA}",
        "Redis client connected to the server"]


@pytest.mark.parametrize("refusal", [
    redis.exceptions.NoPermissionError("this user has no permissions to run the 'role' command"),
    redis.ResponseError("unknown command 'ROLE', with args beginning with: "),
])
def test_a_server_that_will_not_say_its_role_is_asked_ping(refusal, capsys):
    client = RoleClient(refusal)
    wait_until_connected(client, sleep=pytest.fail)
    assert client.pings == 1
    assert capsys.readouterr().out == "Redis client connected to the server\n"


def test_the_async_check_asks_role_too(capsys):
    class AsyncReplica(redis.asyncio.Redis):
        calls = 0

        async def role(self):
            AsyncReplica.calls += 1
            return ["slave"] if AsyncReplica.calls == 1 else ["master", 1, []]

        async def info(self, section=None, *args, **kwargs):
            return {"cluster_enabled": 0}

    async def check():
        client = AsyncReplica(port=1)
        await wait_until_connected_async(client)
        await client.aclose()

    asyncio.run(check())
    assert capsys.readouterr().out.splitlines() == [
        f"Redis client not connected to the server: {connection.REPLICA}",
        "Redis client connected to the server"]


# --- Keepalive: a silently dead master is noticed in seconds ---

@pytest.mark.parametrize("url", ["redis://127.0.0.1:1", "rediss://127.0.0.1:1",
                                 "redis+sentinel://127.0.0.1:1/m"])
def test_every_tcp_client_keeps_its_connections_alive(url):
    for make in CLIENT_MAKERS:
        kwargs = make(url).connection_pool.connection_kwargs
        assert kwargs["socket_keepalive"] is True, make.__name__
        assert kwargs["socket_keepalive_options"] == connection.keepalive_options()
    idle, interval, probes = (connection.KEEPALIVE_IDLE, connection.KEEPALIVE_INTERVAL,
                              connection.KEEPALIVE_PROBES)
    assert idle + interval * probes <= 10


def test_workers_clients_check_idle_connections():
    for url in ("redis://127.0.0.1:1", "redis+sentinel://127.0.0.1:1/m",
                "unix:///run/redis.sock"):
        for make in (connection.rq_client, connection.seat_worker_client):
            kwargs = make(url).connection_pool.connection_kwargs
            assert kwargs["health_check_interval"] == connection.HEALTH_CHECK_SECONDS


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:1?socket_keepalive=false&health_check_interval=0",
    "redis+sentinel://127.0.0.1:1/m?socket_keepalive=false&health_check_interval=0",
])
def test_the_urls_keepalive_options_win(url):
    for make in (connection.rq_client, connection.seat_worker_client, connect):
        kwargs = make(url).connection_pool.connection_kwargs
        assert kwargs["socket_keepalive"] is False
        assert kwargs.get("health_check_interval", 0) == 0


def test_a_unix_socket_gets_no_tcp_keepalive():
    kwargs = connection.rq_client("unix:///run/redis.sock").connection_pool.connection_kwargs
    assert "socket_keepalive" not in kwargs


# --- Redis Cluster is refused at the first connection ---

CLUSTER_LINE = ("REDIS_URL points at a Redis Cluster node; RQ and this project need a single "
                "master or Sentinel (redis+sentinel://...)")


@pytest.fixture(scope="module")
def cluster_node(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    cluster = ("--cluster-enabled", "yes", "--cluster-config-file", str(folder / "nodes.conf"))
    try:
        # Its bus port is its own free port (Redis 7), not port + 10000, which may be taken.
        server = RedisServer(*cluster, "--cluster-port", str(free_port())).start()
    except RuntimeError:
        try:
            server = RedisServer(*cluster).start()  # Redis 6.2 has no cluster-port
        except (RedisServerNotFound, RuntimeError) as error:
            skip_unless_ci(str(error))
    except RedisServerNotFound as error:
        skip_unless_ci(str(error))
    yield server
    server.close()


@pytest.mark.redis_server
def test_a_cluster_node_is_refused_with_one_line(cluster_node, capsys):
    with pytest.raises(settings.ConfigError) as caught:
        wait_until_connected(connect(cluster_node.url), sleep=pytest.fail)
    assert str(caught.value) == CLUSTER_LINE
    with pytest.raises(settings.ConfigError, match="Redis Cluster"):
        check_server_accepts(connection.server_client(cluster_node.url))
    with pytest.raises(settings.ConfigError, match="Redis Cluster"):
        asyncio.run(wait_until_connected_async(connect_async(cluster_node.url)))
    assert capsys.readouterr().out == ""


@pytest.mark.redis_server
def test_a_script_pointed_at_a_cluster_node_exits_2(cluster_node):
    result = run_script("1_redis_op", cluster_node.url)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", CLUSTER_LINE + "\n")


@pytest.mark.redis_server
def test_the_cluster_check_is_asked_once_per_client(redis_url):
    client = connect(redis_url)
    wait_until_connected(client, quiet=True)
    before = client.info("commandstats").get("cmdstat_info", {}).get("calls", 0)
    for _ in range(3):
        wait_until_connected(client, quiet=True)
    after = client.info("commandstats").get("cmdstat_info", {}).get("calls", 0)
    assert after - before == 1  # only the commandstats INFO above
