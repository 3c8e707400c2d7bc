"""The /checks routes (checks_api.py), through Flask's test client on fakeredis."""

from __future__ import annotations

import pytest

from queuing import uptime, webapp
from queuing.constants import SMS_QUEUE
from queuing.jobs import json_queue
from tests.conftest import JANE, sign_up_and_in
from tests.local_http import Site

JANE_PHONE = "+14158675309"
GOOGLE = {"protocol": "https", "url": "google.com", "method": "get", "successCodes": [200, 201],
          "timeoutSeconds": 3}  # the seed's Postman body


def post(client, headers, body=GOOGLE):
    return client.post("/checks", json=body, headers=headers)


def added(client, headers, body=GOOGLE) -> dict:
    answer = post(client, headers, body)
    assert answer.status_code == 201, answer.data
    return answer.get_json()


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/checks"), ("get", "/checks"), ("get", "/checks?id=1"), ("put", "/checks"),
    ("delete", "/checks?id=1")])
@pytest.mark.parametrize("token", [None, "made-up", "expired"])
def test_every_route_answers_401_without_a_valid_token(client, user_headers, clock, method,
                                                       path, token):
    added(client, user_headers)
    if token == "expired":
        clock.advance(60 * 60 + 1)
        headers = user_headers
    else:
        headers = {} if token is None else {"token": token}
    answer = getattr(client, method)(path, json=GOOGLE | {"id": "1"}, headers=headers)
    assert (answer.status_code, answer.get_json()) == (401, {"status": "Missing or invalid token"})


def test_the_seeds_check_is_added_and_shown(client, user_headers):
    answer = post(client, user_headers)
    assert answer.status_code == 201
    assert answer.data == (b'{"id":"1","userPhone":"+14158675309","protocol":"https",'
                           b'"url":"google.com","method":"get","successCodes":[200,201],'
                           b'"timeoutSeconds":3,"state":null,"lastChecked":null}')
    one = client.get("/checks?id=1", headers=user_headers)
    assert one.status_code == 200
    assert one.get_json() == answer.get_json() | {"history": []}
    assert client.get("/checks", headers=user_headers).get_json() == [answer.get_json()]


def test_the_history_is_newest_first_with_times_in_ms(client, user_headers, fake_redis):
    check = uptime.get_check(fake_redis, added(client, user_headers)["id"])
    uptime.record(fake_redis, check, uptime.Outcome("up", 1_800_000_000.25, 200))
    uptime.record(fake_redis, check, uptime.Outcome("down", 1_800_000_060.5,
                                                    error="connection failed"))
    shown = client.get(f"/checks?id={check.id}", headers=user_headers).get_json()
    assert (shown["state"], shown["lastChecked"]) == ("down", 1_800_000_060_500)
    assert shown["history"] == [
        {"state": "down", "statusCode": None, "error": "connection failed",
         "checkedAt": 1_800_000_060_500},
        {"state": "up", "statusCode": 200, "error": None, "checkedAt": 1_800_000_000_250}]
    listed = client.get("/checks", headers=user_headers).get_json()
    assert [(c["state"], c["lastChecked"]) for c in listed] == [("down", 1_800_000_060_500)]
    assert "history" not in listed[0]


def test_an_edit_keeps_the_id_state_and_history(client, user_headers, fake_redis):
    check = uptime.get_check(fake_redis, added(client, user_headers)["id"])
    uptime.record(fake_redis, check, uptime.Outcome("up", 1_800_000_000.0, 200))
    answer = client.put("/checks", json={"id": check.id, "url": "example.org/health",
                                         "successCodes": [204], "timeoutSeconds": 0.5},
                        headers=user_headers)
    assert answer.status_code == 200, answer.data
    edited = answer.get_json()
    assert edited == {"id": check.id, "userPhone": JANE_PHONE, "protocol": "https",
                      "url": "example.org/health", "method": "get", "successCodes": [204],
                      "timeoutSeconds": 0.5, "state": "up", "lastChecked": 1_800_000_000_000,
                      "history": [{"state": "up", "statusCode": 200, "error": None,
                                   "checkedAt": 1_800_000_000_000}]}
    assert client.get(f"/checks?id={check.id}", headers=user_headers).get_json() == edited
    assert [c["id"] for c in client.get("/checks", headers=user_headers).get_json()] == ["1"]


def test_an_edit_may_give_a_full_url(client, user_headers):
    check = added(client, user_headers)
    answer = client.put("/checks", json={"id": check["id"], "url": "http://example.org:8080/x"},
                        headers=user_headers)
    assert (answer.get_json()["protocol"], answer.get_json()["url"]) == \
        ("http", "example.org:8080/x")


@pytest.mark.parametrize(("body", "reason"), [
    ({}, "Nothing to update"), ({"method": "patchy"}, "method must be one of"),
    ({"timeoutSeconds": "3"}, "timeoutSeconds must be a number"),
    ({"url": "user:secret@example.com"}, "url must not hold a user name or password"),
])
def test_a_bad_edit_is_a_400_and_changes_nothing(client, user_headers, body, reason):
    check = added(client, user_headers)
    answer = client.put("/checks", json={"id": check["id"]} | body, headers=user_headers)
    assert answer.status_code == 400
    assert reason in answer.get_json()["status"]
    assert client.get("/checks", headers=user_headers).get_json() == [check]


def test_a_deleted_check_is_gone(client, user_headers, fake_redis):
    check = added(client, user_headers)
    answer = client.delete(f"/checks?id={check['id']}", headers=user_headers)
    assert (answer.status_code, answer.data) == (204, b"")
    assert client.get(f"/checks?id={check['id']}", headers=user_headers).status_code == 404
    assert client.get("/checks", headers=user_headers).get_json() == []
    assert client.delete(f"/checks?id={check['id']}", headers=user_headers).status_code == 404
    assert fake_redis.keys("uptime:check:*") == []


