"""docs/web-app.md's curl examples, run as written, in order, in one shell, against the
Procfile's web process (granian) on a throwaway Redis: each works and prints what the
page says it does."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.processes import ROOT, script_env, skip_unless_ci
from tests.servers import Server

pytestmark = pytest.mark.redis_server

DOC = ROOT / "docs" / "web-app.md"
DOC_APP = "http://localhost:5000"


def shell_blocks(path: Path) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", path.read_text(), flags=re.DOTALL)


def test_the_web_app_page_shows_every_route(redis_url):
    text = DOC.read_text()
    for route in ("POST $APP/users", "PUT $APP/users", "POST $APP/tokens", "PUT $APP/tokens",
                  "$APP/tokens?id=", "POST $APP/checks", "PUT $APP/checks", "$APP/checks?id=",
                  "POST $APP/reminders", "DELETE $APP/reminders/", "POST $APP/messages",
                  "$APP/messages/$JOB", "DELETE \"$APP/tokens?id=", "DELETE $APP/users",
                  "DELETE \"$APP/checks?id=", "localhost:5000/status"):
        assert route in text, route


def test_every_curl_example_works_as_written(redis_url):
    if shutil.which("curl") is None:
        skip_unless_ci("curl is not installed")
    web = Server.granian("queuing.webapp:create_app", redis_url, workers=1)
    try:
        script = "set -eu\n" + "\n".join(shell_blocks(DOC))
        script = script.replace(DOC_APP, f"http://127.0.0.1:{web.port}")
        done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=script_env(redis_url),
                              capture_output=True, text=True, timeout=60)
    finally:
        web.kill()
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in (
        '{"firstName":"Jane","lastName":"Dreamer","phone":"+14158675309","tosAgreement":true}',
        '{"firstName":"Jane","lastName":"Doer","phone":"+14158675309","tosAgreement":true}',
        '"userPhone":"+14158675309","protocol":"https","url":"google.com"',
        '"successCodes":[200,201,301]',
        '{"status":"url must not hold a user name or password"}',
        '"recipients":["+14153518780"],',
        '"timezone":"America/New_York"',
        "HTTP/1.1 202", "location: /messages/",
        '"status":"queued"',
    ):
        assert expected in out, (expected, out)
    assert "port" in out.split("user name or password")[1]  # the port is refused too
    assert re.search(r"^204$", out, flags=re.MULTILINE)  # DELETE /reminders/1 (-w)
    assert "Traceback" not in out + done.stderr
