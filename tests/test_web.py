"""web.HotReads answers the hot GETs without Flask: the same status, headers and bytes as
the Flask routes behind it, with Redis up, down or returning an error (fakeredis)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import fakeredis
import pytest
import redis
from werkzeug.test import Client

from queuing import connection, seats, stock, web

HOT_PATHS = {"stock": ["/list_products/1", "/list_products/2", "/list_products/3",
                       "/list_products/4"],
             "seats": ["/available_seats"]}


class NoThread:
    def start(self) -> bool:
        return True


def make_app(server: str, fake_server, fake_redis):
    if server == "stock":
        return stock.create_app(fake_redis)
    seats.reserve_seat(fake_redis, 50)
    return seats.create_app(fake_redis, fakeredis.FakeRedis(server=fake_server),
                            processor=NoThread(), join_sale=False)


def answer(wsgi_app, path: str, method: str = "GET") -> tuple[str, list, bytes]:
    response = Client(wsgi_app).open(path, method=method)
    return response.status, response.headers.to_wsgi_list(), response.get_data()


def both(app, path: str, method: str = "GET"):
    """(through HotReads, straight to Flask)."""
    assert isinstance(app.wsgi_app, web.HotReads)
    return answer(app.wsgi_app, path, method), answer(app.wsgi_app.wsgi_app, path, method)


@pytest.mark.parametrize("server", ["stock", "seats"])
def test_hot_paths_answer_what_flask_answers(server, fake_server, fake_redis):
    app = make_app(server, fake_server, fake_redis)
    fake_redis.set("item.2", 7)
    for path in HOT_PATHS[server]:
        hot, flask = both(app, path)
        assert hot == flask
        assert hot[0] == "200 OK"
        assert dict(hot[1])["Content-Type"] == "application/json"
    if server == "stock":
        assert both(app, "/list_products/1")[0][2] == (
            b'{"itemId":1,"itemName":"Suitcase 250","price":50,"initialAvailableQuantity":4,'
            b'"currentQuantity":4}')
        assert both(app, "/list_products/2")[0][2].endswith(b'"currentQuantity":7}')
    else:
        assert both(app, "/available_seats")[0][2] == b'{"numberOfAvailableSeats":"50"}'


@pytest.mark.parametrize("server", ["stock", "seats"])
def test_redis_down_is_the_same_json_503(server, fake_server, fake_redis):
    app = make_app(server, fake_server, fake_redis)
    fake_server.connected = False
    for path in HOT_PATHS[server]:
        hot, flask = both(app, path)
        assert hot == flask
        assert hot[0].startswith("503")
        assert hot[2] == b'{"status":"Service Unavailable","reason":"Redis is not reachable"}'
    fake_server.connected = True
    assert both(app, HOT_PATHS[server][0])[0][0] == "200 OK"


def test_any_other_error_is_flasks_json_500(fake_server, fake_redis):
    app = make_app("stock", fake_server, fake_redis)
    fake_redis.delete("item.1")
    fake_redis.rpush("item.1", "not a number")  # WRONGTYPE for GET
    hot, flask = both(app, "/list_products/1")
    assert hot == flask
    assert (hot[0], hot[2]) == ("500 INTERNAL SERVER ERROR", b'{"status":"Internal Server Error"}')


@pytest.mark.parametrize(("server", "path"), [("stock", "/list_products/1"),
                                              ("seats", "/available_seats")])
@pytest.mark.parametrize("method", ["HEAD", "POST", "OPTIONS"])
def test_other_methods_and_paths_go_to_flask(server, path, method, fake_server, fake_redis):
    app = make_app(server, fake_server, fake_redis)
    assert both(app, path, method)[0] == both(app, path, method)[1]
    for other in (f"{path}/", f"{path}x", "/list_products/01", "/list_products/5"):
        hot, flask = both(app, other)
        assert hot == flask
        assert hot[0].startswith("404")


@pytest.mark.parametrize("server", ["stock", "seats"])
def test_hot_paths_are_made_from_the_flask_routes(server, fake_server, fake_redis):
    """Each hot path is written once, in its Flask route: HotReads' paths are built from it."""
    app = make_app(server, fake_server, fake_redis)
    assert sorted(app.wsgi_app.routes) == HOT_PATHS[server]
    adapter = app.url_map.bind("")
    for path in app.wsgi_app.routes:
        endpoint, _ = adapter.match(path)
        assert app.view_functions[endpoint].__name__ == endpoint


def test_path_of_builds_a_routes_path(fake_server, fake_redis):
    app = make_app("stock", fake_server, fake_redis)
    assert web.path_of(app, "product_detail", item_id=3) == "/list_products/3"
    assert web.path_of(app, "list_products") == "/list_products"


@pytest.mark.parametrize(("policy", "code"), [("exit_at_once", 0), ("interrupt_on_signals", 3)])
def test_the_servers_stop_policies(policy, code):
    """While a server loads, a stop signal ends it at once with 0; once it serves, the
    signal raises KeyboardInterrupt, whose handlers run (werkzeug's loop returns on it)."""
    import subprocess
    import sys

    program = (f"import os, signal, time\nfrom queuing import stopping\nstopping.{policy}()\n"
               "try:\n    os.kill(os.getpid(), signal.SIGTERM)\n    time.sleep(10)\n"
               "except KeyboardInterrupt:\n    raise SystemExit(3)\n")
    result = subprocess.run([sys.executable, "-c", program], timeout=10, capture_output=True)
    assert (result.returncode, result.stderr) == (code, b"")


# -- KeptGet: the hot GETs' own connections, on a real Redis -------------------------------

def test_kept_get_reads_as_the_client_does_and_survives_a_restart(redis_server):
    """A kept connection that Redis closed (a restart) is dropped and the read answered;
    with Redis away the read raises ConnectionError (the servers' 503)."""
    redis_server.start()
    client = connection.server_client(redis_server.url)
    reads = web.KeptGet(client)
    client.set("k", "v")
    assert reads.get("k") == "v" and reads.get("missing") is None
    redis_server.stop()
    with pytest.raises(redis.ConnectionError):
        reads.get("k")
    redis_server.start()  # its kept connections are to the server that stopped
    client.set("k", "again")
    assert reads.get("k") == "again"


def test_kept_get_keeps_a_few_connections_however_many_threads_read(real_redis, redis_url):
    client = connection.server_client(redis_url)
    reads = web.KeptGet(client)
    real_redis.set("k", "v")
    barrier = threading.Barrier(50)

    def read() -> list:
        barrier.wait(timeout=30)
        return [reads.get("k") for _ in range(200)]

    with ThreadPoolExecutor(50) as pool:
        results = [value for done in pool.map(lambda _: read(), range(50)) for value in done]
    assert results == ["v"] * 10_000
    assert reads._made <= web.KEPT_CONNECTIONS


def test_kept_get_stays_usable_after_an_error_reply(real_redis, redis_url):
    reads = web.KeptGet(connection.server_client(redis_url))
    real_redis.rpush("a-list", 1)
    with pytest.raises(redis.ResponseError):  # WRONGTYPE
        reads.get("a-list")
    real_redis.set("k", "v")
    assert reads.get("k") == "v"
