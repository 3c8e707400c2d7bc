"""Processor "hosts" on this one machine, for the fault tests: Linux namespaces, as
containers have them.

A :class:`Host` is a network namespace of its own, linked to this machine by a veth pair
(a private /30: this side ``.1``, the host's side ``.2``), whose command runs in a PID and
UTS namespace of its own with the hostname the test chooses: two hosts named alike run
processes with the same hostname and the same PIDs (the command is PID 1), as two
containers of one image do. The test kills a host outright (:meth:`Host.kill`: its PID
namespace's init, and with it everything in it) or cuts its link for a while
(:meth:`Host.cut`, :meth:`Host.restore`: packets are dropped, established TCP connections
live on if restored before either end gives up on them).

It needs root, ``ip`` (iproute2) and ``unshare`` (util-linux); :func:`namespaces_missing`
says what is missing. Everything a host creates is removed by :meth:`Host.close`, also
when the test fails.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from functools import cache

import redis

from tests.processes import Script

NETWORK = ipaddress.ip_network("10.250.0.0/16")  # private; each host takes one /30 of it
BLOCKS = NETWORK.num_addresses // 4
COMMAND_TIMEOUT = 10.0  # seconds for one `ip` command
START_TIMEOUT = 10.0  # seconds for a host's init to appear
_numbers = itertools.count(1)  # hosts of this process, for unique names


def run(*command: str) -> subprocess.CompletedProcess:
    """``command``, checked: its stderr in the error when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


