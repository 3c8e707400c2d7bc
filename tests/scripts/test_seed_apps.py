"""The two seeds' apps as their users meet them: ``honcho start`` runs the Procfile, and
everything goes through HTTP, as with curl or Postman.

Seed 000: Jane signs up, signs in, adds checks (a sixth is refused); her site goes down
and up; exactly one SMS per change reaches her phone, none reaches John's. Seed 001: a
reminder created over HTTP is sent once with two schedulers running, and a message sent
now is queued (202) and sent by the worker. No password, token or Twilio secret appears
in any output or in Redis. Every address is local: a site, a Twilio stand-in, Redis.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest
import redis

from queuing.local_redis import free_port
from tests.local_http import Site, StubTwilio
from tests.processes import Honcho, script_env, wait_until

pytestmark = pytest.mark.redis_server

SID = "AC" + "e" * 32
TWILIO_TOKEN = "twilio-secret-never-shown"
JANE = {"firstName": "Jane", "lastName": "Dreamer", "phone": "4158675309",
        "password": "jane's password", "tosAgreement": True}
JOHN = {"firstName": "John", "lastName": "Doe", "phone": "415-351-8780",
        "password": "john's password", "tosAgreement": True}


class Api:
    """JSON over HTTP to the web process, as curl sends it."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, body: object = None,
             token: str | None = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("token", token)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, text = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read()
        return status, json.loads(text) if text else None

    def up(self) -> bool:
        """Whether the status page (HTML) answers yet."""
        try:
            with urllib.request.urlopen(self.base + "/status", timeout=5) as answer:
                return answer.status == 200
        except OSError:
            return False

    def sign_up_and_in(self, user: dict) -> str:
        assert self.call("POST", "/users", user)[0] == 201
        status, token = self.call("POST", "/tokens", {"phone": user["phone"],
                                                      "password": user["password"]})
        assert status == 201, token
        return token["id"]


def check(url: str) -> dict:
    protocol, rest = url.split("://", 1)
    return {"protocol": protocol, "url": rest, "method": "get", "successCodes": [200, 201],
            "timeoutSeconds": 1}


def redis_text(redis_url: str) -> str:
    """Every key and value in Redis, as text, to look for secrets in."""
    client = redis.Redis.from_url(redis_url)
    parts = []
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key))
        elif kind == b"hash":
            parts += client.hgetall(key).values()
        elif kind in (b"list",):
            parts += client.lrange(key, 0, -1)
        elif kind in (b"set",):
            parts += client.smembers(key)
        elif kind == b"zset":
            parts += client.zrange(key, 0, -1)
        parts.append(key)
    client.close()
    return "\n".join(part.decode("utf-8", "replace") for part in parts)


