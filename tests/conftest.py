"""Fixtures per resource: a fake Redis for unit tests, a real throwaway one for the rest.

Real-Redis tests never touch a server they did not start. They start their own
redis-server on a free port; a run may instead be handed one with TEST_REDIS_URL
(it will be flushed between tests, so never point it at data you care about).
When CI=true and no server can be had, those tests fail instead of skipping.
"""

from __future__ import annotations

import os

import fakeredis
import pytest
import redis

from queuing import local_redis, settings
from queuing.local_redis import RedisServer, RedisServerNotFound
from tests.processes import skip_unless_ci

# Job functions the tests enqueue besides the project's own; workers run no others
# (untrusted_jobs.py). The tests' scripts inherit the setting through their environment.
TEST_JOB_FUNCTIONS = ("time.sleep", "builtins.len", "builtins.int",
                      "tests.fault_jobs.held_notification",
                      "tests.fault_jobs.file_held_notification",
                      "tests.fault_jobs.slow_notification",
                      "tests.fault_jobs.taken_back_notification",
                      "tests.test_lean_worker.snapshot_redis")


@pytest.fixture(autouse=True)
def _allow_test_job_functions(monkeypatch) -> None:
    monkeypatch.setenv(settings.EXTRA_JOB_FUNCTIONS_ENV, ",".join(TEST_JOB_FUNCTIONS))


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def fake_redis(fake_server) -> fakeredis.FakeRedis:
    """A fake client that answers with str, like queuing.connection.connect()."""
    return fakeredis.FakeRedis(server=fake_server, decode_responses=True)


# Below the kernel's own range for client sockets (32768 and up on Linux).
PORTS = range(20000, 32768)


@pytest.fixture(scope="session", autouse=True)
def _ports_of_this_worker() -> None:
    """Each pytest-xdist worker (and what it starts) takes its ports from a range of its
    own (local_redis.FREE_PORT_RANGE), so two tests running at once never share a port."""
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    size = len(PORTS) // max(count, 1)
    low = PORTS.start + index * size
    os.environ[local_redis.PORT_RANGE_ENV] = f"{low}-{low + size - 1}"


@pytest.fixture(scope="session")
def _session_redis_url(_ports_of_this_worker):
    given = os.environ.get("TEST_REDIS_URL")
    if given:
        yield given
        return
    try:
        server = RedisServer().start()
    except (RedisServerNotFound, RuntimeError) as error:
        skip_unless_ci(str(error))
    yield server.url
    server.close()


@pytest.fixture
def redis_url(_session_redis_url) -> str:
    """The URL of a real Redis the tests own, emptied before each test."""
    client = redis.Redis.from_url(_session_redis_url)
    client.flushall()
    client.close()
    return _session_redis_url


@pytest.fixture
def real_redis(redis_url) -> redis.Redis:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def redis_server():
    """A real redis-server of this test's own, to stop, restart or load files into."""
    try:
        server = RedisServer()
    except RedisServerNotFound as error:
        skip_unless_ci(str(error))
    yield server
    server.close()


class Clock:
    """A clock a test sets and moves: the web app's CLOCK (store.now)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake_rq_redis(fake_server) -> fakeredis.FakeRedis:
    """A fake client that answers bytes, as RQ needs, on the same data as fake_redis."""
    return fakeredis.FakeRedis(server=fake_server)


@pytest.fixture
def app(fake_redis, fake_rq_redis, clock):
    """The web app (webapp.py) on fakeredis, with a clock the test moves."""
    from queuing import webapp

    return webapp.create_app({"REDIS": fake_redis, "RQ_REDIS": fake_rq_redis, "CLOCK": clock})


@pytest.fixture
def client(app):
    return app.test_client()


JANE = {"firstName": "Jane", "lastName": "Dreamer", "phone": "4158675309",
        "password": "password", "tosAgreement": True}
JOHN = {"firstName": "John", "lastName": "Doe", "phone": "4153518780",
        "password": "drowssap1", "tosAgreement": True}


def sign_up_and_in(client, user: dict) -> dict[str, str]:
    """Create ``user`` through the API and sign in: the headers of its requests."""
    assert client.post("/users", json=user).status_code == 201
    answer = client.post("/tokens", json={"phone": user["phone"], "password": user["password"]})
    assert answer.status_code == 201, answer.data
    return {"token": answer.get_json()["id"]}


@pytest.fixture
def user_headers(client) -> dict[str, str]:
    """Jane Dreamer (the seed's user, 4158675309 / password) signed in: {"token": id}."""
    return sign_up_and_in(client, JANE)


@pytest.fixture
def other_user_headers(client) -> dict[str, str]:
    """A second user, John Doe (4153518780), signed in."""
    return sign_up_and_in(client, JOHN)


@pytest.fixture
def running() -> list:
    """Servers a test starts (tests.servers.Server): each is killed when the test ends."""
    servers: list = []
    yield servers
    for server in servers:
        server.kill()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses a real redis-server (one of the fixtures above) is marked
    ``redis_server``: ``pytest -m 'not redis_server'`` runs the fakeredis tests alone."""
    for item in items:
        if {"_session_redis_url", "redis_server", "sentinel_rig"} & set(
                getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis_server)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test that runs job workers, once with the lean worker and once with RQ's own
    code (LEAN_WORKER on and off; the scripts it starts inherit the setting): the tests
    marked ``job_workers``."""
    if ("_lean_worker_setting" in metafunc.fixturenames
            and metafunc.definition.get_closest_marker("job_workers")):
        metafunc.parametrize("_lean_worker_setting", ["on", "off"], indirect=True,
                             ids=["lean", "rq"])


@pytest.fixture(autouse=True)
def _lean_worker_setting(request, monkeypatch) -> None:
    setting = getattr(request, "param", None)
    if setting is not None:
        monkeypatch.setenv(settings.LEAN_WORKER_ENV, setting)
