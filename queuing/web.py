"""What both Flask servers share: the course's JSON bodies, JSON errors, a fail-fast client.

The course's curl output is compact, keeps insertion order and has no trailing newline;
Flask's jsonify sorts keys and appends one, so bodies are made here instead.

Production serves the apps with granian (see the README); :class:`HotReads` lets the two
routes a page polls most answer without Flask's per-request machinery.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus

import redis
from flask import Flask, Response, request
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed
from werkzeug.serving import WSGIRequestHandler

from queuing import settings, urls
from queuing.constants import DEFAULT_PORT

PORT_ENV = "PORT"
HOST_ENV = "HOST"
DEFAULT_HOST = "127.0.0.1"
REDIS_DOWN = "Redis is not reachable"
SOCKET_TIMEOUT = 5.0
# Connections per client, and how long a request waits for one when all are in use: longer
# than a command can hold one (3 tries of SOCKET_TIMEOUT), so only a Redis that does not
# answer makes a request wait that long.
POOL_SIZE = 100
POOL_WAIT_SECONDS = 20
JSON = "application/json"


def dumps(body: object) -> str:
    """``body`` as the course prints it: ``{"status":"..."}``, keys in the order given."""
    return json.dumps(body, separators=(",", ":"))


def json_response(body: object, status: int = 200) -> Response:
    return json_text_response(dumps(body), status)


def json_text_response(text: str, status: int = 200) -> Response:
    """A response whose body is ``text``, JSON already rendered (see :func:`dumps`)."""
    return Response(text, status=status, mimetype=JSON)


def web_client(url: str | None = None, decode_responses: bool = True,
               socket_timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    """A client that gives up on a dead Redis within a fraction of a second, not 3 s,
    so a request gets its 503 at once (redis-py 8 retries 10 times by default).

    Its pool waits for a free connection (up to POOL_WAIT_SECONDS) when all
    POOL_SIZE are in use: redis-py's default pool raises at once then, a ConnectionError
    that would tell a client "Redis is not reachable" while Redis is up (the threaded
    development server has a thread per request, however many come)."""
    url = settings.redis_url() if url is None else url
    urls.check_redis_url(url)
    try:
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=POOL_WAIT_SECONDS,
            decode_responses=decode_responses, socket_connect_timeout=2,
            socket_timeout=socket_timeout, retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), 2))
    except ValueError:
        raise settings.InvalidRedisURL(
            f"{settings.REDIS_URL_ENV} is not a usable Redis URL") from None
    client = redis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


def socket_timeout(client: redis.Redis) -> float:
    """The seconds ``client`` waits for an answer before it gives up (or retries)."""
    return client.connection_pool.connection_kwargs.get("socket_timeout") or SOCKET_TIMEOUT


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


class HotReads:
    """WSGI middleware: ``GET`` of a few read-only paths answered without Flask's per-request
    machinery; every other request (other paths, methods, errors) goes on to Flask.

    ``routes`` maps an exact path to a function that renders its body with one Redis
    round trip; the Flask route for the same path calls the same function, so the two
    answers are the same bytes. A Redis that cannot be reached gets the same JSON 503 as
    from Flask; any other error is left to Flask, which logs it and answers a JSON 500.
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


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_WAKEUP_SOCKETS: list[socket.socket] = []


def in_granian_worker() -> bool:
    """Whether this is a granian worker process loading the app: until granian installs
    the worker's own handlers, its SIGINT handler is the one inherited through fork from
    granian's main process, a method of granian's server."""
    if threading.current_thread() is not threading.main_thread():
        return False
    server = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
    return type(server).__module__.startswith("granian.")


def on_stop_signal(*actions: Callable[[], object]) -> bool:
    """In a granian worker process, run ``actions`` (in a thread) as soon as the process
    gets SIGINT or SIGTERM, or now if it got one while it started; True if set up.

    granian 2.8 does not always end a worker on a signal: a worker signalled before it
    installed its handlers, or whose main thread does not get the signal, waits forever,
    until the main process kills it (``--workers-kill-timeout``), and a killed worker
    runs no exit hook. So what must be given back at exit (the seat lease, the RQ worker's
    registration) is given back here, when the signal comes. Python's C handler writes
    every signal's number to the wakeup fd, whichever thread the signal interrupts.
    """
    if not in_granian_worker():
        return False
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    early = getattr(signal.getsignal(signal.SIGINT).__self__, "interrupt_signal", False)

    _WAKEUP_SOCKETS.extend((reader, writer))  # open as long as the process lives

    def watch() -> None:
        while not early:
            data = reader.recv(64)
            if not data or any(signum in data for signum in STOP_SIGNALS):
                break
        for action in actions:
            with contextlib.suppress(Exception):
                action()

    threading.Thread(target=watch, daemon=True, name="stop-signal watcher").start()
    return True


def port() -> int:
    return int(os.environ.get(PORT_ENV) or DEFAULT_PORT)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt in the main thread."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.default_int_handler)


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


def serve(app: Flask) -> None:
    """Flask's development server on PORT (default 1245), threaded, never in debug mode.

    For production run a WSGI server instead (see the README: granian, several workers).
    SIGTERM (``kill``, systemd, docker stop) ends it as Ctrl-C does, so exit hooks run;
    either is a normal stop, and returns.
    """
    stop_on_signals()
    # Werkzeug's loop returns on Ctrl-C by itself; a Ctrl-C before it is caught here.
    with contextlib.suppress(KeyboardInterrupt):
        app.run(host=os.environ.get(HOST_ENV) or DEFAULT_HOST, port=port(), debug=False,
                use_reloader=False, threaded=True, request_handler=JsonErrorsRequestHandler)
