"""The web app's users and their sign-in tokens, in Redis.

A user is a phone number (E.164, their id), a first and a last name, their agreement to
the terms, and a salted hash of their password (Werkzeug's scrypt): the password itself
is never stored, logged or sent back.

Signing in with phone and password gives a token that lasts TOKEN_SECONDS (an hour); a
request shows it in its ``token`` header. Redis keeps only each token's SHA-256, so
whoever reads Redis (or a copy of its data) cannot sign in as anyone. A token's expiry
is judged by the app's clock (store.now); Redis forgets the token a day after that.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from flask import abort, g, request
from werkzeug.security import check_password_hash, generate_password_hash

from queuing import phones, reminders, store, uptime
from queuing.constants import UPTIME_TOKEN_KEY, UPTIME_USER_KEY, UPTIME_USER_TOKENS_KEY

CREATE_IF_ABSENT_LUA = (Path(__file__).parent / "lua" / "create_if_absent.lua").read_text()
NAME_MAX_LENGTH = 100
PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH = 8, 200
TOKEN_MAX_LENGTH = 100
FORGET_TOKEN_AFTER_SECONDS = 24 * 60 * 60
INVALID_TOKEN = "Missing or invalid token"
# Checked against when the phone number is unknown, so a wrong number takes as long to
# refuse as a wrong password (no telling which numbers have accounts).
_UNKNOWN_USER_HASH = generate_password_hash(secrets.token_hex(16))


class InvalidUser(ValueError):
    """A user's fields cannot be used; the message says which, in one line."""


class UserExists(Exception):
    """A user with this phone number exists already."""


@dataclass(frozen=True)
class User:
    phone: str
    first_name: str
    last_name: str
    tos_agreement: bool = True

    def as_json(self) -> dict[str, Any]:
        return {"firstName": self.first_name, "lastName": self.last_name,
                "phone": self.phone, "tosAgreement": self.tos_agreement}


@dataclass(frozen=True)
class Token:
    id: str
    phone: str
    expires: float  # seconds since the epoch

    def as_json(self) -> dict[str, Any]:
        """As the Node master class answers: ``expires`` in ms since the epoch."""
        return {"phone": self.phone, "id": self.id, "expires": int(self.expires * 1000)}


# -- Checking what people type ---------------------------------------------------------

def name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidUser(f"{field} is needed (text)")
    if len(value.strip()) > NAME_MAX_LENGTH:
        raise InvalidUser(f"{field} is longer than {NAME_MAX_LENGTH} characters")
    return value.strip()


def password(value: Any) -> str:
    if not isinstance(value, str) or not PASSWORD_MIN_LENGTH <= len(value) <= PASSWORD_MAX_LENGTH:
        raise InvalidUser(f"password must be text of {PASSWORD_MIN_LENGTH} to "
                          f"{PASSWORD_MAX_LENGTH} characters")
    return value


def phone(value: Any) -> str:
    try:
        return phones.normalise(value)
    except phones.InvalidPhone as error:
        raise InvalidUser(str(error)) from None


def new_user(fields: Mapping[str, Any]) -> tuple[User, str]:
    """The User and password of a sign-up's JSON, or InvalidUser."""
    if fields.get("tosAgreement") is not True:
        raise InvalidUser("tosAgreement must be true: the terms must be agreed to")
    user = User(phone(fields.get("phone")), name(fields.get("firstName"), "firstName"),
                name(fields.get("lastName"), "lastName"))
    return user, password(fields.get("password"))


# -- Users -----------------------------------------------------------------------------

def _user_key(phone_number: str) -> str:
    return UPTIME_USER_KEY.format(phone=phone_number)


def create_user(connection: redis.Redis, user: User, password_text: str) -> User:
    """Store a new user; UserExists if the phone number has one (checked atomically)."""
    fields = {"phone": user.phone, "first_name": user.first_name,
              "last_name": user.last_name, "tos_agreement": "1",
              "password_hash": generate_password_hash(password_text)}
    args = [item for pair in fields.items() for item in pair]
    if not connection.eval(CREATE_IF_ABSENT_LUA, 1, _user_key(user.phone), *args):
        raise UserExists(user.phone)
    return user


def get_user(connection: redis.Redis, phone_number: str) -> User | None:
    fields = connection.hgetall(_user_key(phone_number))
    if not fields:
        return None
    return User(fields["phone"], fields["first_name"], fields["last_name"],
                fields["tos_agreement"] == "1")


