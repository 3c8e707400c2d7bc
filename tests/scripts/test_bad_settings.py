"""Unusable settings, against a real redis-server: one line on stderr naming the variable,
exit status 2, and nothing that may hold a secret (the URL, its password) in the output."""

from __future__ import annotations

import subprocess
import sys

import pytest

from queuing.local_redis import RedisServer, RedisServerNotFound
from tests.processes import ROOT, Script, run_script, script_env, skip_unless_ci

SECRET = "s3cret-pw"

# The scripts that connect first thing, as a learner starts them.
SCRIPTS = ["1_redis_op", "2_redis_op_async", "5_subscriber", "7_job_creator",
           "7_job_processor"]


@pytest.fixture(scope="module")
def password_server():
    """A throwaway redis-server with a password, as a hosted Redis has."""
    try:
        server = RedisServer(password=SECRET).start()
    except (RedisServerNotFound, RuntimeError) as error:
        skip_unless_ci(str(error))
    yield server
    server.close()


def assert_one_line_exit_2(result: subprocess.CompletedProcess, says: str, port: int) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith(says), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for secret in (SECRET, str(port), "redis://"):
        assert secret not in result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.job_workers
def test_a_database_the_server_does_not_have(script, password_server):
    url = f"redis://:{SECRET}@127.0.0.1:{password_server.port}/99"
    result = run_script(script, url)
    assert_one_line_exit_2(result, "REDIS_URL names a database the Redis server does not have",
                           password_server.port)


@pytest.mark.parametrize(("query", "says"), [
    ("/notadb", "REDIS_URL is not a usable Redis URL: the database"),
    ("?client_name=a%20b", "REDIS_URL is not a usable Redis URL: client_name"),
    ("?ssl_cert_reqs=bogus", "REDIS_URL is not a usable Redis URL: ssl_cert_reqs"),
    ("?db=1&socket_timeout=soon", "REDIS_URL is not a usable Redis URL: socket_timeout"),
])
@pytest.mark.parametrize("script", ["1_redis_op", "7_job_processor"])
@pytest.mark.job_workers
def test_unusable_url_options(script, query, says, password_server):
    url = f"redis://:{SECRET}@127.0.0.1:{password_server.port}{query}"
    if "ssl_" in query:
        url = url.replace("redis://", "rediss://")
    assert_one_line_exit_2(run_script(script, url), says, password_server.port)


def test_an_empty_redis_url_is_refused_before_any_connection():
    # The main returns 99 if the client was made: it never sends a command either way.
    code = "import common; common.run(lambda: (common.connect(), 99)[1])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=script_env("  "),
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (
        2, "", "REDIS_URL is empty: unset it to use the default redis://localhost:6379, "
               "or set it to a Redis URL\n")


@pytest.mark.job_workers
def test_a_wrong_password_is_waited_out_by_a_processor(password_server):
    # The password may be fixed on the server's side: the processor keeps trying.
    script = Script("7_job_processor", f"redis://:wrong@127.0.0.1:{password_server.port}")
    try:
        for _ in range(2):
            line = script.read_line(timeout=30)
            assert line.startswith("Redis client not connected to the server: "), line
            assert "wrong" not in line and SECRET not in line
        assert script.interrupt() != 2  # Ctrl-C's own status: not a bad setting
        assert "Traceback" not in script.stderr
    finally:
        script.kill()


@pytest.mark.parametrize(("script", "args", "setting", "says"), [
    ("9_stock", (), {"PORT": "http"}, "PORT must be a port number (1-65535), not 'http'"),
    ("100_seat", (), {"PORT": "70000"}, "PORT must be a port number (1-65535), not '70000'"),
    ("102_uptime_worker", ("--once",), {"UPTIME_INTERVAL_SECONDS": "soon"},
     "UPTIME_INTERVAL_SECONDS must be a number of seconds, not 'soon'"),
    ("103_reminders", ("list",), {"REMINDER_GRACE_SECONDS": "0"},
     "REMINDER_GRACE_SECONDS must be more than 0, not '0'"),
    ("104_scheduler", (), {"REMINDER_TICK_SECONDS": "-5"},
     "REMINDER_TICK_SECONDS must be more than 0, not '-5'"),
    ("104_scheduler", (), {"REMINDER_TIMEZONE": "Mars/Olympus"},
     "REMINDER_TIMEZONE is not a known time zone: 'Mars/Olympus'"),
])
def test_a_bad_setting_stops_a_script_at_start_with_one_line(script, args, setting, says):
    # Port 1 never answers: every script must stop on the setting before it needs Redis.
    result = run_script(script, "redis://127.0.0.1:1", *args, **setting)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", says + "\n")
