"""What both Flask servers share: the course's JSON bodies, JSON errors, a fail-fast client.

The course's curl output is compact, keeps insertion order and has no trailing newline;
Flask's jsonify sorts keys and appends one, so bodies are made here instead.

Production serves the apps with granian (see the README); :class:`HotReads` lets the two
routes a page polls most answer without Flask's per-request machinery.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus

import redis
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed
from werkzeug.serving import WSGIRequestHandler

from queuing import settings, stopping, urls

REDIS_DOWN = "Redis is not reachable"
JSON = "application/json"


def dumps(body: object) -> str:
    """``body`` as the course prints it: ``{"status":"..."}``, keys in the order given."""
    return json.dumps(body, separators=(",", ":"))


def json_response(body: object, status: int = 200) -> Response:
    return json_text_response(dumps(body), status)


def json_text_response(text: str, status: int = 200) -> Response:
    """A response whose body is ``text``, JSON already rendered (see :func:`dumps`)."""
    return Response(text, status=status, mimetype=JSON)


def _http_error(error: HTTPException) -> Response:
    # abort(404, "Product not found") shows its text; Werkzeug's own long sentences do not.
    text = error.description if error.description != type(error).description else error.name
    response = json_response({"status": text}, error.code or 500)
    if error.code == 405:
        response.headers["Allow"] = error.get_response().headers.get("Allow", "")
    return response


REDIS_DOWN_BODY = dumps({"status": "Service Unavailable", "reason": REDIS_DOWN})


def _redis_down(error: redis.RedisError) -> Response:
    return json_text_response(REDIS_DOWN_BODY, 503)


class Unavailable(Exception):
    """Answered 503 ``{"status":"Service Unavailable","reason":REASON}``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _unavailable(error: Unavailable) -> Response:
    return json_response({"status": "Service Unavailable", "reason": error.reason}, 503)


def _server_error(error: InternalServerError) -> Response:
    # Flask has already logged the traceback to stderr; the client gets no detail.
    refused = urls.refused_setting(error.original_exception)
    if refused is not None:  # e.g. REDIS_URL's database, on a server restarted with fewer
        return _unavailable(Unavailable(str(refused)))
    return json_response({"status": "Internal Server Error"}, 500)


def refuse_head() -> None:
    """In a view that changes something: a HEAD is answered 405, Allow: GET. Flask would
    run the view for a HEAD as for a GET (and drop the body), so a HEAD would reserve."""
    if request.method == "HEAD":
        raise MethodNotAllowed(valid_methods=["GET"])


class JsonFlask(Flask):
    """Flask, whose automatic answer to OPTIONS is JSON too (Flask's is an empty HTML page)."""

    def make_default_options_response(self) -> Response:
        allow = super().make_default_options_response().headers.get("Allow", "")
        response = json_response({"allow": [method.strip() for method in allow.split(",")
                                            if method.strip()]})
        response.headers["Allow"] = allow
        return response


def new_app(import_name: str) -> Flask:
    """A Flask app whose every error is JSON (404, 405, 503 when Redis is down, 500).

    Debug mode stays off even with FLASK_DEBUG=1 in the environment: in debug mode
    Flask lets exceptions through, and clients would get a traceback page.
    """
    app = JsonFlask(import_name)
    app.debug = False
    # Werkzeug answers /list_products//1 with an HTML redirect to /list_products/1: a 404
    # (JSON) instead, as for any other path that is not a route.
    app.url_map.merge_slashes = False
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InternalServerError, _server_error)
    app.register_error_handler(redis.ConnectionError, _redis_down)
    app.register_error_handler(redis.TimeoutError, _redis_down)
    app.register_error_handler(Unavailable, _unavailable)
    return app


def path_of(app: Flask, endpoint: str, **values: object) -> str:
    """The path of ``app``'s route ``endpoint`` with ``values`` (``/list_products/1``):
    the route is where a path is written, and every other use is made from it."""
    return app.url_map.bind("").build(endpoint, values)


class HotReads:
    """WSGI middleware: ``GET`` of a few read-only paths answered without Flask's per-request
    machinery; every other request (other paths, methods, errors) goes on to Flask.

    ``routes`` maps an exact path (made from the Flask route: :func:`path_of`) to a
    function that renders its body with one Redis round trip; the Flask route calls the
    same function, so the two answers are the same bytes. A Redis that cannot be reached
    gets the same JSON 503 as from Flask; any other error is left to Flask, which logs
    it and answers a JSON 500.
    Why: on 2 cores, Flask's request and app contexts, routing and Response objects cost
    about as much CPU as the rest of the request (bench/README.md, "After").
    """

    def __init__(self, wsgi_app: Callable, routes: dict[str, Callable[[], str]]) -> None:
        self.wsgi_app = wsgi_app
        self.routes = routes

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        render = self.routes.get(environ.get("PATH_INFO", ""))
        if render is None or environ.get("REQUEST_METHOD") != "GET":
            return self.wsgi_app(environ, start_response)
        try:
            status, body = "200 OK", render()
        except (redis.ConnectionError, redis.TimeoutError):
            status, body = "503 SERVICE UNAVAILABLE", REDIS_DOWN_BODY
        except Exception:
            return self.wsgi_app(environ, start_response)  # Flask's JSON 500, and its log
        data = body.encode()
        start_response(status, [("Content-Type", JSON), ("Content-Length", str(len(data)))])
        return [data]


