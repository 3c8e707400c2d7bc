"""Reminders at their times, the clock controlled by the test; each slot sent once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import fakeredis
import pytest
import redis

from queuing import reminders, settings
from queuing.constants import REMINDER_OWNER_KEY, SMS_QUEUE
from queuing.jobs import json_queue

PARIS = ZoneInfo("Europe/Paris")
GRACE = timedelta(minutes=10)
LONG_AGO = datetime(2020, 1, 1, tzinfo=timezone.utc).timestamp()


@pytest.fixture
def rq_redis(fake_server):
    return fakeredis.FakeRedis(server=fake_server)


def sms(rq_redis) -> list[list]:
    return [job.args for job in json_queue(SMS_QUEUE, rq_redis).get_jobs()]


def add(connection, message="Take your medicine", phones=("4153518780",), times=None,
        created_at=LONG_AGO) -> reminders.Reminder:
    reminder = reminders.validate(message, list(phones),
                                  times if times is not None else reminders.DEFAULT_REMINDER_TIMES)
    return reminders.add_reminder(connection, reminder, now=created_at)


def at(hh_mm: str, day: int = 23, tz=PARIS) -> datetime:
    hour, minute = map(int, hh_mm.split(":"))
    return datetime(2026, 11, day, hour, minute, tzinfo=tz)


# -- Validation and storage ----------------------------------------------------------------

def test_default_times_are_the_courses():
    reminder = reminders.validate("hi", ["4153518780"])
    assert reminder.times == ("09:00", "12:00", "18:00", "22:00")
    assert reminder.phones == ("+14153518780",)


def test_times_are_parsed_and_sorted():
    assert reminders.parse_times("18:00, 9:00,18:00") == ("09:00", "18:00")


@pytest.mark.parametrize(("fields", "reason"), [
    ({"times": "25:00"}, "HH:MM"),
    ({"times": "9"}, "HH:MM"),
    ({"times": []}, "at least one time"),
    ({"recipients": []}, "at least one phone"),
    ({"recipients": ["12"]}, "Invalid phone number"),
    ({"recipients": ["+999999999999999"]}, "Invalid phone number"),
    ({"message": " "}, "empty"),
    ({"timezone": "Mars/Olympus"}, "not a known time zone"),
    ({"timezone": "../../etc/passwd"}, "not a known time zone"),
])
def test_validate_refuses_bad_fields(fields, reason):
    given = {"message": "hi", "recipients": ["4153518780"]} | fields
    with pytest.raises(reminders.InvalidReminder, match=reason):
        reminders.validate(**given)


def test_recipients_are_normalised_as_people_type_them():
    reminder = reminders.validate("hi", ["1-415-351-8780", "(415) 351-8780", "+1 415 555 0100"])
    assert reminder.phones == ("+14153518780", "+14155550100")


def test_owners_see_and_lose_only_their_reminders(fake_redis):
    jane = reminders.add_reminder(fake_redis, reminders.validate(
        "Stand up", ["4153518780"], "10:30", timezone="America/New_York", owner="+14153518780"))
    other = reminders.add_reminder(fake_redis, reminders.validate(
        "Drink", ["4155550100"], owner="+14155550100"))
    cli = add(fake_redis)
    assert reminders.reminders_of(fake_redis, "+14153518780") == [jane]
    assert reminders.get_reminder(fake_redis, jane.id) == jane
    assert jane.timezone == "America/New_York" and jane.owner == "+14153518780"
    assert reminders.get_reminder(fake_redis, "99") is None
    assert reminders.get_reminder(fake_redis, "../1") is None
    assert reminders.remove_reminders_of(fake_redis, "+14153518780") == 1
    assert reminders.all_reminders(fake_redis) == [other, cli]
    assert reminders.remove_reminder(fake_redis, other.id)
    assert reminders.reminders_of(fake_redis, "+14155550100") == []
    assert not fake_redis.exists(REMINDER_OWNER_KEY.format(owner="+14155550100"))


def test_add_list_remove(fake_redis):
    first = add(fake_redis)
    second = add(fake_redis, "Stand up", ["4153518780", "+14155550100"], "10:30")
    assert reminders.all_reminders(fake_redis) == [first, second]
    assert reminders.remove_reminder(fake_redis, "1")
    assert not reminders.remove_reminder(fake_redis, "1")
    assert reminders.all_reminders(fake_redis) == [second]


# -- When ----------------------------------------------------------------------------------

def test_a_day_of_ticks_sends_at_9_noon_6pm_and_10pm(fake_redis, rq_redis):
    """A tick every minute over one whole day, in Paris time: four sends, at their times."""
    add(fake_redis)
    sent = []
    now = at("00:00")
    while now < at("00:00", day=24):
        for _reminder, slot in reminders.send_due(fake_redis, rq_redis, now, PARIS, GRACE):
            sent.append((now.astimezone(PARIS).strftime("%H:%M"), slot.strftime("%H:%M")))
        now += timedelta(minutes=1)
    assert sent == [("09:00", "09:00"), ("12:00", "12:00"), ("18:00", "18:00"),
                    ("22:00", "22:00")]
    assert len(sms(rq_redis)) == 4


def test_the_timezone_decides_the_hour(fake_redis, rq_redis):
    add(fake_redis)
    # 08:00 UTC is 09:00 in Paris in November: due there, not in UTC.
    eight_utc = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
    assert reminders.send_due(fake_redis, rq_redis, eight_utc, timezone.utc, GRACE) == []
    [(_, slot)] = reminders.send_due(fake_redis, rq_redis, eight_utc, PARIS, GRACE)
    assert slot == at("09:00")


def test_each_reminder_has_its_own_time_zone(fake_redis, rq_redis):
    """09:00 in Paris and 09:00 in New York: two UTC instants, six hours apart; the
    reminder without a zone of its own follows the default (UTC here)."""
    for zone in ("Europe/Paris", "America/New_York", ""):
        reminders.add_reminder(fake_redis, reminders.validate(
            zone or "default", ["4153518780"], "09:00", timezone=zone), now=LONG_AGO)
    sent = {}
    now = datetime(2026, 11, 23, tzinfo=timezone.utc)
    while now < datetime(2026, 11, 24, tzinfo=timezone.utc):
        for reminder, slot in reminders.send_due(fake_redis, rq_redis, now, timezone.utc, GRACE):
            sent[reminder.message] = (now.strftime("%H:%M"), slot.isoformat())
        now += timedelta(minutes=1)
    assert sent == {"Europe/Paris": ("08:00", "2026-11-23T09:00:00+01:00"),
                    "America/New_York": ("14:00", "2026-11-23T09:00:00-05:00"),
                    "default": ("09:00", "2026-11-23T09:00:00+00:00")}


def test_the_next_send_is_in_the_reminders_zone():
    reminder = reminders.Reminder("1", "hi", ("+14153518780",), ("09:00",),
                                  timezone="America/New_York")
    upcoming = reminders.next_slot(reminder, datetime(2026, 11, 23, 13, 0, tzinfo=timezone.utc),
                                   PARIS)
    assert upcoming.isoformat() == "2026-11-23T09:00:00-05:00"


def test_local_time_is_the_default(monkeypatch):
    monkeypatch.delenv("REMINDER_TIMEZONE", raising=False)
    assert settings.timezone() is None
    reminder = reminders.Reminder("1", "hi", ("+14153518780",), ("09:00",))
    local_nine = datetime(2026, 11, 23, 9, 0).astimezone()  # 09:00 in this machine's zone
    assert reminders.due_slots(reminder, local_nine, None, GRACE) == [local_nine]
    monkeypatch.setenv("REMINDER_TIMEZONE", "Europe/Paris")
    assert settings.timezone() == PARIS
    monkeypatch.setenv("REMINDER_TIMEZONE", "Mars/Olympus")
    with pytest.raises(settings.ConfigError, match="REMINDER_TIMEZONE"):
        settings.timezone()


def test_a_late_tick_still_sends_within_the_grace_and_never_twice(fake_redis, rq_redis):
    add(fake_redis, times="09:00")
    assert reminders.send_due(fake_redis, rq_redis, at("08:59"), PARIS, GRACE) == []
    assert len(reminders.send_due(fake_redis, rq_redis, at("09:07"), PARIS, GRACE)) == 1
    assert reminders.send_due(fake_redis, rq_redis, at("09:08"), PARIS, GRACE) == []
    assert reminders.send_due(fake_redis, rq_redis, at("09:10"), PARIS, GRACE) == []
    assert len(sms(rq_redis)) == 1


def test_a_tick_after_the_grace_skips_the_slot(fake_redis, rq_redis):
    add(fake_redis, times="09:00")
    assert reminders.send_due(fake_redis, rq_redis, at("09:10"), PARIS, GRACE) == []


def test_a_slot_before_the_reminder_was_added_is_not_sent(fake_redis, rq_redis):
    add(fake_redis, times="09:00", created_at=at("09:03").timestamp())
    assert reminders.send_due(fake_redis, rq_redis, at("09:05"), PARIS, GRACE) == []
    # ...but one added during the slot's minute is
    add(fake_redis, times="09:00", created_at=at("09:00").timestamp() + 30)
    assert len(reminders.send_due(fake_redis, rq_redis, at("09:01"), PARIS, GRACE)) == 1


def test_every_recipient_gets_the_text(fake_redis, rq_redis):
    add(fake_redis, "Stand up", ["4153518780", "+14155550100"], "09:00")
    reminders.send_due(fake_redis, rq_redis, at("09:00"), PARIS, GRACE)
    assert sms(rq_redis) == [["+14153518780", "Stand up"], ["+14155550100", "Stand up"]]


def test_a_removed_reminder_is_not_sent(fake_redis, rq_redis):
    reminder = add(fake_redis, times="09:00")
    reminders.remove_reminder(fake_redis, reminder.id)
    assert reminders.send_due(fake_redis, rq_redis, at("09:00"), PARIS, GRACE) == []


def test_two_schedulers_ticking_at_once_send_once(fake_redis, rq_redis):
    add(fake_redis, times="09:00,12:00")
    barrier = threading.Barrier(6)

    def scheduler(now):
        barrier.wait()
        reminders.send_due(fake_redis, rq_redis, now, PARIS, GRACE)

    threads = [threading.Thread(target=scheduler, args=(now,))
               for now in [at("09:00")] * 3 + [at("09:01")] * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sms(rq_redis)) == 1


def test_two_schedulers_ticking_at_once_on_real_redis_send_once(real_redis, redis_url):
    """Six ticks released together by a barrier, each with its own connections."""
    from queuing.connection import rq_client

    add(real_redis, phones=["4153518780", "4155550100"], times="09:00")
    barrier = threading.Barrier(6)
    results = []

    def scheduler(now):
        connection = redis.Redis.from_url(redis_url, decode_responses=True)
        rq_connection = rq_client(redis_url)
        try:
            barrier.wait(timeout=10)
            results.append(reminders.send_due(connection, rq_connection, now, PARIS, GRACE))
        finally:
            connection.close()
            rq_connection.close()

    threads = [threading.Thread(target=scheduler, args=(now,))
               for now in [at("09:00")] * 3 + [at("09:05")] * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 6
    assert sorted(len(sent) for sent in results) == [0, 0, 0, 0, 0, 1]
    assert real_redis.llen(f"rq:queue:{SMS_QUEUE}") == 2  # one SMS per recipient


def test_next_slot_for_the_list():
    reminder = reminders.Reminder("1", "hi", ("+14153518780",), ("09:00", "22:00"))
    assert reminders.next_slot(reminder, at("10:00"), PARIS) == at("22:00")
    assert reminders.next_slot(reminder, at("22:00"), PARIS) == at("09:00", day=24)


def test_the_tick_job_reads_its_configuration(monkeypatch, redis_url, real_redis):
    """The job RQ's cron queues: real Redis, REDIS_URL from the environment."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REMINDER_TIMEZONE", "UTC")
    now = datetime.now(timezone.utc)
    add(real_redis, times=now.strftime("%H:%M"))
    assert reminders.tick() == 1
    assert reminders.tick() == 0
    assert real_redis.llen(f"rq:queue:{SMS_QUEUE}") == 1


