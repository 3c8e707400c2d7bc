"""Users and sign-in tokens in Redis (accounts.py), below the HTTP routes."""

import threading

import pytest

from queuing import accounts
from queuing.constants import UPTIME_TOKEN_KEY, UPTIME_USER_KEY

JANE = accounts.User("+14158675309", "Jane", "Dreamer")


def test_the_password_is_stored_only_as_a_salted_hash(fake_redis):
    accounts.create_user(fake_redis, JANE, "password")
    accounts.create_user(fake_redis, accounts.User("+14153518780", "J", "D"), "password")
    hashes = [fake_redis.hget(UPTIME_USER_KEY.format(phone=phone), "password_hash")
              for phone in ("+14158675309", "+14153518780")]
    assert all(h.startswith("scrypt:") and "password" not in h for h in hashes)
    assert hashes[0] != hashes[1]  # salted: the same password, two hashes


def test_signing_in_needs_the_right_phone_and_password(fake_redis):
    accounts.create_user(fake_redis, JANE, "password")
    assert accounts.signed_in(fake_redis, "415-867-5309", "password") == JANE
    assert accounts.signed_in(fake_redis, "4158675309", "Password") is None
    assert accounts.signed_in(fake_redis, "4153518780", "password") is None
    assert accounts.signed_in(fake_redis, "not a phone", "password") is None
    assert accounts.signed_in(fake_redis, "4158675309", None) is None


def test_redis_keeps_no_token_only_its_digest(fake_redis):
    accounts.create_user(fake_redis, JANE, "password")
    token = accounts.issue_token(fake_redis, JANE, now=1000.0, seconds=3600)
    everything = [key for key in fake_redis.keys("*")]
    for key in everything:
        kind = fake_redis.type(key)
        values = {"hash": lambda k: list(fake_redis.hgetall(k).values()),
                  "set": lambda k: list(fake_redis.smembers(k))}[kind](key)
        assert token.id not in key and token.id not in values
    assert fake_redis.exists(UPTIME_TOKEN_KEY.format(digest=accounts._digest(token.id)))


def test_a_token_is_valid_until_it_expires_and_extending_it_needs_it_valid(fake_redis):
    accounts.create_user(fake_redis, JANE, "password")
    token = accounts.issue_token(fake_redis, JANE, now=1000.0, seconds=3600)
    assert accounts.user_for_token(fake_redis, token.id, now=4599.0) == JANE
    assert accounts.user_for_token(fake_redis, token.id, now=4600.0) is None
    later = accounts.extend_token(fake_redis, token, now=4000.0, seconds=3600)
    assert later.expires == 7600.0
    assert accounts.user_for_token(fake_redis, token.id, now=7000.0) == JANE


@pytest.mark.parametrize("bad", [None, "", "x" * 101, 12, ["a"]])
def test_anything_that_is_not_a_token_signs_no_one_in(fake_redis, bad):
    assert accounts.user_for_token(fake_redis, bad, now=0.0) is None


def test_deleting_a_user_deletes_their_tokens(fake_redis):
    accounts.create_user(fake_redis, JANE, "password")
    token = accounts.issue_token(fake_redis, JANE, now=1000.0, seconds=3600)
    accounts.delete_user(fake_redis, JANE.phone)
    assert accounts.get_token(fake_redis, token.id) is None
    assert fake_redis.keys("*") == []


def test_two_sign_ups_with_one_phone_at_once_make_one_user(real_redis):
    """Each thread's sign-up is checked and written in one script: one wins, the other is
    told the user exists, and the winner's password is the one that works."""
    start = threading.Barrier(8)
    outcomes: dict[str, str] = {}

    def sign_up(password: str) -> None:
        start.wait(timeout=30)
        try:
            accounts.create_user(real_redis, JANE, password)
            outcomes[password] = "created"
        except accounts.UserExists:
            outcomes[password] = "exists"

    threads = [threading.Thread(target=sign_up, args=(f"password{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [password for password, outcome in outcomes.items() if outcome == "created"]
    assert len(outcomes) == 8 and len(winners) == 1
    assert accounts.signed_in(real_redis, JANE.phone, winners[0]) == JANE
