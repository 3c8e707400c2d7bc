"""Task 12: the products, their stock in Redis, and the Flask app that reserves them.

``item.ITEM_ID`` holds the quantity still available (what the course calls the
"reserved stock", which starts equal to ``initialAvailableQuantity``). Each server
writes the keys that are missing (SET NX) when it starts, or at its first request if
Redis was away then. Reserving is one Lua script (lua/reserve_one.lua), so concurrent
requests, from one process or many, never sell more than there is (a GET then a SET
would).

What a reservation promises (README, "Guarantees"):

- A retried reservation takes no second unit: each request has an id, and the script
  keeps the request's outcome, so redis-py running it again after a timeout (while
  the first run still waits behind a stalled Redis) gets the first outcome.
- A 503 after a stall took nothing: the script takes a unit only before the request's
  deadline, which ends before the client's first timeout (:func:`deadline_ms`). This
  compares the app's clock with Redis's (``TIME``): they must agree within about a
  second (NTP).
- Lost data sells nothing: when Redis lost the stock keys (restarted without
  persistence, flushed) while servers ran, reservations and a product's detail answer
  503 until a server is restarted, which writes the full stock again (a new sale):
  a missing key no longer reads as "nothing sold yet".
"""

from __future__ import annotations

import contextlib
import time
import uuid
from functools import partial
from pathlib import Path
from typing import TypedDict

import redis
from flask import Flask, abort

from queuing import connection, replication, web
from queuing.constants import STOCK_KEY


class Product(TypedDict):
    itemId: int
    itemName: str
    price: int
    initialAvailableQuantity: int


LIST_PRODUCTS: list[Product] = [
    {"itemId": 1, "itemName": "Suitcase 250", "price": 50, "initialAvailableQuantity": 4},
    {"itemId": 2, "itemName": "Suitcase 450", "price": 100, "initialAvailableQuantity": 10},
    {"itemId": 3, "itemName": "Suitcase 650", "price": 350, "initialAvailableQuantity": 2},
    {"itemId": 4, "itemName": "Suitcase 1050", "price": 550, "initialAvailableQuantity": 5},
]
# Looked up by the id's exact text: "abc", "-1", "1.5", "01" or 10**30 are simply not there.
_BY_ID = {str(product["itemId"]): product for product in LIST_PRODUCTS}
# What never changes is rendered once: the list, and each product's detail up to its
# current quantity ('{"itemId":1,...,"initialAvailableQuantity":4,"currentQuantity":').
_LIST_BODY = web.dumps(LIST_PRODUCTS)
_DETAIL_HEAD = {product["itemId"]: web.dumps(product)[:-1] + ',"currentQuantity":'
                for product in LIST_PRODUCTS}

RESERVE_ONE_LUA = (Path(__file__).parent / "lua" / "reserve_one.lua").read_text()
# One reservation request's outcome, kept until a while after its deadline.
RESERVATION_KEY = "queuing:reservation:{request_id}"
RESERVATION_KEEP_MS = 60_000  # longer than any retry of the request (3 x socket timeout)
NONE_LEFT, TOO_LATE, STOCK_GONE = -1, -2, -3
TOO_LATE_REASON = "Redis did not answer in time"
STOCK_GONE_REASON = "The stock is not in Redis (Redis lost its data?)"


def get_item_by_id(item_id: int | str) -> Product | None:
    return _BY_ID.get(str(item_id))


def stock_key(item_id: int) -> str:
    return STOCK_KEY.format(item_id=item_id)


def reserve_stock_by_id(client: redis.Redis, item_id: int, stock: int) -> None:
    """Set the quantity left for an item (the course's function; the routes use reserve_one)."""
    client.set(stock_key(item_id), stock)


def get_current_reserved_stock_by_id(client: redis.Redis, item_id: int) -> int:
    """The quantity left; the initial quantity while nothing was reserved."""
    value = client.get(stock_key(item_id))
    return int(value) if value is not None else _BY_ID[str(item_id)]["initialAvailableQuantity"]