def test_both_seeds_walked_through_over_http_under_honcho(redis_url, tmp_path):
    jane_site, other_site = Site().start(), Site().start()
    stub = StubTwilio()
    port = free_port()
    env = script_env(redis_url, TWILIO_ACCOUNT_SID=SID, TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
                     TWILIO_FROM_NUMBER="+16674013836", TWILIO_API_BASE_URL=stub.url,
                     UPTIME_INTERVAL_SECONDS="1", REMINDER_TICK_SECONDS="1",
                     REMINDER_TIMEZONE="UTC", HOST="127.0.0.1",
                     UPTIME_ALLOW_PRIVATE="on")  # the sites are on 127.0.0.1
    honcho = Honcho(["-p", str(port), "-c", "scheduler=2", "web", "worker", "clock",
                     "scheduler", "uptime"], env, tmp_path / "empty.env")
    output = honcho.lines
    api = Api(f"http://127.0.0.1:{port}")
    secrets_shown = [TWILIO_TOKEN, JANE["password"], JOHN["password"]]
    try:
        wait_until(api.up, f"the web process answering; {output[-20:]}", timeout=60)
        jane, john = api.sign_up_and_in(JANE), api.sign_up_and_in(JOHN)
        secrets_shown += [jane, john]

        # Seed 000: five checks, the first on Jane's site; a sixth is refused.
        status, watched = api.call("POST", "/checks", check(jane_site.url), jane)
        assert status == 201, watched
        for path in ("a", "b", "c", "d"):
            assert api.call("POST", "/checks", check(f"{other_site.url}/{path}"), jane)[0] == 201
        status, refused = api.call("POST", "/checks", check(other_site.url), jane)
        assert (status, refused) == (400, {
            "status": "The user already has the maximum number of checks (5)"})
        assert api.call("POST", "/checks", check(other_site.url), john)[0] == 201
        assert len(api.call("GET", "/checks", token=jane)[1]) == 5
        assert api.call("GET", f"/checks?id={watched['id']}", token=john)[0] == 404

        def state(expected: str) -> bool:
            return api.call("GET", f"/checks?id={watched['id']}", token=jane)[1][
                "state"] == expected

        wait_until(lambda: state("up"), f"Jane's check up; {output[-20:]}")
        jane_site.stop()
        down = f"Alert: your check for GET {jane_site.url} is now down"
        wait_until(lambda: down in stub.bodies(), f"the down alert; {output[-20:]}")
        jane_site.start()
        up = f"Alert: your check for GET {jane_site.url} is now up"
        wait_until(lambda: up in stub.bodies(), f"the up alert; {output[-20:]}")
        history = api.call("GET", f"/checks?id={watched['id']}", token=jane)[1]["history"]
        states = [entry["state"] for entry in history]  # newest first
        assert states[0] == "up" and "down" in states

        # Seed 001: a reminder to John, due the minute it was made; a message now to Jane.
        status, reminder = api.call("POST", "/reminders", {
            "recipients": [JOHN["phone"]], "message": "Take your medicine",
            "times": ["00:00"], "timezone": "UTC"}, jane)
        assert status == 201, reminder
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        key = f"reminders:reminder:{reminder['id']}"
        made = float(client.hget(key, "created_at"))
        client.hset(key, "times", datetime.fromtimestamp(made, timezone.utc).strftime("%H:%M"))
        client.close()
        wait_until(lambda: "Take your medicine" in stub.bodies(), f"the reminder; {output[-20:]}")
        status, queued = api.call("POST", "/messages", {"to": JANE["phone"],
                                                        "message": "Hello now"}, jane)
        assert status == 202, queued
        wait_until(lambda: "Hello now" in stub.bodies(), f"the message; {output[-20:]}")
        wait_until(lambda: api.call("GET", f"/messages/{queued['jobId']}", token=jane)[1]
                   ["status"] == "finished", "the message's job finished")
        assert api.call("GET", f"/messages/{queued['jobId']}", token=john)[0] == 404

        # rq info and rq-dashboard name the workers after their Procfile process.
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        names = {key.removeprefix("rq:worker:").rsplit(".", 1)[0]
                 for key in client.smembers("rq:workers")}
        client.close()
        assert names == {"worker.1", "clock.1"}, names

        # More rounds and ticks: nothing is sent twice.
        rounds = honcho.count("is up", jane_site.url)
        wait_until(lambda: honcho.count("is up", jane_site.url) >= rounds + 3,
                   "three more rounds")
    finally:
        honcho.stop()
        stub.close()
        jane_site.stop()
        other_site.stop()
    alerts = [post["form"] for post in stub.posts if post["form"]["Body"].startswith("Alert")]
    assert alerts == [{"To": "+14158675309", "From": "+16674013836", "Body": down},
                      {"To": "+14158675309", "From": "+16674013836", "Body": up}]
    assert stub.bodies().count("Take your medicine") == 1
    assert [p["form"]["To"] for p in stub.posts if p["form"]["Body"] == "Take your medicine"
            ] == ["+14153518780"]
    assert stub.bodies().count("Hello now") == 1
    text = "".join(output)
    stored = redis_text(redis_url)
    for secret in secrets_shown:
        assert secret not in text
        assert secret not in stored
    assert "Traceback" not in text