@cache
def namespaces_missing() -> str | None:
    """Why no host can be made here (not root, no ``ip`` or ``unshare``, namespaces
    refused), or None when they can: tried once per process with a throwaway namespace."""
    if os.geteuid() != 0:
        return "network and PID namespaces need root"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"no `{tool}` on PATH (iproute2, util-linux)"
    probe = f"queuing-probe-{os.getpid()}"
    try:
        run("ip", "netns", "add", probe)
        try:
            run("ip", "netns", "exec", probe, "unshare", "--pid", "--fork", "--kill-child",
                "--mount-proc", "--uts", "true")
        finally:
            run("ip", "netns", "delete", probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        return f"namespaces cannot be made here: {error}"
    return None


def _addresses_in_use() -> set[ipaddress.IPv4Address]:
    shown = run("ip", "-o", "-4", "address", "show").stdout.split()
    return {ipaddress.ip_interface(word).ip for word in shown if "/" in word
            and word[0].isdigit()}


def free_block() -> ipaddress.IPv4Network:
    """A /30 of NETWORK with no address on this machine, starting at one derived from this
    process's pid (tests running at once in other processes start elsewhere)."""
    used = _addresses_in_use()
    start = (os.getpid() * 8 + next(_numbers)) % BLOCKS
    for step in range(BLOCKS):
        block = ipaddress.ip_network(
            (int(NETWORK.network_address) + 4 * ((start + step) % BLOCKS), 30))
        if not used & set(block):
            return block
    raise RuntimeError(f"no free /30 left in {NETWORK}")


class Host:
    """A network namespace linked to this machine, and at most one command in it (in a PID
    and UTS namespace of its own); a context manager that removes it all."""

    def __init__(self, block: ipaddress.IPv4Network | None = None) -> None:
        number = next(_numbers)
        self.netns = f"queuing-{os.getpid()}-{number}"
        self.veth = f"qh{os.getpid()}x{number}"[:15]  # this side; interface names <= 15
        self.peer = f"qn{os.getpid()}x{number}"[:15]
        self.block = block or free_block()
        self.address, self.peer_address = (str(ip) for ip in list(self.block.hosts())[:2])
        self.script: Script | None = None
        self._init_pid: int | None = None
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        prefix = self.block.prefixlen
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", self.peer,
            "netns", self.netns)
        run("ip", "address", "add", f"{self.address}/{prefix}", "dev", self.veth)
        run("ip", "link", "set", self.veth, "up")
        run("ip", "-n", self.netns, "address", "add", f"{self.peer_address}/{prefix}",
            "dev", self.peer)
        run("ip", "-n", self.netns, "link", "set", self.peer, "up")
        run("ip", "-n", self.netns, "link", "set", "lo", "up")

    def url(self, port: int) -> str:
        """The URL of a Redis listening on this side's address (:func:`listen_on`)."""
        return f"redis://{self.address}:{port}"

    def start(self, hostname: str, name: str, redis_url: str, *argv: str, **env: str) -> Script:
        """Run ``argv`` (default: ``python NAME.py``, a numbered script) in the host, as PID 1
        of its own PID namespace, hostname ``hostname``, REDIS_URL ``redis_url``: a Script
        whose lines can be awaited."""
        command = list(argv) or [sys.executable, f"{name}.py"]
        self.script = Script(name, redis_url, argv=[
            "ip", "netns", "exec", self.netns,
            "unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--uts",
            "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *command], **env)
        self._init_pid = None
        return self.script

    @property
    def init_pid(self) -> int:
        """The PID, on this machine, of the host's init (its command): unshare's child."""
        if self._init_pid is None:
            assert self.script is not None, "nothing started in the host"
            unshare = self.script.process.pid
            deadline = time.monotonic() + START_TIMEOUT
            while not (children := _children(unshare)):
                if self.script.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{self.script.name}: no init in the host: "
                                         f"{self.script.stderr[-2000:]}")
                time.sleep(0.01)
            self._init_pid = children[0]
        return self._init_pid

    def kill(self) -> None:
        """SIGKILL the host's init: the kernel kills every process of its PID namespace,
        as when a machine or a container is lost. Returns once they are gone."""
        if self.script is None or self.script.process.poll() is not None:
            return
        try:
            os.kill(self.init_pid, signal.SIGKILL)
        except (AssertionError, ProcessLookupError):  # it ended meanwhile, or never began
            self.script.kill()  # unshare: its child, if any, is SIGKILLed (--kill-child)
        self.script.process.wait(timeout=COMMAND_TIMEOUT)  # unshare ends with its child

    def interrupt(self, timeout: float = 40) -> int:
        """Ctrl-C to the host's command (unshare itself ignores it); its exit status."""
        assert self.script is not None
        os.kill(self.init_pid, signal.SIGINT)
        return self.script.finish(timeout)

    def cut(self) -> None:
        """The link down at the host's end, as a cable pulled there: this machine still
        sends (the veth here stays up, its route too) and its packets are lost without a
        word, so Redis notices the host gone only by TCP keepalive; the host's own sends
        fail at once (no route). Nothing is reset. (Down at this end instead, the kernel
        here would have no route to the host and would retry keepalive probes without
        counting them: Redis would never drop the host's connections.)"""
        run("ip", "-n", self.netns, "link", "set", self.peer, "down")

    def restore(self) -> None:
        """The link up again, and the host's route back."""
        run("ip", "-n", self.netns, "link", "set", self.peer, "up")

    def close(self) -> None:
        """Kill what runs in the host, then remove the namespace and the veth pair."""
        try:
            if self.script is not None:
                try:
                    self.kill()
                finally:
                    self.script.kill()
        finally:
            self._remove_links()

    def _remove_links(self) -> None:
        for command in (("ip", "netns", "delete", self.netns),
                        ("ip", "link", "delete", self.veth)):
            # each, whatever the other did; it was never made, or went with the namespace
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                run(*command)

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def listen_on(redis_url: str, hosts: list[Host]) -> None:
    """Make the Redis at ``redis_url`` (a throwaway one) listen on each host's link too, as
    well as on 127.0.0.1 (Redis 7 rebinds at runtime; open connections stay). Its protected
    mode, which refuses any client but loopback's when there is no password, is turned off:
    those addresses are this machine's own veths, reachable from the test's hosts only."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.config_set("bind", " ".join(["127.0.0.1", *(host.address for host in hosts)]))
        client.config_set("protected-mode", "no")
    finally:
        client.close()
