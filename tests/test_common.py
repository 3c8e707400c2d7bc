"""common.py: the connection from REDIS_URL, the course's log lines, clean exits."""

import itertools

import pytest
import redis

import common


def test_redis_print_shows_the_server_reply(capsys):
    common.redis_print(True)  # redis-py's form of the server's OK
    common.redis_print(1)
    common.redis_print(0)
    assert capsys.readouterr().out == "Reply: OK\nReply: 1\nReply: 0\n"


def test_retry_delays_grow_like_node_redis_and_are_capped():
    delays = list(itertools.islice(common.retry_delays(), 12))
    assert delays[0] == pytest.approx(0.2)
    assert delays[1] == pytest.approx(0.34)
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    assert delays[-1] == common.MAX_RETRY_DELAY


def test_connect_reads_redis_url(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@example.test:6390/3")
    kwargs = common.connect().connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("example.test", 6390, 3)
    assert kwargs["password"] == "s3cret"


def test_connect_defaults_to_localhost(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    kwargs = common.connect().connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"]) == ("localhost", 6379)


@pytest.mark.parametrize(("url", "connection_class"), [
    ("redis://localhost:6379", redis.Connection),
    ("rediss://user:pw@localhost:6380", redis.SSLConnection),
    ("unix:///run/redis/redis.sock", redis.UnixDomainSocketConnection),
])
def test_connect_accepts_every_scheme(url, connection_class):
    assert common.connect(url).connection_pool.connection_class is connection_class


@pytest.mark.parametrize("url", ["http://localhost", "localhost:6379",
                                 "redis://:s3cret@localhost:notaport"])
def test_invalid_url_names_the_variable_and_hides_the_password(url):
    with pytest.raises(common.InvalidRedisURL) as caught:
        common.connect(url)
    message = str(caught.value)
    assert message.startswith("REDIS_URL is not a usable Redis URL")
    assert "s3cret" not in message
    assert "\n" not in message


def test_nothing_connects_at_import_or_construction():
    # A port nobody listens on: building a client must not try it.
    common.connect("redis://127.0.0.1:1")


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
    common.wait_until_connected(FlakyClient(3), sleep=waits.append)
    assert capsys.readouterr().out.splitlines() == [
        f"Redis client not connected to the server: {REFUSED}",
    ] * 3 + ["Redis client connected to the server"]
    assert waits == list(itertools.islice(common.retry_delays(), 3))


def test_wait_until_connected_runs_the_given_check(capsys):
    calls = []
    common.wait_until_connected(FlakyClient(0), check=lambda: calls.append("subscribed"))
    assert calls == ["subscribed"]
    assert capsys.readouterr().out == "Redis client connected to the server\n"


@pytest.mark.parametrize(("error", "status"), [
    (KeyboardInterrupt(), 130),
    (common.InvalidRedisURL("REDIS_URL is not a usable Redis URL: bad scheme"), 2),
])
def test_run_ends_without_traceback(error, status, capsys):
    def main():
        raise error

    with pytest.raises(SystemExit) as exited:
        common.run(main)
    assert exited.value.code == status
    assert "Traceback" not in capsys.readouterr().err


def test_run_exits_with_mains_status():
    with pytest.raises(SystemExit) as exited:
        common.run(lambda: None)
    assert exited.value.code == 0


def test_quiet_wait_says_connected_only_after_a_failure(capsys):
    common.wait_until_connected(FlakyClient(0), quiet=True, sleep=lambda _: None)
    assert capsys.readouterr().out == ""
    common.wait_until_connected(FlakyClient(1), quiet=True, sleep=lambda _: None)
    assert capsys.readouterr().out.splitlines() == [
        f"Redis client not connected to the server: {REFUSED}",
        "Redis client connected to the server",
    ]
