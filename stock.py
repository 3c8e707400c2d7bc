"""Task 12: the products, their stock in Redis, and the Flask app that reserves them.

``item.ITEM_ID`` holds the quantity still available (what the course calls the
"reserved stock", which starts equal to ``initialAvailableQuantity``). A missing key
means nothing was reserved yet. Reserving is one Lua script, so concurrent requests,
from one process or many, never sell more than there is (a GET then a SET would).
"""

from __future__ import annotations

from functools import partial
from typing import TypedDict

import redis
from flask import Flask, abort

import web
from constants import STOCK_KEY


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

# KEYS[1] = item.ITEM_ID, ARGV[1] = the initial quantity. Returns what is left, or -1.
RESERVE_ONE = """
local left = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if left < 1 then return -1 end
redis.call('SET', KEYS[1], left - 1)
return left - 1
"""


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


def product_detail_body(client: redis.Redis, product: Product) -> str:
    """The body of ``GET /list_products/<id>``: the product and its current quantity."""
    current = get_current_reserved_stock_by_id(client, product["itemId"])
    return f"{_DETAIL_HEAD[product['itemId']]}{current}}}"


def reserve_one(client: redis.Redis, product: Product) -> bool:
    """Take one unit atomically; False when none is left."""
    left = client.eval(RESERVE_ONE, 1, stock_key(product["itemId"]),
                       product["initialAvailableQuantity"])
    return int(left) >= 0


def create_app(client: redis.Redis | None = None) -> Flask:
    """The stock server; tests pass a fakeredis client, otherwise REDIS_URL is used."""
    app = web.new_app(__name__)
    redis_client = client if client is not None else web.web_client()

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
        return web.json_text_response(product_detail_body(redis_client, product))

    @app.get("/reserve_product/<item_id>")
    def reserve_product(item_id: str):
        product = product_or_404(item_id)
        if not reserve_one(redis_client, product):
            return web.json_response(
                {"status": "Not enough stock available", "itemId": product["itemId"]})
        return web.json_response({"status": "Reservation confirmed", "itemId": product["itemId"]})

    # The same bodies for a product's GET, without Flask's per-request cost (web.HotReads).
    app.wsgi_app = web.HotReads(app.wsgi_app, {
        f"/list_products/{product['itemId']}": partial(product_detail_body, redis_client, product)
        for product in LIST_PRODUCTS})
    return app
