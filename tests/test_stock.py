"""Task 12 on fakeredis: every route and body of the course, byte for byte."""

import pytest

from queuing import stock

LIST_PRODUCTS = (
    b'[{"itemId":1,"itemName":"Suitcase 250","price":50,"initialAvailableQuantity":4},'
    b'{"itemId":2,"itemName":"Suitcase 450","price":100,"initialAvailableQuantity":10},'
    b'{"itemId":3,"itemName":"Suitcase 650","price":350,"initialAvailableQuantity":2},'
    b'{"itemId":4,"itemName":"Suitcase 1050","price":550,"initialAvailableQuantity":5}]'
)
PRODUCT_1 = (b'{"itemId":1,"itemName":"Suitcase 250","price":50,"initialAvailableQuantity":4,'
             b'"currentQuantity":4}')
NOT_FOUND = b'{"status":"Product not found"}'
BAD_IDS = ["12", "0", "abc", "-1", "1.5", "01", "+1", "%201", str(10**30), "\u0661"]


@pytest.fixture
def client(fake_redis):
    return stock.create_app(fake_redis).test_client()


@pytest.mark.parametrize(("path", "status", "body"), [
    ("/list_products", 200, LIST_PRODUCTS),
    ("/list_products/1", 200, PRODUCT_1),
    ("/list_products/12", 404, NOT_FOUND),
    ("/reserve_product/12", 404, NOT_FOUND),
    ("/reserve_product/1", 200, b'{"status":"Reservation confirmed","itemId":1}'),
    ("/no_such_route", 404, b'{"status":"Not Found"}'),
    ("/list_products/1/2", 404, b'{"status":"Not Found"}'),
])
def test_course_bodies(client, path, status, body):
    response = client.get(path)
    assert (response.status_code, response.data) == (status, body)
    assert response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("item_id", BAD_IDS)
@pytest.mark.parametrize("route", ["/list_products/", "/reserve_product/"])
def test_ids_that_are_not_a_product(client, fake_redis, route, item_id):
    before = {key: fake_redis.get(key) for key in fake_redis.keys("*")}
    response = client.get(route + item_id)
    assert (response.status_code, response.data) == (404, NOT_FOUND)
    assert {key: fake_redis.get(key) for key in fake_redis.keys("*")} == before


def test_reserve_until_out_of_stock(client):
    answers = [client.get("/reserve_product/3").data for _ in range(3)]
    assert answers == [b'{"status":"Reservation confirmed","itemId":3}'] * 2 + [
        b'{"status":"Not enough stock available","itemId":3}']
    assert client.get("/list_products/3").data == (
        b'{"itemId":3,"itemName":"Suitcase 650","price":350,"initialAvailableQuantity":2,'
        b'"currentQuantity":0}')


def test_item_key_holds_the_quantity_left(client, fake_redis):
    assert stock.get_current_reserved_stock_by_id(fake_redis, 2) == 10
    client.get("/reserve_product/2")
    assert fake_redis.get("item.2") == "9"
    stock.reserve_stock_by_id(fake_redis, 2, 1)
    assert client.get("/list_products/2").data.endswith(b'"currentQuantity":1}')
    assert client.get("/reserve_product/2").data == (
        b'{"status":"Reservation confirmed","itemId":2}')
    assert client.get("/reserve_product/2").data == (
        b'{"status":"Not enough stock available","itemId":2}')


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_wrong_method_is_json_405(client, method):
    response = getattr(client, method)("/reserve_product/1")
    assert (response.status_code, response.data) == (405, b'{"status":"Method Not Allowed"}')
    assert response.headers["Content-Type"] == "application/json"
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize("path", ["/list_products/1", "/reserve_product/1"])
def test_redis_down_is_json_503(fake_server, fake_redis, path):
    client = stock.create_app(fake_redis).test_client()
    fake_server.connected = False
    response = client.get(path)
    assert response.status_code == 503
    assert response.data == b'{"status":"Service Unavailable","reason":"Redis is not reachable"}'
    assert response.headers["Content-Type"] == "application/json"
    fake_server.connected = True
    assert client.get(path).status_code == 200


def test_list_products_needs_no_redis(fake_server, fake_redis):
    fake_server.connected = False
    assert stock.create_app(fake_redis).test_client().get("/list_products").data == LIST_PRODUCTS


