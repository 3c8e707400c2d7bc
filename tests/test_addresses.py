"""A user's uptime check reaches only public addresses (addresses.py, uptime.py)."""

import socket

import pytest

from queuing import addresses, uptime
from tests.conftest import sign_up_and_in

PRIVATE = ["127.0.0.1", "localhost", "10.1.2.3", "172.16.0.1", "192.168.1.1",
           "169.254.169.254", "0.0.0.0", "::1", "::ffff:127.0.0.1", "fd00::1", "100.64.0.1"]


@pytest.mark.parametrize("host", PRIVATE)
def test_private_loopback_and_link_local_addresses_are_not_public(host):
    assert addresses.non_public_address(host) is not None


def test_a_name_is_judged_by_every_address_it_resolves_to(monkeypatch):
    answers = {"public.example": ["93.184.215.14"],
               "rebound.example": ["93.184.215.14", "127.0.0.1"]}

    def resolve(host, port, type=0):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert addresses.non_public_address("public.example") is None
    assert addresses.non_public_address("rebound.example") == "127.0.0.1"


def test_a_name_that_does_not_resolve_is_left_to_the_check(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    assert addresses.non_public_address("nowhere.example") is None


@pytest.mark.parametrize("url", ["127.0.0.1:6379", "localhost/admin", "169.254.169.254/latest",
                                 "[::1]:8080", "10.0.0.5"])
def test_the_api_refuses_a_check_of_a_private_address(client, user_headers, url):
    answer = client.post("/checks", headers=user_headers, json={
        "protocol": "http", "url": url, "method": "get", "successCodes": [200],
        "timeoutSeconds": 1})
    assert answer.status_code == 400
    assert answer.get_json()["status"].startswith("url must reach a public address")


def test_uptime_allow_private_lets_a_private_deployment_watch_its_network(
        fake_redis, fake_rq_redis, clock):
    from queuing import webapp

    app = webapp.create_app({"REDIS": fake_redis, "RQ_REDIS": fake_rq_redis, "CLOCK": clock,
                             "ALLOW_PRIVATE_CHECKS": True})
    client = app.test_client()
    headers = sign_up_and_in(client, {"firstName": "A", "lastName": "B", "phone": "4158675309",
                                      "password": "password", "tosAgreement": True})
    answer = client.post("/checks", headers=headers, json={
        "protocol": "http", "url": "127.0.0.1:8000/health", "method": "get",
        "successCodes": [200], "timeoutSeconds": 1})
    assert answer.status_code == 201


def test_a_users_check_that_comes_to_resolve_privately_is_down_without_a_request(monkeypatch):
    requests_made = []

    def request(*args, **kwargs):
        requests_made.append(args)
        raise uptime.requests.ConnectionError("refused")

    monkeypatch.setattr(uptime.requests, "request", request)
    check = uptime.validate("http", "127.0.0.1:6379", phone="4158675309", owner="+14158675309")
    outcome = uptime.run_check(check, allow_private=False)
    assert (outcome.state, outcome.error) == ("down", "not a public address")
    assert requests_made == []
    admins = uptime.validate("http", "127.0.0.1:1", phone="4158675309")  # no owner
    assert uptime.run_check(admins, allow_private=False).error == "connection failed"
    assert len(requests_made) == 1  # the admin's check ran
