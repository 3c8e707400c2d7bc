"""Load: the seat servers under a burst of 10,000 requests over several processes
sell exactly 50 seats, report every other job failed, and keep their memory flat."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

from queuing.constants import SEAT_JOBS_KEY
from tests.scripts.test_servers import BLOCKED, sell_out, start
from tests.servers import Server, hammer

BURST = 10_000
WARM_UP = 2_000  # sells out the 50 seats; memory is measured after it, then at the end
MAX_GROWTH_KB = 8 * 1024  # per process, over the 8,000 requests after the warm-up


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (granian's main process and its workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(current := todo.pop())
        todo.extend(children.get(current, []))
    return tree


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory(servers: list[Server]) -> dict[int, int]:
    return {pid: rss_kb(pid) for server in servers for pid in process_tree(server.process.pid)}


def test_a_10000_request_burst_sells_exactly_50_with_flat_memory(redis_url, real_redis,
                                                                  running):
    servers = [start(running, Server.granian("queuing.seats:create_app", redis_url, workers=3)),
               *(start(running, Server.script("100_seat", redis_url)) for _ in range(2))]
    sell_out(servers, real_redis, requests=WARM_UP)  # exactly 50 completed, the rest failed
    jobs = int(real_redis.get("queuing:job_id"))
    before, redis_before = memory(servers), real_redis.info("memory")["used_memory"]

    ports = itertools.cycle(server.port for server in servers)
    urls = [f"http://127.0.0.1:{next(ports)}/"
            f"{'available_seats' if n % 2 else 'reserve_seat'}" for n in range(BURST - WARM_UP)]
    answers = Counter(hammer(urls, threads=48))
    assert answers == {BLOCKED: (BURST - WARM_UP) // 2,
                       b'{"numberOfAvailableSeats":"0"}': (BURST - WARM_UP) // 2}

    after = memory(servers)
    growth = {pid: after[pid] - before[pid] for pid in before if pid in after}
    assert len(growth) == len(before) == 3 + 1 + 2  # no process died or was replaced
    assert max(growth.values()) < MAX_GROWTH_KB, growth
    assert int(real_redis.get("queuing:job_id")) == jobs  # a closed sale queues nothing
    assert real_redis.info("memory")["used_memory"] - redis_before < 1024 * 1024
    assert real_redis.scard(SEAT_JOBS_KEY) == 50  # 50 jobs hold a seat: 0 oversold
    print(f"load: {BURST} requests over {len(before)} processes, {jobs} jobs, 50 completed, "
          f"{jobs - 50} failed, 0 oversold, RSS growth max {max(growth.values())} kB, "
          f"Redis growth {real_redis.info('memory')['used_memory'] - redis_before} B")
    for server in servers:
        assert server.interrupt() in (0, 130)
        assert "Traceback" not in server.stderr