def test_the_scheduler_loop_queues_ticks_and_stops_on_its_flag(rq_redis):
    from rq import Queue
    from rq.cron import CronScheduler

    from queuing.constants import REMINDERS_TICK_QUEUE
    from tests.processes import load_script

    scheduler_script = load_script("104_scheduler")
    scheduler = CronScheduler(connection=rq_redis)
    scheduler.register(reminders.tick, queue_name=REMINDERS_TICK_QUEUE, interval=1)
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    scheduler_script.run(scheduler, stop)  # returns once stop is set
    ticks = Queue(REMINDERS_TICK_QUEUE, connection=rq_redis).get_jobs()
    assert len(ticks) == 2  # at once, then a second later
    assert {job.func_name for job in ticks} == {"queuing.reminders.tick"}
    assert CronScheduler.all(rq_redis) == []  # its death was registered


@pytest.mark.parametrize("day", [datetime(2026, 3, 29), datetime(2026, 10, 25)],
                         ids=["clocks-go-forward", "clocks-go-back"])
def test_daylight_saving_days_still_send_each_time_once(fake_redis, rq_redis, day):
    add(fake_redis)
    start = day.replace(tzinfo=PARIS)
    sent = []
    for minute in range(25 * 60):  # a 23- or 25-hour day, one tick a minute, in UTC steps
        now = start.astimezone(timezone.utc) + timedelta(minutes=minute)
        sent += [slot.strftime("%H:%M")
                 for _, slot in reminders.send_due(fake_redis, rq_redis, now, PARIS, GRACE)
                 if slot.date() == day.date()]
    assert sent == ["09:00", "12:00", "18:00", "22:00"]


def test_the_list_shows_a_slot_due_now_and_not_yet_sent_as_next(fake_redis, rq_redis):
    """Added at 09:00:30 for 09:00: the next tick sends it today, not tomorrow."""
    reminder = add(fake_redis, times="09:00,22:00", created_at=at("09:00").timestamp() + 30)
    now = at("09:00") + timedelta(seconds=40)
    assert reminders.upcoming_send(fake_redis, reminder, now, PARIS, GRACE) == at("09:00")
    reminders.send_due(fake_redis, rq_redis, at("09:01"), PARIS, GRACE)
    assert reminders.upcoming_send(fake_redis, reminder, at("09:01"), PARIS, GRACE) == at("22:00")
