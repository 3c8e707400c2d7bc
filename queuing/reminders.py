"""Reminders: a text sent to its recipients at set times of day (09:00, 12:00, 18:00, 22:00).

RQ's cron (``104_scheduler.py``) queues :func:`tick` every minute; the tick sends the
reminders that are due. Two schedulers mean two ticks a minute, so sending is made
idempotent: before queueing a reminder's SMS for one time slot, the tick claims the key
``reminders:sent:<id>:<slot>`` with ``SET NX``, which only one tick can win.

A slot is due from its time until ``REMINDER_GRACE_SECONDS`` later, so a tick that runs
late (a busy worker, a restarted scheduler) still sends it, once. Each reminder's times
are in its own time zone (an IANA name, given when it is added); a reminder without one
uses ``REMINDER_TIMEZONE`` (default: the machine's local time).

A reminder added through the web app has an owner (the user's phone), indexed so the
user's reminders are listed and removed without reading everyone's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as time_of_day
from datetime import timezone as dt_timezone
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

import redis

from queuing import console, phones, senders, settings
from queuing.connection import connect, rq_client
from queuing.constants import (
    DEFAULT_REMINDER_TIMES,
    REMINDER_ID_KEY,
    REMINDER_KEY,
    REMINDER_OWNER_KEY,
    REMINDER_SENT_KEY,
    REMINDER_SENT_TTL_SECONDS,
    REMINDERS_KEY,
)

MAX_MESSAGE_LENGTH = senders.MAX_MESSAGE_LENGTH


class InvalidReminder(ValueError):
    """A reminder's fields are not usable; the message says which and why."""


@dataclass(frozen=True)
class Reminder:
    id: str
    message: str
    phones: tuple[str, ...]
    times: tuple[str, ...]  # "HH:MM", in the reminder's time zone
    created_at: float = 0.0
    owner: str = ""  # the phone of the user who added it; "" when the CLI did
    timezone: str = ""  # an IANA name; "" for REMINDER_TIMEZONE or local time


def parse_times(times: list[str] | tuple[str, ...] | str) -> tuple[str, ...]:
    """``"9:00,12:00"`` or ``["09:00", "12:00"]`` as sorted ``("09:00", "12:00")``."""
    if isinstance(times, str):
        times = times.split(",")
    parsed = set()
    for text in times:
        try:
            parsed.add(datetime.strptime(text.strip(), "%H:%M").strftime("%H:%M"))
        except ValueError:
            raise InvalidReminder(f"a time must be HH:MM (24-hour), not {text.strip()!r}") from None
    if not parsed:
        raise InvalidReminder("a reminder needs at least one time")
    return tuple(sorted(parsed))


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone (``Europe/Paris``) or empty, else InvalidReminder.
    Checked against the zone list, so no other file name reaches ZoneInfo."""
    if not isinstance(name, str) or (name and name not in _zone_names()):
        raise InvalidReminder(f"not a known time zone: {str(name)[:60]!r} "
                              "(use an IANA name such as America/New_York)")
    return name


def validate(message: str, recipients: list[str] | tuple[str, ...],
             times: list[str] | tuple[str, ...] | str = DEFAULT_REMINDER_TIMES,
             timezone: str = "", owner: str = "") -> Reminder:
    """A Reminder to store, or InvalidReminder saying what is wrong in one line. Recipients
    are numbers people typed: normalised to E.164 by phones.py's rules."""
    try:
        message = senders.check_message(message)
        numbers = tuple(dict.fromkeys(phones.normalise(phone) for phone in recipients))
    except (senders.NotificationError, phones.InvalidPhone) as error:
        raise InvalidReminder(str(error)) from None
    if not numbers:
        raise InvalidReminder("a reminder needs at least one phone number")
    return Reminder("", message, numbers, parse_times(times), owner=owner,
                    timezone=check_timezone(timezone))


def zone_of(reminder: Reminder, default: tzinfo | None) -> tzinfo | None:
    """The zone the reminder's times are in: its own, else ``default`` (None: local)."""
    return ZoneInfo(reminder.timezone) if reminder.timezone else default


# -- Storage -------------------------------------------------------------------------------

def add_reminder(connection: redis.Redis, reminder: Reminder, now: float | None = None
                 ) -> Reminder:
    """Store ``reminder`` under a new id (with its owner's index, in one transaction)."""
    reminder_id = str(connection.incr(REMINDER_ID_KEY))
    created_at = time.time() if now is None else now
    with connection.pipeline() as pipe:
        pipe.hset(REMINDER_KEY.format(reminder_id=reminder_id), mapping={
            "id": reminder_id, "message": reminder.message, "phones": ",".join(reminder.phones),
            "times": ",".join(reminder.times), "created_at": created_at,
            "owner": reminder.owner, "timezone": reminder.timezone,
        })
        pipe.sadd(REMINDERS_KEY, reminder_id)
        if reminder.owner:
            pipe.sadd(REMINDER_OWNER_KEY.format(owner=reminder.owner), reminder_id)
        pipe.execute()
    return replace(reminder, id=reminder_id, created_at=created_at)


def _reminders(connection: redis.Redis, ids: set[str]) -> list[Reminder]:
    with connection.pipeline(transaction=False) as pipe:
        for reminder_id in sorted(ids, key=int):
            pipe.hgetall(REMINDER_KEY.format(reminder_id=reminder_id))
        return [Reminder(f["id"], f["message"], tuple(f["phones"].split(",")),
                         tuple(f["times"].split(",")), float(f.get("created_at", 0)),
                         f.get("owner", ""), f.get("timezone", ""))
                for f in pipe.execute() if f]


def all_reminders(connection: redis.Redis) -> list[Reminder]:
    return _reminders(connection, connection.smembers(REMINDERS_KEY))