# The connection classes whose behaviour KeptGet relies on: redis-py's own. A Sentinel
# URL's pool (its master check is in get_connection) and fakeredis keep client.get.
_PLAIN_CONNECTIONS = (redis.Connection, redis.SSLConnection, redis.UnixDomainSocketConnection)
KEPT_CONNECTIONS = 8  # per process: granian's 2 threads use 2; a burst beyond uses the pool


class KeptGet:
    """``GET key`` on a few connections kept for it, without redis-py's command path.

    Why: under granian that path (argument packing, Retry, the pool's lock and condition,
    a ``poll()`` per connection handed out) cost ~40 of the ~90 us of CPU a hot GET took
    (bench/README.md, "HTTP: where a request's CPU goes"). Here the command is packed
    once per key and sent on an idle kept connection, made from the client's pool
    settings. At most KEPT_CONNECTIONS are made; when all are busy, and for any pool
    whose connections are not redis-py's plain ones, ``client.get`` answers instead.
    A connection that fails is closed (it reconnects when next used); on a lost
    connection (Redis restarted, closed it) ``client.get`` answers, with its retries, so
    a Redis that is away still raises redis.ConnectionError (503); a timeout raises at
    once, as the client's last try would.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        pool = client.connection_pool
        self._pool = pool if pool.connection_class in _PLAIN_CONNECTIONS else None
        self._idle: list[redis.connection.AbstractConnection] = []  # pop/append: GIL-atomic
        self._made = 0
        self._making = threading.Lock()
        self._packed: dict[str, list[bytes]] = {}

    def get(self, key: str) -> str | bytes | None:
        """As ``client.get(key)`` (so it stands in for the client where only GET is used)."""
        connection = self._take()
        if connection is None:
            return self.client.get(key)
        try:
            connection.send_packed_command(self._command(connection, key), check_health=False)
            value = connection.read_response()
        except redis.ConnectionError:
            connection.disconnect()
            self._idle.append(connection)
            return self.client.get(key)
        except BaseException:
            connection.disconnect()
            self._idle.append(connection)
            raise
        self._idle.append(connection)
        return value

    def _take(self) -> redis.connection.AbstractConnection | None:
        """An idle kept connection, a new one while fewer than KEPT_CONNECTIONS exist, or None."""
        try:
            return self._idle.pop()
        except IndexError:
            pass
        if self._pool is None:
            return None
        with self._making:
            if self._made >= KEPT_CONNECTIONS:
                return None
            self._made += 1
        return self._pool.connection_class(**self._pool.connection_kwargs)

    def _command(self, connection: redis.connection.AbstractConnection, key: str) -> list[bytes]:
        packed = self._packed.get(key)
        if packed is None:
            packed = self._packed[key] = [b"".join(connection.pack_command("GET", key))]
        return packed


class JsonErrorsRequestHandler(WSGIRequestHandler):
    """The development server's own errors (a malformed request line 400, a URI too long
    414, headers too large 431, an HTTP version it does not speak 505), which it answers
    before Flask sees the request, as JSON too: ``{"status":"Bad Request"}``."""

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        self.log_error("code %d, message %s", code, message)
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "Error"
        body = dumps({"status": phrase}).encode()
        # A request line it could not read leaves HTTP/0.9, whose answers have no status
        # line and no headers: answer such a line with both.
        self.request_version = getattr(self, "request_version", "HTTP/0.9")
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        self.send_response(code, phrase)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", JSON)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD":
            self.wfile.write(body)


def address() -> tuple[str, int]:
    """Where the development server listens: HOST and PORT (a ConfigError if unusable)."""
    return settings.host(), settings.port()


def serve(app: Flask, at: tuple[str, int] | None = None) -> None:
    """Flask's development server on PORT (default 1245), threaded, never in debug mode.

    For production run a WSGI server instead (see the README: granian, several workers).
    SIGTERM (``kill``, systemd, docker stop) ends it as Ctrl-C does, so exit hooks run;
    either is a normal stop, and returns.
    """
    stopping.interrupt_on_signals()
    host, port = at or address()
    # Werkzeug's loop returns on Ctrl-C by itself; a Ctrl-C before it is caught here.
    with contextlib.suppress(KeyboardInterrupt):
        app.run(host=host, port=port, debug=False,
                use_reloader=False, threaded=True, request_handler=JsonErrorsRequestHandler)
