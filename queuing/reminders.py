"""Reminders: a text sent to its recipients at set times of day (09:00, 12:00, 18:00, 22:00).

RQ's cron (``104_scheduler.py``) queues :func:`tick` every minute; the tick sends the
reminders that are due. Two schedulers mean two ticks a minute, so sending is made
idempotent: before queueing a reminder's SMS for one time slot, the tick claims the key
``reminders:sent:<id>:<slot>`` with ``SET NX``, which only one tick can win.

A slot is due from its time until ``REMINDER_GRACE_SECONDS`` later, so a tick that runs
late (a busy worker, a restarted scheduler) still sends it, once. Times are in
``REMINDER_TIMEZONE`` (default: the machine's local time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as time_of_day
from datetime import timezone as dt_timezone

import redis

from queuing import console, senders, settings
from queuing.connection import connect, rq_client
from queuing.constants import (
    DEFAULT_REMINDER_TIMES,
    REMINDER_ID_KEY,
    REMINDER_KEY,
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
    times: tuple[str, ...]  # "HH:MM", in the configured time zone
    created_at: float = 0.0


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


def validate(message: str, phones: list[str] | tuple[str, ...],
             times: list[str] | tuple[str, ...] | str = DEFAULT_REMINDER_TIMES) -> Reminder:
    try:
        message = senders.check_message(message)
        phones = tuple(dict.fromkeys(senders.e164(phone) for phone in phones))
    except senders.NotificationError as error:
        raise InvalidReminder(str(error)) from None
    if not phones:
        raise InvalidReminder("a reminder needs at least one phone number")
    return Reminder("", message, phones, parse_times(times))


# -- Storage -------------------------------------------------------------------------------

def add_reminder(connection: redis.Redis, reminder: Reminder, now: float | None = None
                 ) -> Reminder:
    reminder_id = str(connection.incr(REMINDER_ID_KEY))
    created_at = time.time() if now is None else now
    with connection.pipeline() as pipe:
        pipe.hset(REMINDER_KEY.format(reminder_id=reminder_id), mapping={
            "id": reminder_id, "message": reminder.message, "phones": ",".join(reminder.phones),
            "times": ",".join(reminder.times), "created_at": created_at,
        })
        pipe.sadd(REMINDERS_KEY, reminder_id)
        pipe.execute()
    return Reminder(reminder_id, reminder.message, reminder.phones, reminder.times, created_at)


def all_reminders(connection: redis.Redis) -> list[Reminder]:
    ids = sorted(connection.smembers(REMINDERS_KEY), key=int)
    with connection.pipeline() as pipe:
        for reminder_id in ids:
            pipe.hgetall(REMINDER_KEY.format(reminder_id=reminder_id))
        return [Reminder(f["id"], f["message"], tuple(f["phones"].split(",")),
                         tuple(f["times"].split(",")), float(f.get("created_at", 0)))
                for f in pipe.execute() if f]


def remove_reminder(connection: redis.Redis, reminder_id: str) -> bool:
    with connection.pipeline() as pipe:
        pipe.srem(REMINDERS_KEY, reminder_id)
        pipe.delete(REMINDER_KEY.format(reminder_id=reminder_id))
        removed, _ = pipe.execute()
    return bool(removed)


# -- When ----------------------------------------------------------------------------------

def slot_at(day: date, hh_mm: str, tz: tzinfo | None) -> datetime:
    """``hh_mm`` on ``day`` in ``tz`` (None: local time), as an aware datetime."""
    naive = datetime.combine(day, time_of_day.fromisoformat(hh_mm))
    return naive.astimezone() if tz is None else naive.replace(tzinfo=tz)


def due_slots(reminder: Reminder, now: datetime, tz: tzinfo | None,
              grace: timedelta) -> list[datetime]:
    """The reminder's slots that are due at ``now`` (aware): slot <= now < slot + grace.

    Slots before the minute the reminder was created never count.
    """
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
    """The first of the reminder's slots after ``now``."""
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
    """Queue an SMS per recipient for every slot due at ``now`` that no tick claimed yet."""
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