def reminders_of(connection: redis.Redis, owner: str) -> list[Reminder]:
    """The reminders ``owner`` added through the web app, oldest first."""
    return _reminders(connection, connection.smembers(REMINDER_OWNER_KEY.format(owner=owner)))


def get_reminder(connection: redis.Redis, reminder_id: str) -> Reminder | None:
    """The reminder of that id, or None (also for an id that is not a number)."""
    if not isinstance(reminder_id, str) or not reminder_id.isdigit():
        return None
    found = _reminders(connection, {reminder_id})
    return found[0] if found else None


def remove_reminder(connection: redis.Redis, reminder_id: str) -> bool:
    """Remove the reminder; False when there was none of that id."""
    owner = connection.hget(REMINDER_KEY.format(reminder_id=reminder_id), "owner")
    with connection.pipeline() as pipe:
        pipe.srem(REMINDERS_KEY, reminder_id)
        pipe.delete(REMINDER_KEY.format(reminder_id=reminder_id))
        if owner:
            pipe.srem(REMINDER_OWNER_KEY.format(owner=owner), reminder_id)
        removed = pipe.execute()[0]
    return bool(removed)


def remove_reminders_of(connection: redis.Redis, owner: str) -> int:
    """Remove every reminder of ``owner`` (a user who is deleted); how many there were."""
    ids = connection.smembers(REMINDER_OWNER_KEY.format(owner=owner))
    with connection.pipeline() as pipe:
        for reminder_id in ids:
            pipe.srem(REMINDERS_KEY, reminder_id)
            pipe.delete(REMINDER_KEY.format(reminder_id=reminder_id))
        pipe.delete(REMINDER_OWNER_KEY.format(owner=owner))
        pipe.execute()
    return len(ids)


# -- When ----------------------------------------------------------------------------------

def slot_at(day: date, hh_mm: str, tz: tzinfo | None) -> datetime:
    """``hh_mm`` on ``day`` in ``tz`` (None: local time), as an aware datetime."""
    naive = datetime.combine(day, time_of_day.fromisoformat(hh_mm))
    return naive.astimezone() if tz is None else naive.replace(tzinfo=tz)


def due_slots(reminder: Reminder, now: datetime, tz: tzinfo | None,
              grace: timedelta) -> list[datetime]:
    """The reminder's slots that are due at ``now`` (aware): slot <= now < slot + grace.

    Slots are in the reminder's time zone (``tz``, None for local time, when it has none).
    Slots before the minute the reminder was created never count.
    """
    tz = zone_of(reminder, tz)
    local_now = now.astimezone(tz)
    created_minute = datetime.fromtimestamp(reminder.created_at - reminder.created_at % 60,
                                            dt_timezone.utc)
    slots = []
    for day in (local_now.date() - timedelta(days=1), local_now.date()):
        for hh_mm in reminder.times:
            slot = slot_at(day, hh_mm, tz)
            if slot <= now < slot + grace and slot >= created_minute:
                slots.append(slot)
    return slots


def next_slot(reminder: Reminder, now: datetime, tz: tzinfo | None) -> datetime:
    """The first of the reminder's slots after ``now`` (``tz``: when it has no zone)."""
    tz = zone_of(reminder, tz)
    local_today = now.astimezone(tz).date()
    return min(slot for day in (local_today, local_today + timedelta(days=1))
               for hh_mm in reminder.times
               if (slot := slot_at(day, hh_mm, tz)) > now)


def upcoming_send(connection: redis.Redis, reminder: Reminder, now: datetime,
                  tz: tzinfo | None, grace: timedelta) -> datetime:
    """The slot the reminder is sent for next: one due now that no tick has sent yet (the
    next tick sends it), else the first slot after ``now``."""
    for slot in due_slots(reminder, now, tz, grace):
        if not connection.exists(_sent_key(reminder, slot)):
            return slot
    return next_slot(reminder, now, tz)


def _sent_key(reminder: Reminder, slot: datetime) -> str:
    return REMINDER_SENT_KEY.format(reminder_id=reminder.id, slot=slot.isoformat())


# -- Sending -------------------------------------------------------------------------------

def send_due(connection: redis.Redis, rq_connection: redis.Redis, now: datetime,
             tz: tzinfo | None, grace: timedelta) -> list[tuple[Reminder, datetime]]:
    """Queue an SMS per recipient for every slot due at ``now`` that no tick claimed yet.
    ``tz``: the zone of the reminders that have none of their own."""
    sent = []
    for reminder in all_reminders(connection):
        for slot in due_slots(reminder, now, tz, grace):
            if not connection.set(_sent_key(reminder, slot), now.isoformat(), nx=True,
                                  ex=REMINDER_SENT_TTL_SECONDS):
                continue  # another tick sent this slot already
            for phone in reminder.phones:
                job = senders.enqueue_sms(rq_connection, phone, reminder.message)
                console.log(f"Reminder {reminder.id} for {slot:%Y-%m-%d %H:%M %Z} "
                           f"queued to {phone} as job {job.id}")
            sent.append((reminder, slot))
    return sent


def grace() -> timedelta:
    """REMINDER_GRACE_SECONDS: how late a missed slot is still sent."""
    return timedelta(seconds=settings.reminder_grace_seconds())


def tick() -> int:
    """The job RQ's cron queues every minute: send what is due now. Returns how many slots."""
    settings.load_env()
    late = grace()
    connection = connect()
    rq_connection = rq_client()
    try:
        sent = send_due(connection, rq_connection, datetime.now(dt_timezone.utc),
                        settings.timezone(), late)
    finally:
        connection.close()
        rq_connection.close()
    return len(sent)
