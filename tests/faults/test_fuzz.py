"""Bad input, fuzzed with hypothesis: every HTTP answer of both servers is JSON
with a 2xx, 4xx or 503 status, whatever the path, method and headers; any job payload
fails its job with a one-line reason, and the worker goes on. Each test prints how many
inputs it tried (``pytest -rP``)."""

from __future__ import annotations

import json
import re
import zlib
from urllib.parse import quote

import fakeredis
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rq.serializers import JSONSerializer

from queuing import jobs, notifications, recovering_worker, seats, stock
from queuing.constants import PUSH_NOTIFICATION_QUEUE_2, RESERVATION_ENABLED_KEY
from queuing.job_batch import JobBatch
from queuing.job_events import COMPLETED, FAILED

HTTP_EXAMPLES = 400
JOB_EXAMPLES = 150
FUZZ = settings(max_examples=HTTP_EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

ROUTE_WORDS = ["list_products", "reserve_product", "available_seats", "reserve_seat",
               "process", "1", "2", "4", "0", "-1", "01", "1.5", "99999999999999999999",
               "", ".", "..", "%00", "%2F"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"]
TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
                min_size=1, max_size=20)
HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                              blacklist_characters="\x7f"), max_size=60)


@st.composite
def http_requests(draw) -> tuple[str, str, dict[str, str]]:
    """(method, path with query, headers): course routes, odd ids, any text at all."""
    segments = draw(st.lists(st.one_of(st.sampled_from(ROUTE_WORDS), st.text(max_size=12)),
                             min_size=0, max_size=4))
    path = "/" + "/".join(quote(segment, safe="") for segment in segments)
    if path.startswith("//"):  # the test client would read it as a host name
        path = "/." + path[1:]
    if draw(st.booleans()):
        path += "?" + quote(draw(st.text(max_size=20)), safe="=&")
    method = draw(st.one_of(st.sampled_from(METHODS), TOKEN.map(str.upper)))
    headers = draw(st.dictionaries(TOKEN, HEADER_VALUE, max_size=4))
    return method, path, headers


class NoThread:
    """The seat server's processor, without its worker thread."""

    def start(self) -> bool:
        return True


def seat_app(fake_redis, rq_redis):
    seats.reserve_seat(fake_redis, 50)
    fake_redis.set(RESERVATION_ENABLED_KEY, "1")
    return seats.create_app(fake_redis, rq_redis, processor=NoThread(), join_sale=False)


@pytest.mark.parametrize("server", ["stock", "seats"])
@pytest.mark.parametrize("redis_up", [True, False], ids=["redis up", "redis down"])
def test_every_answer_is_json_and_never_a_500(server, redis_up, fake_server, fake_redis):
    rq_redis = fakeredis.FakeRedis(server=fake_server)
    app = stock.create_app(fake_redis) if server == "stock" else seat_app(fake_redis, rq_redis)
    fake_server.connected = redis_up
    client = app.test_client()
    tried = []

    @FUZZ
    @given(request=http_requests())
    @example(request=("OPTIONS", "/list_products", {}))  # Flask's own answer is HTML
    @example(request=("GET", "/list_products//1", {}))  # Werkzeug's is an HTML redirect
    @example(request=("OPTIONS", "/available_seats", {}))
    def check(request):
        method, path, headers = request
        tried.append(request)
        response = client.open(path, method=method, headers=headers)
        assert response.status_code < 500 or response.status_code == 503, (request, response)
        assert response.mimetype == "application/json", (request, response)
        if method != "HEAD":
            json.loads(response.get_data())

    check()
    print(f"fuzz http {server}, redis {'up' if redis_up else 'down'}: {len(tried)} inputs")


# --- Job payloads -----------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["phoneNumber", "message", "x"]) | st.text(max_size=8),
                      children, max_size=4),
    max_leaves=12)
PAYLOADS = st.one_of(
    JSON_VALUES.map(lambda value: ("json", value)),
    st.fixed_dictionaries({"phoneNumber": JSON_VALUES, "message": JSON_VALUES})
    .map(lambda value: ("json", value)),
    st.binary(max_size=40).map(lambda raw: ("raw", raw)),  # bytes that are not JSON at all
)
# What a creator may print after "failed: ": the reason, in one line, never a stray error.
CLEAR_REASON = re.compile(
    r"job data (must be an object with phoneNumber and message, not .+|has no phoneNumber"
    r"|has no message|cannot be read \(not valid JSON\))"
    r"|(phoneNumber|message) must be a string, not (an object|an array|a number|a boolean|null)"
    r"|Phone number 415351878[01] is blacklisted"
    r"|Invalid phone number .*: use E\.164 \(\+14153518780\) or 10 US digits \(4153518780\)")
GOOD = {"phoneNumber": "4153518743", "message": "This is the code 4321 to verify your account"}


def test_any_job_payload_fails_with_a_reason_and_the_worker_goes_on(fake_server):
    connection = fakeredis.FakeRedis(server=fake_server)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    tried = []

    @settings(max_examples=JOB_EXAMPLES, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(payloads=st.lists(PAYLOADS, min_size=1, max_size=4))
    def check(payloads):
        tried.extend(payloads)
        with JobBatch(queue) as batch:
            for number, (kind, payload) in enumerate(payloads):
                job = batch.add(notifications.push_tracked_notification,
                                payload if kind == "json" else None, job_id=f"j{number}")
                if kind == "raw":  # overwrite the job's data with bytes that are no JSON
                    connection.hset(job.key, "data", zlib.compress(payload))
            last = batch.add(notifications.push_tracked_notification, GOOD, job_id="good")
            recovering_worker.RecoveringWorker([queue], connection=connection,
                                      serializer=JSONSerializer).work(burst=True)
            finals = {event.job_id: event for event in batch.events(block_ms=100)
                      if event.is_final}
        assert set(finals) == set(batch.job_ids)
        assert finals[last.id].kind == COMPLETED  # the worker went on
        for event in finals.values():
            if event.kind == FAILED:
                assert CLEAR_REASON.fullmatch(event.error), event.error
        connection.flushall()

    check()
    print(f"fuzz job payloads: {len(tried)} payloads")