def test_unexpected_error_is_json_500_without_detail(fake_redis):
    fake_redis.delete("item.1")
    fake_redis.rpush("item.1", "not a number")  # WRONGTYPE for GET
    response = stock.create_app(fake_redis).test_client().get("/list_products/1")
    assert (response.status_code, response.data) == (500, b'{"status":"Internal Server Error"}')


def test_flask_debug_in_the_environment_does_not_turn_debug_on(monkeypatch, fake_redis):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = stock.create_app(fake_redis)
    fake_redis.delete("item.1")
    fake_redis.rpush("item.1", "not a number")
    response = app.test_client().get("/list_products/1")
    assert not app.debug
    assert (response.status_code, response.data) == (500, b'{"status":"Internal Server Error"}')


@pytest.mark.parametrize(("value", "port"), [(None, 1245), ("", 1245), ("5000", 5000)])
def test_port_comes_from_the_environment(monkeypatch, value, port):
    from queuing import settings

    if value is None:
        monkeypatch.delenv("PORT", raising=False)
    else:
        monkeypatch.setenv("PORT", value)
    assert settings.port() == port


STOCK_GONE = (b'{"status":"Service Unavailable",'
              b'"reason":"The stock is not in Redis (Redis lost its data?)"}')


def test_a_server_writes_the_full_stock_when_it_starts(fake_redis):
    fake_redis.set("item.2", 3)  # another server sold 7 already
    stock.create_app(fake_redis)
    assert {key: fake_redis.get(key) for key in fake_redis.keys("*")} == {
        "item.1": "4", "item.2": "3", "item.3": "2", "item.4": "5"}


def test_a_server_started_while_redis_was_away_writes_the_stock_at_its_first_request(
        fake_server, fake_redis):
    fake_server.connected = False
    client = stock.create_app(fake_redis).test_client()
    assert client.get("/reserve_product/1").status_code == 503
    fake_server.connected = True
    assert client.get("/reserve_product/1").data == (
        b'{"status":"Reservation confirmed","itemId":1}')
    assert fake_redis.get("item.1") == "3"


@pytest.mark.parametrize("path", ["/reserve_product/1", "/list_products/1"])
def test_stock_lost_by_redis_is_not_sold_again(client, fake_redis, path):
    """4 units sold, then Redis loses its data; a missing key used to
    read as the full stock, and 4 more were confirmed."""
    for _ in range(4):
        client.get("/reserve_product/1")
    fake_redis.flushall()
    answers = [client.get(path) for _ in range(4)]
    assert {(answer.status_code, answer.data) for answer in answers} == {(503, STOCK_GONE)}
    assert fake_redis.get("item.1") is None


def test_the_same_request_takes_one_unit_however_often_it_runs(fake_redis):
    """redis-py runs the script again after a timeout."""
    product = stock.get_item_by_id(1)
    shop = stock.Stock(fake_redis)
    assert [shop.reserve_one(product, request_id="r1") for _ in range(3)] == [True] * 3
    assert fake_redis.get("item.1") == "3"
    assert shop.reserve_one(product, request_id="r2")
    assert fake_redis.get("item.1") == "2"


def test_a_reservation_run_after_its_deadline_takes_nothing(fake_redis, monkeypatch):
    """What a stalled Redis runs after the server stopped waiting takes no unit."""
    shop = stock.Stock(fake_redis)
    monkeypatch.setattr(stock, "deadline_ms", lambda client: 1_000)  # 1970
    with pytest.raises(stock.web.Unavailable, match="did not answer in time"):
        shop.reserve_one(stock.get_item_by_id(1))
    assert fake_redis.get("item.1") == "4"


@pytest.mark.parametrize("path", ["/reserve_product/1", "/reserve_product/12"])
def test_head_of_a_reservation_reserves_nothing(client, fake_redis, path):
    """Flask answers HEAD with the GET view, which would reserve a unit."""
    response = client.head(path)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert response.headers["Content-Type"] == "application/json"
    assert fake_redis.get("item.1") == "4"
    assert client.get("/reserve_product/1").status_code == 200


def test_head_of_a_product_still_answers(client):
    response = client.head("/list_products/1")
    assert response.status_code == 200
