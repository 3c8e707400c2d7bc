"""Tasks 2-5 on fakeredis: the functions the scripts are made of."""

import threading
import time

import fakeredis
import pytest

from tests.processes import load_script

redis_op = load_script("1_redis_op")
redis_op_async = load_script("2_redis_op_async")
advanced_op = load_script("4_redis_advanced_op")
subscriber = load_script("5_subscriber")
publisher = load_script("5_publisher")

SCHOOLS_DICT = ("{'Portland': '50', 'Seattle': '80', 'New York': '20', "
                "'Bogota': '20', 'Cali': '40', 'Paris': '2'}")


def test_set_new_school_prints_the_reply_and_stores_the_value(fake_redis, capsys):
    redis_op.set_new_school(fake_redis, "HolbertonSanFrancisco", "100")
    assert capsys.readouterr().out == "Reply: OK\n"
    assert fake_redis.get("HolbertonSanFrancisco") == "100"


def test_display_school_value(fake_redis, capsys):
    fake_redis.set("Holberton", "School")
    redis_op.display_school_value(fake_redis, "Holberton")
    redis_op.display_school_value(fake_redis, "Nowhere")
    assert capsys.readouterr().out == "School\nNone\n"


async def _async_course_calls(client):
    await redis_op_async.display_school_value(client, "Holberton")
    await redis_op_async.set_new_school(client, "HolbertonSanFrancisco", "100")
    await redis_op_async.display_school_value(client, "HolbertonSanFrancisco")


def test_async_functions_print_the_same_as_the_callback_ones(fake_server, capsys):
    import asyncio

    client = fakeredis.FakeAsyncRedis(server=fake_server, decode_responses=True)
    asyncio.run(client.set("Holberton", "School"))
    asyncio.run(_async_course_calls(client))
    assert capsys.readouterr().out == "School\nReply: OK\n100\n"


def test_store_schools_prints_one_reply_per_hset_and_keeps_the_order(fake_redis, capsys):
    advanced_op.store_schools(fake_redis)
    advanced_op.display_schools(fake_redis)
    assert capsys.readouterr().out == "Reply: 1\n" * 6 + SCHOOLS_DICT + "\n"


def test_store_schools_again_updates_every_field(fake_redis, capsys):
    advanced_op.store_schools(fake_redis)
    capsys.readouterr()
    advanced_op.store_schools(fake_redis)
    assert capsys.readouterr().out == "Reply: 0\n" * 6


def test_subscriber_prints_messages_until_kill_server(fake_redis, capsys):
    pubsub = fake_redis.pubsub()
    subscriber.subscribe(pubsub)
    for message in ["Holberton Student #1 starts course", "KILL_SERVER", "never printed"]:
        fake_redis.publish(subscriber.CHANNEL, message)
    subscriber.listen(pubsub)
    assert capsys.readouterr().out == "Holberton Student #1 starts course\nKILL_SERVER\n"
    assert fake_redis.pubsub_numsub(subscriber.CHANNEL) == [(subscriber.CHANNEL, 0)]


def test_publish_message_waits_then_announces_and_publishes(fake_redis, capsys):
    pubsub = fake_redis.pubsub()
    subscriber.subscribe(pubsub)
    start = time.monotonic()
    publisher.publish_message(fake_redis, "Holberton Student #1 starts course", 100)
    assert time.monotonic() - start >= 0.1
    assert capsys.readouterr().out == "About to send Holberton Student #1 starts course\n"
    message = pubsub.get_message(timeout=1)
    assert message["data"] == "Holberton Student #1 starts course"


def test_publish_message_counts_from_a_shared_start(fake_redis, capsys):
    # As four setTimeouts do in the course: 100 ms and 200 ms after the same start.
    start = time.monotonic()
    publisher.publish_message(fake_redis, "first", 100, since=start)
    publisher.publish_message(fake_redis, "second", 200, since=start)
    assert time.monotonic() - start == pytest.approx(0.2, abs=0.08)


def test_subscriber_and_publisher_in_two_threads(fake_server, capsys):
    listening = fakeredis.FakeRedis(server=fake_server, decode_responses=True)
    pubsub = listening.pubsub()
    subscriber.subscribe(pubsub)
    thread = threading.Thread(target=subscriber.listen, args=(pubsub,))
    thread.start()
    sending = fakeredis.FakeRedis(server=fake_server, decode_responses=True)
    for message, time_ms in publisher.MESSAGES:
        publisher.publish_message(sending, message, time_ms)
    thread.join(timeout=5)
    assert not thread.is_alive()
    out = capsys.readouterr().out.splitlines()
    received = [line for line in out if not line.startswith("About to send")]
    assert received == ["Holberton Student #1 starts course",
                        "Holberton Student #2 starts course", "KILL_SERVER"]