class Stock:
    """The stock keys of one server process: written once (SET NX), then read and taken."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.reads = web.KeptGet(client)  # the hot GET's own connections
        self.written = False

    def write_missing(self) -> None:
        """Write every product's key that is missing, once per process."""
        if self.written:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for product in LIST_PRODUCTS:
                pipe.set(stock_key(product["itemId"]), product["initialAvailableQuantity"],
                         nx=True)
            pipe.execute()
        self.written = True

    def detail_body(self, product: Product) -> str:
        """The body of ``GET /list_products/<id>``: the product and its current quantity."""
        self.write_missing()
        current = self.reads.get(stock_key(product["itemId"]))
        if current is None:
            raise web.Unavailable(STOCK_GONE_REASON)
        return f"{_DETAIL_HEAD[product['itemId']]}{current}}}"

    def reserve_one(self, product: Product, request_id: str | None = None) -> bool:
        """Take one unit atomically; False when none is left. ``request_id``: the same
        id takes at most one unit, however often it runs (default: a new one).

        In the replicated mode (``REDIS_MIN_REPLICAS``) a unit taken is confirmed only
        once the required replicas have it; else web.Unavailable (503). The unit was then
        taken on the master: if the master fails over to a replica without it, the unit
        is back in stock; if not, it stays taken and is sold to no one. Either way no
        unit is sold twice, and none is confirmed that a failover can give back.
        """
        self.write_missing()
        outcome_key = RESERVATION_KEY.format(request_id=request_id or uuid.uuid4().hex)
        left = int(self.client.eval(
            RESERVE_ONE_LUA, 2, stock_key(product["itemId"]), outcome_key,
            deadline_ms(self.client), RESERVATION_KEEP_MS))
        if left == TOO_LATE:
            raise web.Unavailable(TOO_LATE_REASON)
        if left == STOCK_GONE:
            raise web.Unavailable(STOCK_GONE_REASON)
        if left >= 0:
            replication.confirm_or_unavailable(self.client, "Reservation",
                                               written=[outcome_key])
        return left >= 0


def deadline_ms(client: redis.Redis) -> int:
    """When a reservation sent now must have run, in ms since the epoch: a second (half,
    for a timeout under 2 s) before ``client`` gives up waiting and retries, so no run
    of a request the server answered 503 can take a unit, given clocks within a second."""
    timeout = connection.socket_timeout(client)
    return int((time.time() + max(timeout - 1, timeout / 2)) * 1000)


def create_app(client: redis.Redis | None = None) -> Flask:
    """The stock server; tests pass a fakeredis client, otherwise REDIS_URL is used."""
    app = web.new_app(__name__)
    if client is None:
        client = connection.server_client()
        connection.check_server_accepts(client)
    replication.check_settings(client)
    stock = Stock(client)
    with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
        stock.write_missing()  # else at the first request that reaches Redis

    def product_or_404(item_id: str) -> Product:
        product = get_item_by_id(item_id)
        if product is None:
            abort(404, "Product not found")
        return product

    @app.get("/list_products")
    def list_products():
        return web.json_text_response(_LIST_BODY)

    @app.get("/list_products/<item_id>")
    def product_detail(item_id: str):
        product = product_or_404(item_id)
        return web.json_text_response(stock.detail_body(product))

    @app.get("/reserve_product/<item_id>")
    def reserve_product(item_id: str):
        web.refuse_head()
        product = product_or_404(item_id)
        if not stock.reserve_one(product):
            return web.json_response(
                {"status": "Not enough stock available", "itemId": product["itemId"]})
        return web.json_response({"status": "Reservation confirmed", "itemId": product["itemId"]})

    # The same bodies for a product's GET, without Flask's per-request cost (web.HotReads).
    app.wsgi_app = web.HotReads(app.wsgi_app, {
        web.path_of(app, "product_detail", item_id=product["itemId"]):
            partial(stock.detail_body, product)
        for product in LIST_PRODUCTS})
    return app
