"""The status page (status_page.py) through Flask's test client on fakeredis."""

from __future__ import annotations

import pytest

from queuing import status_page, uptime
from queuing.uptime import Outcome
from tests.conftest import JANE, JOHN

JANE_PHONE, JOHN_PHONE = "+14158675309", "+14153518780"


def sign_in(client, phone: str = JANE["phone"], password: str = JANE["password"], **kwargs):
    return client.post("/status/login", data={"phone": phone, "password": password},
                       **kwargs)


def add_check(fake_redis, url: str, owner: str = JANE_PHONE) -> uptime.Check:
    return uptime.add_check(fake_redis, uptime.validate("https", url, phone=owner,
                                                        owner=owner))


def set_cookie_header(answer) -> str:
    [header] = answer.headers.getlist("Set-Cookie")
    return header


def test_signed_out_the_page_is_a_sign_in_form(client):
    answer = client.get("/status")
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    page = answer.text
    assert '<form class="login" method="post" action="/status/login">' in page
    assert '<input name="phone" type="tel"' in page
    assert '<input name="password" type="password"' in page
    assert "Set-Cookie" not in answer.headers
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


def test_the_stylesheet_is_served(client):
    answer = client.get("/status/static/status.css")
    assert answer.status_code == 200 and answer.mimetype == "text/css"


def test_signing_in_sets_an_http_only_strict_cookie_for_the_tokens_life(client, user_headers,
                                                                       fake_redis):
    answer = sign_in(client)
    assert answer.status_code == 303 and answer.headers["Location"] == "/status"
    header = set_cookie_header(answer)
    token = client.get_cookie("token", path="/status").value
    assert header.startswith(f"token={token};")
    attributes = {part.strip() for part in header.split(";")[1:]}
    assert {"HttpOnly", "SameSite=Strict", "Path=/status", "Max-Age=3600"} <= attributes
    assert "Secure" not in attributes  # plain http: a Secure cookie would never come back
    assert all(token not in value for value in redis_values(fake_redis))


def test_over_https_the_cookie_is_secure(client, user_headers):
    answer = sign_in(client, base_url="https://localhost")
    assert "Secure" in {part.strip() for part in set_cookie_header(answer).split(";")}


def test_signing_in_takes_the_phone_as_people_type_it(client, user_headers):
    assert sign_in(client, phone="1-415-867-5309").status_code == 303


@pytest.mark.parametrize(("phone", "password"), [
    (JANE["phone"], "wrong-password"), (JOHN["phone"], JANE["password"]),
    ("nonsense", JANE["password"]), ("", ""),
])
def test_a_wrong_sign_in_is_a_401_that_does_not_say_which_part_was_wrong(
        client, user_headers, phone, password):
    answer = sign_in(client, phone, password)
    assert answer.status_code == 401 and answer.mimetype == "text/html"
    assert f'<p class="error" role="alert">{status_page.WRONG_LOGIN}</p>' in answer.text
    assert "Set-Cookie" not in answer.headers
    assert answer.text.count('class="error"') == 1
    # The password is never sent back: its field comes back empty.
    assert ('<input name="password" type="password" autocomplete="current-password" required>'
            in answer.text)
    assert "wrong-password" not in answer.text


def test_the_phone_typed_comes_back_escaped(client):
    answer = sign_in(client, phone='"><script>alert(1)</script>')
    assert answer.status_code == 401 and "<script>" not in answer.text
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in answer.text


def test_the_page_shows_the_users_own_checks_with_state_and_history(
        client, user_headers, other_user_headers, fake_redis, clock):
    site = add_check(fake_redis, "jane.example/health")
    add_check(fake_redis, "jane.example/never-checked")
    add_check(fake_redis, "john.example/secret-path", owner=JOHN_PHONE)
    uptime.record(fake_redis, site, Outcome("down", clock.now, error="connection failed"))
    uptime.record(fake_redis, site, Outcome("up", clock.now + 60, status_code=200))
    sign_in(client)
    answer = client.get("/status")
    assert answer.status_code == 200
    page = answer.text
    assert "Jane Dreamer" in page and "john.example" not in page
    assert '<span class="url">https://jane.example/health</span>' in page
    assert '<p class="state state-up">up</p>' in page
    assert "Last checked: 2027-01-15 08:01:00 UTC" in page  # clock.now + 60
    history = page.index("<td>2027-01-15 08:01:00 UTC</td><td>up</td><td>200</td>")
    assert history < page.index(
        "<td>2027-01-15 08:00:00 UTC</td><td>down</td><td>connection failed</td>")
    assert '<span class="url">https://jane.example/never-checked</span>' in page
    assert '<p class="state state-unknown">not checked yet</p>' in page
    assert "Last checked: never" in page
    assert '<meta http-equiv="refresh" content="60">' in page
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_user_without_checks_is_told_how_to_add_one(client, user_headers):
    sign_in(client)
    assert "You have no checks yet" in client.get("/status").text


def test_a_hostile_url_is_shown_escaped(client, user_headers, fake_redis):
    add_check(fake_redis, 'x.example/"><script>alert(1)</script>')
    sign_in(client)
    page = client.get("/status").text
    assert "<script>" not in page
    assert "x.example/&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_page_shows_no_token_and_no_password(client, user_headers):
    sign_in(client)
    page = client.get("/status").text
    assert client.get_cookie("token", path="/status").value not in page
    assert user_headers["token"] not in page
    assert 'type="password"' not in page


def test_an_expired_token_shows_the_form_again(client, user_headers, clock):
    sign_in(client)
    clock.advance(3600 + 1)
    answer = client.get("/status")
    assert '<form class="login"' in answer.text
    assert set_cookie_header(answer).startswith("token=;")  # the browser forgets it too


def test_signing_out_forgets_the_token_and_the_cookie(client, user_headers):
    sign_in(client)
    token = client.get_cookie("token", path="/status").value
    answer = client.post("/status/logout")
    assert answer.status_code == 303 and answer.headers["Location"] == "/status"
    assert set_cookie_header(answer).startswith("token=;")
    assert client.get_cookie("token", path="/status") is None
    client.set_cookie("token", token, path="/status")  # a copy of the cookie: no longer valid
    assert '<form class="login"' in client.get("/status").text
    assert client.get("/users", headers={"token": token}).status_code == 401
    assert client.get("/users", headers=user_headers).status_code == 200  # other sessions stay


@pytest.mark.parametrize("path", ["/status/login", "/status/logout"])
@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:8080"])
def test_a_post_from_another_sites_page_is_refused(client, user_headers, path, origin):
    answer = client.post(path, data={"phone": JANE["phone"], "password": JANE["password"]},
                         headers={"Origin": origin})
    assert answer.status_code == 403 and "Set-Cookie" not in answer.headers


def test_a_post_from_the_page_itself_is_taken(client, user_headers):
    assert sign_in(client, headers={"Origin": "http://localhost"}).status_code == 303


def test_signing_out_when_signed_out_is_harmless(client):
    assert client.post("/status/logout").status_code == 303


def redis_values(connection) -> list[str]:
    """Every key and value in Redis, as text."""
    values: list[str] = []
    for key in connection.scan_iter():
        kind = connection.type(key)
        values.append(key)
        if kind == "string":
            values.append(connection.get(key))
        elif kind == "hash":
            values.extend(f"{k}={v}" for k, v in connection.hgetall(key).items())
        elif kind in ("set", "list"):
            values.extend(connection.smembers(key) if kind == "set"
                          else connection.lrange(key, 0, -1))
    return values
