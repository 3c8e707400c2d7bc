"""The web app's /reminders and /messages routes: the web process enqueues, the worker sends.

    POST   /reminders {"recipients":[...],"message","times"?:["09:00",...],"timezone"?}  201
    GET    /reminders                the signed-in user's reminders                       200
    GET    /reminders/<id>                                                               200
    DELETE /reminders/<id>                                                               204
    POST   /messages  {"to","message"} -> {"jobId"} + Location: /messages/<jobId>        202
    GET    /messages/<jobId> -> {"jobId","to","status","reason"?}                        200

A reminder is {"id","message","recipients","times","timezone","next"}: ``next`` is when
it is sent next (ISO 8601, in its zone). Times default to the course's 09:00, 12:00, 18:00
and 22:00; the zone to REMINDER_TIMEZONE's, fixed when the reminder is made (null: the
server's local time). A message's status is RQ's: queued, started, finished, failed, or
scheduled (a retry waits); ``reason`` is its last failure's one line. Every route needs
the ``token`` header; another user's reminder or message is a 404, as one that does not
exist.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, abort, request, url_for
from rq.job import Job
from rq.serializers import JSONSerializer

from queuing import phones, reminders, senders, settings, store, web
from queuing.accounts import current_user, require_user
from queuing.constants import DEFAULT_REMINDER_TIMES, FAILURE_META, OWNER_META, SMS_QUEUE

bp = Blueprint("reminders", __name__)
MAX_RECIPIENTS = 10


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "The body must be a JSON object")
    return body


def _texts(value: Any, field: str, most: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        abort(400, f"{field} must be a list of strings")
    if len(value) > most:
        abort(400, f"{field} may hold at most {most} items")
    return value


def _as_json(reminder: reminders.Reminder) -> dict[str, Any]:
    now = datetime.fromtimestamp(store.now(), timezone.utc)
    upcoming = reminders.upcoming_send(store.get_redis(), reminder, now, settings.timezone(),
                                       reminders.grace())
    return {"id": reminder.id, "message": reminder.message, "recipients": list(reminder.phones),
            "times": list(reminder.times), "timezone": reminder.timezone or None,
            "next": upcoming.isoformat()}


def _own_reminder(reminder_id: str) -> reminders.Reminder:
    found = reminders.get_reminder(store.get_redis(), reminder_id)
    if found is None or found.owner != current_user().phone:
        abort(404, "Reminder not found")
    return found


@bp.post("/reminders")
@require_user
def create_reminder() -> Response:
    body = _body()
    default_zone = getattr(settings.timezone(), "key", "")
    zone = body.get("timezone") or default_zone
    times = _texts(body.get("times", list(DEFAULT_REMINDER_TIMES)), "times", 24)
    try:
        reminder = reminders.validate(body.get("message"),
                                      _texts(body.get("recipients"), "recipients", MAX_RECIPIENTS),
                                      times, zone, owner=current_user().phone)
    except reminders.InvalidReminder as error:
        abort(400, f"Invalid reminder: {error}")
    reminder = reminders.add_reminder(store.get_redis(), reminder, now=store.now())
    return web.json_response(_as_json(reminder), 201)


@bp.get("/reminders")
@require_user
def list_reminders() -> Response:
    found = reminders.reminders_of(store.get_redis(), current_user().phone)
    return web.json_response([_as_json(reminder) for reminder in found])


@bp.get("/reminders/<reminder_id>")
@require_user
def get_reminder(reminder_id: str) -> Response:
    return web.json_response(_as_json(_own_reminder(reminder_id)))


@bp.delete("/reminders/<reminder_id>")
@require_user
def delete_reminder(reminder_id: str) -> Response:
    reminders.remove_reminder(store.get_redis(), _own_reminder(reminder_id).id)
    return Response(status=204)


@bp.post("/messages")
@require_user
def send_message() -> Response:
    body = _body()
    try:
        to = phones.normalise(body.get("to"))
        message = senders.check_message(body.get("message"))
    except (phones.InvalidPhone, senders.NotificationError) as error:
        abort(400, str(error))
    job = senders.enqueue_sms(store.get_rq_redis(), to, message, owner=current_user().phone)
    answer = web.json_response({"jobId": job.id}, 202)
    answer.headers["Location"] = url_for(".message_status", job_id=job.id)
    return answer


@bp.get("/messages/<job_id>")
@require_user
def message_status(job_id: str) -> Response:
    try:
        job = Job.fetch(job_id, connection=store.get_rq_redis(), serializer=JSONSerializer)
        owner = job.meta.get(OWNER_META)
    except Exception:  # no such job, or not one RQ can read: not the user's either way
        owner = None
    if owner != current_user().phone or job.origin != SMS_QUEUE:
        abort(404, "Message not found")
    status = job.get_status(refresh=False)
    answer = {"jobId": job.id, "to": job.args[0], "status": getattr(status, "value", status)}
    reason = job.meta.get(FAILURE_META)
    if reason and status in ("failed", "scheduled"):
        answer["reason"] = reason
    return web.json_response(answer)
