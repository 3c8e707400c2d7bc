"""Configuration: .env is read when present and never overrides the environment."""

from __future__ import annotations

import pytest

from queuing import settings, urls
from queuing.local_redis import free_port
from tests.processes import ROOT, Script


def test_env_file_fills_in_but_never_overrides(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("ISSUE6_FROM_FILE=file\nISSUE6_ALREADY_SET=file\n")
    monkeypatch.delenv("ISSUE6_FROM_FILE", raising=False)
    monkeypatch.setenv("ISSUE6_ALREADY_SET", "shell")
    assert settings.load_env(env_file)
    assert settings.os.environ["ISSUE6_FROM_FILE"] == "file"
    assert settings.os.environ["ISSUE6_ALREADY_SET"] == "shell"
    monkeypatch.delenv("ISSUE6_FROM_FILE")


def test_no_env_file_is_fine(tmp_path):
    assert not settings.load_env(tmp_path / "missing.env")


@pytest.mark.parametrize(("raw", "expected"), [(None, 60.0), ("", 60.0), ("2.5", 2.5)])
def test_positive_number(raw, expected):
    env = {} if raw is None else {"X_SECONDS": raw}
    assert settings.positive_number("X_SECONDS", 60, env) == expected


@pytest.mark.parametrize("raw", ["abc", "0", "-1"])
def test_positive_number_refuses(raw):
    with pytest.raises(settings.ConfigError, match="X_SECONDS"):
        settings.positive_number("X_SECONDS", 60, {"X_SECONDS": raw})


def test_env_example_lists_every_variable():
    example = (ROOT / ".env.example").read_text()
    for name in ("REDIS_URL", "RQ_VERBOSE", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                 "TWILIO_FROM_NUMBER", "TWILIO_API_BASE_URL", "REMINDER_TIMEZONE",
                 "REMINDER_GRACE_SECONDS", "REMINDER_TICK_SECONDS", "UPTIME_INTERVAL_SECONDS",
                 "HOST", "PORT"):
        assert name in example, name


def test_course_scripts_read_redis_url_from_env_file(tmp_path):
    # A port nobody listens on: the script must try it, not its default localhost:6379.
    port = free_port()
    env_file = tmp_path / ".env"
    env_file.write_text(f"REDIS_URL=redis://127.0.0.1:{port}\n")
    script = Script("0_redis_client", None, ENV_FILE=str(env_file))
    try:
        line = script.read_line()
        assert line.startswith("Redis client not connected to the server:")
        assert f":{port}" in line
    finally:
        script.kill()


def test_env_example_redis_url_is_usable():
    lines = (ROOT / ".env.example").read_text().splitlines()
    url = next(line.partition("=")[2] for line in lines if line.startswith("REDIS_URL="))
    assert url == settings.DEFAULT_REDIS_URL
    urls.check_redis_url(url)
