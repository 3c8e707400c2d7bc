"""The web app's /users and /tokens routes, as the Node master class's API has them.

    POST   /users   {"firstName","lastName","phone","password","tosAgreement":true}  201
    GET    /users[?phone=]                                   (token header)          200
    PUT    /users   {"firstName"?, "lastName"?, "password"?} (token header)          200
    DELETE /users[?phone=]   also deletes the user's checks and reminders           204
    POST   /tokens  {"phone","password"} -> {"phone","id","expires"}                 201
    GET    /tokens?id=                                                              200
    PUT    /tokens  {"id","extend":true}   another TOKEN_SECONDS from now           200
    DELETE /tokens?id=                     signs out                                204

A user sees and changes only their own account: a ``phone`` that is not the token's is
a 404, as for a user who does not exist.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, request

from queuing import accounts, store, web
from queuing.accounts import current_user, require_user

bp = Blueprint("users", __name__)


def json_body() -> dict[str, Any]:
    """The request's JSON object, or 400."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "The body must be a JSON object")
    return body


def no_content() -> Response:
    return Response(status=204)


def own_phone() -> accounts.User:
    """The signed-in user, when ``?phone=`` (if given) is theirs; else 404."""
    user = current_user()
    asked = request.args.get("phone")
    if asked is not None:
        try:
            asked = accounts.phone(asked)
        except accounts.InvalidUser as error:
            abort(400, str(error))
        if asked != user.phone:
            abort(404, "User not found")
    return user


@bp.post("/users")
def create_user():
    try:
        user, password = accounts.new_user(json_body())
        accounts.create_user(store.get_redis(), user, password)
    except accounts.InvalidUser as error:
        abort(400, str(error))
    except accounts.UserExists:
        abort(409, "A user with that phone number already exists")
    return web.json_response(user.as_json(), 201)


@bp.get("/users")
@require_user
def get_user():
    return web.json_response(own_phone().as_json())


@bp.put("/users")
@require_user
def update_user():
    body, user = json_body(), own_phone()
    if body.get("phone") not in (None, user.phone, request.args.get("phone")):
        abort(400, "phone cannot change: it is the account's id")
    try:
        names = {field: accounts.name(body[key], key)
                 for field, key in (("first_name", "firstName"), ("last_name", "lastName"))
                 if key in body}
        password = accounts.password(body["password"]) if "password" in body else None
    except accounts.InvalidUser as error:
        abort(400, str(error))
    if not names and password is None:
        abort(400, "Nothing to update: give firstName, lastName or password")
    updated = accounts.update_user(store.get_redis(), user, password_text=password, **names)
    return web.json_response(updated.as_json())


@bp.delete("/users")
@require_user
def delete_user():
    accounts.delete_user(store.get_redis(), own_phone().phone)
    return no_content()


@bp.post("/tokens")
def create_token():
    body = json_body()
    user = accounts.signed_in(store.get_redis(), body.get("phone"), body.get("password"))
    if user is None:
        abort(401, "The phone number or the password is wrong")
    token = accounts.issue_token(store.get_redis(), user, store.now(),
                                 current_app.config["TOKEN_SECONDS"])
    return web.json_response(token.as_json(), 201)


def token_or_404(token_id: Any) -> accounts.Token:
    token = accounts.get_token(store.get_redis(), token_id)
    if token is None:
        abort(404, "Token not found")
    return token


@bp.get("/tokens")
def get_token():
    return web.json_response(token_or_404(request.args.get("id")).as_json())


@bp.put("/tokens")
def extend_token():
    body = json_body()
    if body.get("extend") is not True:
        abort(400, 'Give {"id": "...", "extend": true}')
    token = token_or_404(body.get("id"))
    if token.expires <= store.now():
        abort(400, "The token has expired: sign in again")
    token = accounts.extend_token(store.get_redis(), token, store.now(),
                                  current_app.config["TOKEN_SECONDS"])
    return web.json_response(token.as_json())


@bp.delete("/tokens")
def delete_token():
    accounts.delete_token(store.get_redis(), token_or_404(request.args.get("id")))
    return no_content()
