"""Configuration: .env is read when present and never overrides the environment."""

from __future__ import annotations

import re

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


def example_settings() -> dict[str, str]:
    """``.env.example``'s settings, set or commented out: name -> the value shown."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"#? ?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            found[match[1]] = match[2]
    return found


def test_env_example_lists_every_setting_with_its_default():
    assert example_settings() == settings.DEFAULTS


# Modules that still read os.environ themselves; each should call settings.py instead.
# local_redis is the tests' and tools' throwaway-server helper, not a setting of the project.
NOT_YET_MOVED: set[str] = set()
READS_ENVIRONMENT = re.compile(r"os\.environ|os\.getenv|\bgetenv\(")


def test_only_settings_reads_the_environment():
    sources = [*ROOT.glob("queuing/*.py"), *ROOT.glob("*.py")]
    readers = {str(path.relative_to(ROOT)) for path in sources
               if READS_ENVIRONMENT.search(path.read_text())}
    allowed = {"queuing/settings.py", "queuing/local_redis.py", "tour.py"}
    assert readers - allowed - NOT_YET_MOVED == set()


@pytest.mark.parametrize(("raw", "expected"), [(None, 1245), ("", 1245), ("5000", 5000)])
def test_port(raw, expected):
    env = {} if raw is None else {"PORT": raw}
    assert settings.port(env) == expected


@pytest.mark.parametrize("raw", ["abc", "0", "65536", "-1"])
def test_port_refuses(raw):
    with pytest.raises(settings.ConfigError, match="PORT"):
        settings.port({"PORT": raw})


@pytest.mark.parametrize(("raw", "expected"), [
    (None, False), ("", False), ("0", False), ("no", False), ("off", False), ("1", True),
    ("yes", True)])
def test_rq_verbose(raw, expected):
    assert settings.rq_verbose({} if raw is None else {"RQ_VERBOSE": raw}) is expected


def test_reminder_tick_seconds_unset_is_every_minute():
    assert settings.reminder_tick_seconds({}) is None
    assert settings.reminder_tick_seconds({"REMINDER_TICK_SECONDS": "5"}) == 5


def test_extra_job_functions():
    assert settings.extra_job_functions({"EXTRA_JOB_FUNCTIONS": " a.b, ,c.d "}) == {"a.b", "c.d"}


def test_twilio_from_number_falls_back_on_the_course_name():
    twilio = settings.twilio({"TWILIO_REMINDER_NUMBER": " +14155550100 "})
    assert (twilio.from_number, twilio.from_number_name) == (
        "+14155550100", "TWILIO_REMINDER_NUMBER")
    twilio = settings.twilio({"TWILIO_FROM_NUMBER": "+1", "TWILIO_REMINDER_NUMBER": "+2"})
    assert (twilio.from_number, twilio.from_number_name) == ("+1", "TWILIO_FROM_NUMBER")


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