def update_user(connection: redis.Redis, user: User, first_name: str | None = None,
                last_name: str | None = None, password_text: str | None = None) -> User:
    """Change a user's names or password; the phone number (their id) stays."""
    changes = {}
    if first_name is not None:
        changes["first_name"] = first_name
    if last_name is not None:
        changes["last_name"] = last_name
    if password_text is not None:
        changes["password_hash"] = generate_password_hash(password_text)
    if changes:
        connection.hset(_user_key(user.phone), mapping=changes)
    return get_user(connection, user.phone) or user


def delete_user(connection: redis.Redis, phone_number: str) -> None:
    """Forget a user with their checks, reminders and tokens: the user and tokens first,
    so no new request of theirs adds a check after their checks are gone."""
    tokens_key = UPTIME_USER_TOKENS_KEY.format(phone=phone_number)
    digests = connection.smembers(tokens_key)
    connection.delete(_user_key(phone_number), tokens_key,
                      *(UPTIME_TOKEN_KEY.format(digest=digest) for digest in digests))
    uptime.remove_checks_of(connection, phone_number)
    reminders.remove_reminders_of(connection, phone_number)


def signed_in(connection: redis.Redis, phone_text: Any, password_text: Any) -> User | None:
    """The user whose phone and password these are, else None (whichever was wrong)."""
    try:
        user = get_user(connection, phones.normalise(phone_text))
    except phones.InvalidPhone:
        user = None
    stored = connection.hget(_user_key(user.phone), "password_hash") if user else None
    if not isinstance(password_text, str) or len(password_text) > PASSWORD_MAX_LENGTH:
        password_text = ""  # no password is empty: a wrong one, hashed all the same
    matches = check_password_hash(stored or _UNKNOWN_USER_HASH, password_text)
    return user if matches and stored else None


# -- Tokens ----------------------------------------------------------------------------

def _digest(token_id: str) -> str:
    return hashlib.sha256(token_id.encode()).hexdigest()


def _token_key(token_id: str) -> str:
    return UPTIME_TOKEN_KEY.format(digest=_digest(token_id))


def _keep(connection: redis.Redis, token: Token, now: float) -> None:
    """Write ``token``; Redis drops it a day after it expires."""
    seconds = int(token.expires - now) + FORGET_TOKEN_AFTER_SECONDS
    with connection.pipeline() as pipe:
        pipe.hset(_token_key(token.id), mapping={"phone": token.phone, "expires": token.expires})
        pipe.expire(_token_key(token.id), seconds)
        pipe.sadd(UPTIME_USER_TOKENS_KEY.format(phone=token.phone), _digest(token.id))
        pipe.execute()


def issue_token(connection: redis.Redis, user: User, now: float, seconds: float) -> Token:
    token = Token(secrets.token_urlsafe(24), user.phone, now + seconds)
    _keep(connection, token, now)
    return token


def get_token(connection: redis.Redis, token_id: Any) -> Token | None:
    """The token, expired or not; None for anything that is not one of ours."""
    if not isinstance(token_id, str) or not 0 < len(token_id) <= TOKEN_MAX_LENGTH:
        return None
    fields = connection.hgetall(_token_key(token_id))
    if not fields:
        return None
    return Token(token_id, fields["phone"], float(fields["expires"]))


def valid_token(connection: redis.Redis, token_id: Any, now: float) -> Token | None:
    token = get_token(connection, token_id)
    return token if token is not None and token.expires > now else None


def extend_token(connection: redis.Redis, token: Token, now: float, seconds: float) -> Token:
    extended = Token(token.id, token.phone, now + seconds)
    _keep(connection, extended, now)
    return extended


def delete_token(connection: redis.Redis, token: Token) -> None:
    with connection.pipeline() as pipe:
        pipe.delete(_token_key(token.id))
        pipe.srem(UPTIME_USER_TOKENS_KEY.format(phone=token.phone), _digest(token.id))
        pipe.execute()


def user_for_token(connection: redis.Redis, token_id: Any, now: float) -> User | None:
    token = valid_token(connection, token_id, now)
    return get_user(connection, token.phone) if token is not None else None


# -- In a request ----------------------------------------------------------------------

def require_user(view: Callable) -> Callable:
    """A view only for a signed-in user: the ``token`` header must hold a valid token
    (401 otherwise); the view finds the user with :func:`current_user`.

    Only the header, never a cookie: a page of another site can make a browser send
    cookies, not headers (no cross-site request forgery on the API)."""

    @functools.wraps(view)
    def signed_in_view(*args: Any, **kwargs: Any) -> Any:
        user = user_for_token(store.get_redis(), request.headers.get("token"), store.now())
        if user is None:
            abort(401, INVALID_TOKEN)
        g.user = user
        return view(*args, **kwargs)

    return signed_in_view


def current_user() -> User:
    """The signed-in user of this request (see :func:`require_user`)."""
    return g.user
