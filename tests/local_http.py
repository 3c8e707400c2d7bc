"""Local HTTP servers for the tests, on 127.0.0.1 only: a site to check, a Twilio stand-in."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from queuing.local_redis import free_port


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _QuietServer(ThreadingHTTPServer):
    """A client that hung up first (a check that timed out on a slow site) is expected
    here: no traceback on the test's output for it."""

    def handle_error(self, request, client_address):
        pass


class Site:
    """A site that answers ``status`` after ``delay`` seconds; it can stop and start again
    on the same port (a check's URL stays the same while the site goes down and up)."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.port = free_port()
        self.hits = 0
        self.server: _QuietServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def start(self) -> Site:
        site = self

        class Handler(_Quiet):
            def _answer(self):
                site.hits += 1
                time.sleep(site.delay)
                self.send_response(site.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

        self.server = _QuietServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class StubTwilio:
    """Stands in for api.twilio.com: records each POSTed form and answers ``status``."""

    def __init__(self, status: int = 201) -> None:
        self.posts: list[dict] = []
        stub = self

        class Handler(_Quiet):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                stub.posts.append({"path": self.path,
                                   "form": {k: v[0] for k, v in form.items()}})
                body = ({"sid": f"SM{len(stub.posts)}", "status": "queued"} if status < 400
                        else {"code": 20003, "message": "Authenticate", "status": status})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[str]:
        return [post["form"].get("Body", "") for post in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
