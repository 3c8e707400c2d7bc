"""The web app's /checks routes, as the Node master class's API has them.

    POST   /checks  {"protocol","url","method","successCodes","timeoutSeconds"}  201
    GET    /checks?id=   one check, with its recent history (newest first)     200
    GET    /checks       the user's checks                                    200
    PUT    /checks  {"id", and any of the fields above}   edited in place      200
    DELETE /checks?id=                                                         204

Every route needs the ``token`` header. A user has at most MAX_CHECKS checks (the app's
config, from UPTIME_MAX_CHECKS); another user's check is a 404, as one that does not
exist. The uptime worker runs the checks and alerts their owner's phone by SMS.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, request

from queuing import store, uptime, web
from queuing.accounts import current_user, require_user
from queuing.users_api import json_body, no_content

bp = Blueprint("checks", __name__)


def _number(value: Any, kinds: type | tuple[type, ...] = (int, float)) -> bool:
    return isinstance(value, kinds) and not isinstance(value, bool)


# Each field's name in the API: its name in uptime.validate, and what its JSON must be.
FIELDS = {
    "protocol": ("protocol", "text", lambda value: isinstance(value, str)),
    "url": ("url", "text", lambda value: isinstance(value, str)),
    "method": ("method", "text", lambda value: isinstance(value, str)),
    "successCodes": ("success_codes", "a list of whole numbers", lambda value: isinstance(
        value, list) and all(_number(code, int) for code in value)),
    "timeoutSeconds": ("timeout_seconds", "a number", _number),
}


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    """The check's fields the body gives, by uptime.validate's names; 400 if mistyped."""
    fields = {}
    for name, (field, kind, valid) in FIELDS.items():
        if name in body:
            if not valid(body[name]):
                abort(400, f"{name} must be {kind}")
            fields[field] = body[name]
    return fields


def _whole_or_not(number: float) -> int | float:
    """3 for 3.0, as the client gave it; 0.5 stays."""
    return int(number) if number.is_integer() else number


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def as_json(check: uptime.Check, history: bool = False) -> dict[str, Any]:
    """A check as the API shows it; with its recent outcomes when ``history``."""
    connection = store.get_redis()
    shown = {"id": check.id, "userPhone": check.owner, "protocol": check.protocol,
             "url": check.url, "method": check.method,
             "successCodes": list(check.success_codes),
             "timeoutSeconds": _whole_or_not(check.timeout_seconds),
             "state": uptime.state_of(connection, check.id),
             "lastChecked": _ms(uptime.last_checked(connection, check.id))}
    if history:
        shown["history"] = [{"state": entry["state"], "statusCode": entry["status_code"],
                             "error": entry["error"], "checkedAt": _ms(entry["checked_at"])}
                            for entry in uptime.log_of(connection, check.id)]
    return shown


def own_check(check_id: Any) -> uptime.Check:
    """The signed-in user's check of this id; 404 if there is none or it is another's."""
    check = uptime.get_check(store.get_redis(), check_id) if isinstance(check_id, str) else None
    if check is None or check.owner != current_user().phone:
        abort(404, "Check not found")
    return check


def _validated(fields: dict[str, Any], check_id: str = "") -> uptime.Check:
    phone = current_user().phone
    try:
        return uptime.validate(**fields, phone=phone, owner=phone, check_id=check_id,
                               public_only=not current_app.config["ALLOW_PRIVATE_CHECKS"])
    except uptime.InvalidCheck as error:
        abort(400, str(error))


@bp.post("/checks")
@require_user
def create_check():
    fields = _fields(json_body())
    if len(fields) < len(FIELDS):
        abort(400, "Give protocol, url, method, successCodes and timeoutSeconds")
    try:
        check = uptime.add_check(store.get_redis(), _validated(fields),
                                 current_app.config["MAX_CHECKS"])
    except uptime.TooManyChecks as error:
        abort(400, str(error))
    return web.json_response(as_json(check), 201)


@bp.get("/checks")
@require_user
def get_checks():
    if "id" in request.args:
        return web.json_response(as_json(own_check(request.args["id"]), history=True))
    checks = uptime.checks_of(store.get_redis(), current_user().phone)
    return web.json_response([as_json(check) for check in checks])


@bp.put("/checks")
@require_user
def update_check():
    body = json_body()
    check, fields = own_check(body.get("id")), _fields(body)
    if not fields:
        abort(400, "Nothing to update: give protocol, url, method, successCodes or "
                   "timeoutSeconds")
    current = {"protocol": check.protocol, "url": check.url, "method": check.method,
               "success_codes": check.success_codes, "timeout_seconds": check.timeout_seconds}
    edited = uptime.update_check(store.get_redis(), _validated(current | fields, check.id))
    if edited is None:
        abort(404, "Check not found")
    return web.json_response(as_json(edited, history=True))


@bp.delete("/checks")
@require_user
def delete_check():
    uptime.remove_check(store.get_redis(), own_check(request.args.get("id")).id)
    return no_content()