def test_one_user_cannot_read_change_or_delete_anothers_check(client, user_headers,
                                                              other_user_headers, fake_redis):
    jane = added(client, user_headers)
    admins = uptime.add_check(fake_redis, uptime.validate("http", "example.net", phone=JANE_PHONE))
    for check_id in (jane["id"], admins.id, "99"):
        not_found = {"status": "Check not found"}
        for answer in (client.get(f"/checks?id={check_id}", headers=other_user_headers),
                       client.put("/checks", json={"id": check_id, "url": "evil.example"},
                                  headers=other_user_headers),
                       client.delete(f"/checks?id={check_id}", headers=other_user_headers)):
            assert (answer.status_code, answer.get_json()) == (404, not_found)
    assert client.get("/checks", headers=other_user_headers).get_json() == []
    assert client.get("/checks", headers=user_headers).get_json() == [jane]
    assert uptime.get_check(fake_redis, admins.id) == admins


@pytest.mark.parametrize("check_id", ["", "abc", "1:state", "01", "-1", "1" * 30])
def test_an_id_that_is_no_check_is_a_404(client, user_headers, fake_redis, check_id):
    check = uptime.get_check(fake_redis, added(client, user_headers)["id"])
    uptime.record(fake_redis, check, uptime.Outcome("up", 1_800_000_000.0, 200))
    for answer in (client.get(f"/checks?id={check_id}", headers=user_headers),
                   client.put("/checks", json={"id": check_id, "url": "x.example"},
                              headers=user_headers),
                   client.delete(f"/checks?id={check_id}", headers=user_headers)):
        assert answer.status_code == 404
    assert client.put("/checks", json={"id": 1, "url": "x.example"},
                      headers=user_headers).status_code == 404


def test_a_sixth_check_is_refused(client, user_headers, other_user_headers):
    for n in range(5):
        added(client, user_headers, GOOGLE | {"url": f"google.com/{n}"})
    answer = post(client, user_headers)
    assert (answer.status_code, answer.get_json()) == (
        400, {"status": "The user already has the maximum number of checks (5)"})
    assert len(client.get("/checks", headers=user_headers).get_json()) == 5
    added(client, other_user_headers)  # the limit is per user
    client.delete("/checks?id=1", headers=user_headers)
    added(client, user_headers)


def test_the_limit_is_the_apps_max_checks(fake_redis, fake_rq_redis, clock):
    app = webapp.create_app({"REDIS": fake_redis, "RQ_REDIS": fake_rq_redis, "CLOCK": clock,
                             "MAX_CHECKS": 2})
    client = app.test_client()
    headers = sign_up_and_in(client, JANE)
    added(client, headers)
    added(client, headers)
    assert post(client, headers).get_json() == {
        "status": "The user already has the maximum number of checks (2)"}


@pytest.mark.parametrize(("body", "reason"), [
    (GOOGLE | {"url": "https://user:secret@google.com"},
     "url must not hold a user name or password"),
    (GOOGLE | {"url": "google.com:99999"}, "url's port must be a number from 1 to 65535"),
    (GOOGLE | {"protocol": "ftp"}, "protocol must be http or https"),
    (GOOGLE | {"successCodes": "200"}, "successCodes must be a list of whole numbers"),
    (GOOGLE | {"successCodes": [True]}, "successCodes must be a list of whole numbers"),
    (GOOGLE | {"successCodes": [200.5]}, "successCodes must be a list of whole numbers"),
    (GOOGLE | {"timeoutSeconds": True}, "timeoutSeconds must be a number"),
    (GOOGLE | {"successCodes": [700]}, "successCodes must be HTTP status codes"),
    (GOOGLE | {"timeoutSeconds": 61}, "at most 60"),
    (GOOGLE | {"url": 5}, "url must be text"),
    ({"protocol": "https", "url": "google.com"}, "Give protocol, url, method"),
    ([GOOGLE], "The body must be a JSON object"),
])
def test_a_bad_check_is_a_400_saying_why(client, user_headers, body, reason):
    answer = post(client, user_headers, body)
    assert answer.status_code == 400
    assert reason in answer.get_json()["status"]
    assert "secret" not in answer.get_data(as_text=True)
    assert client.get("/checks", headers=user_headers).get_json() == []


def test_the_alert_goes_to_the_owners_phone(app, client, user_headers, other_user_headers,
                                            fake_redis, fake_rq_redis):
    app.config["ALLOW_PRIVATE_CHECKS"] = True  # the site is on 127.0.0.1
    site = Site().start()
    try:
        added(client, user_headers, GOOGLE | {"protocol": "http",
                                              "url": site.url.removeprefix("http://")})
        uptime.run_round(fake_redis, fake_rq_redis, lambda _: None)
        site.stop()
        uptime.run_round(fake_redis, fake_rq_redis, lambda _: None)
    finally:
        site.stop()
    sms = [job.args for job in json_queue(SMS_QUEUE, fake_rq_redis).get_jobs()]
    assert sms == [[JANE_PHONE, f"Alert: your check for GET {site.url} is now down"]]


def test_a_deleted_user_leaves_no_checks(client, user_headers, other_user_headers, fake_redis):
    for n in range(3):
        added(client, user_headers, GOOGLE | {"url": f"google.com/{n}"})
    johns = added(client, other_user_headers)
    assert client.delete("/users", headers=user_headers).status_code == 204
    assert [c.id for c in uptime.all_checks(fake_redis)] == [johns["id"]]
    assert fake_redis.keys(f"uptime:user:{JANE_PHONE}*") == []
