"""The /users and /tokens routes (users_api.py), through Flask's test client on fakeredis."""

import pytest

from tests.conftest import JANE, JOHN

SIGNED_IN_ROUTES = [("get", "/users"), ("put", "/users"), ("delete", "/users"),
                    ("get", "/checks"), ("post", "/checks"), ("put", "/checks"),
                    ("delete", "/checks?id=1"), ("get", "/reminders"), ("post", "/reminders"),
                    ("post", "/messages")]


def test_the_seeds_walkthrough_sign_up_then_sign_in(client):
    answer = client.post("/users", json=JANE)
    assert answer.status_code == 201
    assert answer.data == (b'{"firstName":"Jane","lastName":"Dreamer","phone":"+14158675309",'
                           b'"tosAgreement":true}')
    token = client.post("/tokens", json={"phone": "4158675309", "password": "password"})
    assert token.status_code == 201
    body = token.get_json()
    assert list(body) == ["phone", "id", "expires"] and body["phone"] == "+14158675309"


@pytest.mark.parametrize(("method", "path"), SIGNED_IN_ROUTES)
@pytest.mark.parametrize("token", [None, "", "made-up", "x" * 500])
def test_every_signed_in_route_answers_401_without_a_valid_token(client, method, path, token):
    headers = {} if token is None else {"token": token}
    answer = getattr(client, method)(path, json={}, headers=headers)
    assert answer.status_code == 401
    assert answer.get_json() == {"status": "Missing or invalid token"}


@pytest.mark.parametrize(("change", "reason"), [
    ({"tosAgreement": False}, "tosAgreement"), ({"tosAgreement": "yes"}, "tosAgreement"),
    ({"phone": "+999999999999999"}, "Invalid phone number"), ({"firstName": " "}, "firstName"),
    ({"lastName": None}, "lastName"), ({"password": "short"}, "password"),
    ({"password": 12345678}, "password"), ({"firstName": "x" * 101}, "firstName"),
])
def test_a_bad_sign_up_is_a_400_saying_why(client, change, reason):
    answer = client.post("/users", json=JANE | change)
    assert answer.status_code == 400 and reason in answer.get_json()["status"]


@pytest.mark.parametrize("body", [b"", b"[]", b"not json", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_a_400(client, body):
    answer = client.post("/users", data=body, content_type="application/json")
    assert answer.status_code == 400
    assert answer.get_json() == {"status": "The body must be a JSON object"}


def test_a_phone_number_signs_up_once_in_any_form(client):
    assert client.post("/users", json=JANE).status_code == 201
    again = client.post("/users", json=JANE | {"phone": "1-415-867-5309"})
    assert again.status_code == 409


@pytest.mark.parametrize("login", [{"phone": "4158675309", "password": "wrong-password"},
                                   {"phone": "4153518780", "password": "password"},
                                   {"phone": "nonsense", "password": "password"}, {}])
def test_a_wrong_sign_in_does_not_say_which_part_was_wrong(client, user_headers, login):
    answer = client.post("/tokens", json=login)
    assert answer.status_code == 401
    assert answer.get_json() == {"status": "The phone number or the password is wrong"}


def test_a_user_reads_and_changes_only_their_own_account(client, user_headers,
                                                          other_user_headers):
    mine = client.get("/users?phone=4158675309", headers=user_headers)
    assert mine.status_code == 200 and mine.get_json()["firstName"] == "Jane"
    for method in ("get", "put", "delete"):
        answer = getattr(client, method)("/users?phone=4153518780", headers=user_headers,
                                         json={"firstName": "Mallory"})
        assert answer.status_code == 404
    john = client.get("/users", headers=other_user_headers).get_json()
    assert john["firstName"] == JOHN["firstName"]


def test_put_users_changes_names_and_password_not_the_phone(client, user_headers):
    answer = client.put("/users", headers=user_headers,
                        json={"lastName": "Doer", "password": "new password"})
    assert answer.status_code == 200 and answer.get_json()["lastName"] == "Doer"
    assert client.post("/tokens", json={"phone": JANE["phone"], "password": "password"}
                       ).status_code == 401
    assert client.post("/tokens", json={"phone": JANE["phone"], "password": "new password"}
                       ).status_code == 201
    moved = client.put("/users", headers=user_headers, json={"phone": "4153518780"})
    assert moved.status_code == 400
    assert client.put("/users", headers=user_headers, json={}).status_code == 400


def test_a_token_expires_after_an_hour_and_put_extends_it(client, clock, user_headers):
    token_id = user_headers["token"]
    clock.advance(3000)
    extended = client.put("/tokens", json={"id": token_id, "extend": True})
    assert extended.status_code == 200
    clock.advance(3599)  # 6599 s after sign-in: valid, thanks to the extension
    assert client.get("/users", headers=user_headers).status_code == 200
    clock.advance(2)
    assert client.get("/users", headers=user_headers).status_code == 401
    late = client.put("/tokens", json={"id": token_id, "extend": True})
    assert late.status_code == 400 and "expired" in late.get_json()["status"]


def test_get_and_delete_tokens_sign_out(client, user_headers):
    token_id = user_headers["token"]
    shown = client.get(f"/tokens?id={token_id}")
    assert shown.status_code == 200 and shown.get_json()["phone"] == "+14158675309"
    assert client.delete(f"/tokens?id={token_id}").status_code == 204
    assert client.get("/users", headers=user_headers).status_code == 401
    assert client.get(f"/tokens?id={token_id}").status_code == 404


def test_deleting_a_user_deletes_their_checks_and_signs_them_out(client, fake_redis,
                                                                 user_headers,
                                                                 other_user_headers):
    check = {"protocol": "https", "url": "example.com", "method": "get",
             "successCodes": [200, 201], "timeoutSeconds": 3}
    assert client.post("/checks", json=check, headers=user_headers).status_code == 201
    assert client.post("/checks", json=check, headers=other_user_headers).status_code == 201
    assert client.delete("/users", headers=user_headers).status_code == 204
    assert client.get("/users", headers=user_headers).status_code == 401
    left = client.get("/checks", headers=other_user_headers).get_json()
    assert len(left) == 1 and left[0]["userPhone"] == "+14153518780"
    assert not any("4158675309" in key for key in fake_redis.keys("*"))


def test_no_password_or_token_is_in_redis_or_in_an_answer(client, fake_redis, user_headers):
    token_id = user_headers["token"]
    texts = list(fake_redis.keys("*"))
    for key in fake_redis.keys("*"):
        texts += {"hash": lambda k: list(fake_redis.hgetall(k).values()),
                  "set": lambda k: list(fake_redis.smembers(k))}[fake_redis.type(key)](key)
    assert texts and not any(JANE["password"] in text or token_id in text for text in texts)
    shown = client.get("/users", headers=user_headers).data.decode()
    assert JANE["password"] not in shown and "hash" not in shown
