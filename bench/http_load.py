"""The servers' benchmark of issue 5: the README's production command, driven by wrk.

    .venv/bin/python bench/http_load.py

For each server (stock.py, seats.py) it starts
``granian --interface wsgi --factory --workers 2 --blocking-threads 2 --respawn-failed-workers
--host 127.0.0.1 --port <free port> <module>:create_app``
against REDIS_URL (else a throwaway redis-server), runs ``wrk -t2 -c32 -d10s --latency`` on
``GET /list_products/1`` and ``GET /available_seats``, then a reservation run
(``/reserve_product/1..4``; ``/process`` then ``/reserve_seat``) that checks nothing was
oversold. Only 127.0.0.1 is ever a target; everything it starts, it stops.
The last line printed is one JSON object: req/s, p50/p99 in ms, errors, the checks, and
for each GET run the CPU per request (µs) of granian's processes (/proc), of Redis
(``INFO cpu``: with a shared REDIS_URL this includes its other clients) and of wrk: on a
shared machine req/s moves with the neighbours' load, the CPU a request costs much less.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from queuing import jobs, stock
from queuing.connection import rq_client
from queuing.constants import AVAILABLE_SEATS_KEY, RESERVATION_ENABLED_KEY, RESERVE_SEAT_QUEUE
from queuing.local_redis import configured_or_throwaway, free_port

ROOT = Path(__file__).resolve().parent.parent  # granian starts here, as the README's command does

WRK_MISSING = ("wrk not found: install Debian's package (sudo apt-get update && sudo apt-get "
               "install -y wrk; macOS: brew install wrk), then run this again")
START_TIMEOUT = 30.0
DRAIN_TIMEOUT = 120.0

# Counts the reservation replies of every wrk thread; ``paths`` cycles through the items.
RESERVE_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  paths = {}; for path in string.gmatch(args[1] or "", "[^,]+") do table.insert(paths, path) end
  n = 0; yes = 0; no = 0; other = 0
end
function request()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
function response(status, headers, body)
  if body:find("confirmed", 1, true) or body:find("in process", 1, true) then yes = yes + 1
  elseif body:find("Not enough", 1, true) or body:find("blocked", 1, true) then no = no + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local y, r, o = 0, 0, 0
  for _, t in ipairs(threads) do
    y = y + t:get("yes"); r = r + t:get("no"); o = o + t:get("other")
  end
  io.write(string.format("RESERVATIONS %d %d %d\\n", y, r, o))
end
"""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def granian(factory: str, url: str, workers: int, threads: int) -> Iterator[str]:
    """The README's production command on a free port; yields the base URL."""
    with granian_process(factory, url, workers, threads) as (base, _):
        yield base


@contextlib.contextmanager
def granian_process(factory: str, url: str, workers: int,
                    threads: int) -> Iterator[tuple[str, subprocess.Popen]]:
    """:func:`granian`, yielding its main process too (its session: every worker)."""
    port = free_port()
    command = [sys.executable, "-m", "granian", "--interface", "wsgi", "--factory",
               "--workers", str(workers), "--blocking-threads", str(threads),
               "--respawn-failed-workers", "--host", "127.0.0.1", "--port", str(port), factory]
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "REDIS_URL": url},
                                   stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                   start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base, process)
            yield base, process
        except BaseException:
            output.seek(0)
            log(output.read().decode(errors="replace")[-2000:])
            raise
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # granian's graceful stop
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_until_up(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{base}/no_such_route", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # the app answered (404)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("granian did not start") from None
            time.sleep(0.1)


def to_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return round(float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


def wrk(url: str, seconds: int, connections: int = 32, script: str | None = None,
        args: list[str] | None = None) -> dict[str, Any]:
    """One wrk run; req/s, p50/p99 (ms), errors (socket errors + non-2xx), its raw lines."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        command[1:1] = ["-s", script]
    if args:
        command += ["--", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = subprocess.run(command, capture_output=True, text=True, check=True,
                          timeout=seconds + 30).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    result = {
        "req_per_s": round(float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))),
        "requests": int(re.search(r"(\d+) requests in", text).group(1)),
        "wrk_cpu_s": round((after.ru_utime + after.ru_stime)
                           - (before.ru_utime + before.ru_stime), 3),
        "p50_ms": to_ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1)),
        "p99_ms": to_ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1)),
        "errors": (sum(map(int, socket_errors.groups())) if socket_errors else 0)
        + (int(non_2xx.group(1)) if non_2xx else 0),
    }
    reservations = re.search(r"RESERVATIONS (\d+) (\d+) (\d+)", text)
    if reservations:
        result["accepted"], result["refused"], result["other"] = map(
            int, reservations.groups())
    return result


def session_cpu_seconds(session: int) -> float:
    """User + system CPU time of every live process in ``session`` (granian and its workers)."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        if int(fields[3]) == session:  # fields[3]: the session id; [11], [12]: utime, stime
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def wrk_with_cpu(url: str, seconds: int, server: subprocess.Popen,
                 client: redis.Redis) -> dict[str, Any]:
    """:func:`wrk`, warmed up 1 s, plus the CPU µs per request of the server, Redis and wrk."""
    wrk(url, 1)
    server_before, redis_before = session_cpu_seconds(server.pid), redis_cpu_seconds(client)
    result = wrk(url, seconds)
    server_cpu = session_cpu_seconds(server.pid) - server_before
    redis_cpu = redis_cpu_seconds(client) - redis_before
    requests = max(result["requests"], 1)
    result["cpu_us_per_request"] = {
        "server": round(server_cpu / requests * 1e6, 1),
        "redis": round(redis_cpu / requests * 1e6, 1),
        "wrk": round(result.pop("wrk_cpu_s") / requests * 1e6, 1)}
    return result


def stock_left(client: redis.Redis) -> dict[int, int]:
    return {product["itemId"]: stock.get_current_reserved_stock_by_id(client, product["itemId"])
            for product in stock.LIST_PRODUCTS}


def bench_stock(url: str, client: redis.Redis, workers: int, threads: int, seconds: int,
                lua: str) -> dict[str, Any]:
    with granian_process("queuing.stock:create_app", url, workers, threads) as (base, server):
        log(f"stock: GET /list_products/1 for {seconds}s")
        result = wrk_with_cpu(f"{base}/list_products/1", seconds, server, client)
        before = stock_left(client)
        log("stock: /reserve_product/1..4 for 3s")
        run = wrk(base, 3, script=lua,
                  args=[",".join(f"/reserve_product/{item}" for item in before)])
    after = stock_left(client)
    run["oversold"] = run["accepted"] - sum(before.values())
    run["ok"] = run["oversold"] == 0 and set(after.values()) == {0} and run["other"] == 0
    return {"list_products": result, "reserve_product": run}


def bench_seats(url: str, client: redis.Redis, workers: int, threads: int, seconds: int,
                lua: str) -> dict[str, Any]:
    rq = rq_client(url)
    queue = jobs.json_queue(RESERVE_SEAT_QUEUE, rq)
    finished, failed = FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)
    with granian_process("queuing.seats:create_app", url, workers, threads) as (base, server):
        log(f"seats: GET /available_seats for {seconds}s")
        result = wrk_with_cpu(f"{base}/available_seats", seconds, server, client)
        seats = int(client.get(AVAILABLE_SEATS_KEY) or 0)
        done_before = finished.count, failed.count
        urllib.request.urlopen(f"{base}/process", timeout=5).close()
        log("seats: /reserve_seat for 3s, after /process")
        run = wrk(base, 3, script=lua, args=["/reserve_seat"])
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while queue.count and time.monotonic() < deadline:  # one worker thread drains it
            time.sleep(0.2)
        time.sleep(1)  # the last job's bookkeeping
        completed, failures = finished.count - done_before[0], failed.count - done_before[1]
    run.update(seats_before=seats, jobs_completed=completed, jobs_failed=failures,
               seats_left=client.get(AVAILABLE_SEATS_KEY),
               reservation_enabled=client.get(RESERVATION_ENABLED_KEY))
    run["oversold"] = completed - seats
    run["ok"] = (completed == seats and completed + failures == run["accepted"]
                 and run["seats_left"] == "0" and run["other"] == 0)
    return {"available_seats": result, "reserve_seat": run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="granian workers (README: 2)")
    parser.add_argument("--threads", type=int, default=2,
                        help="granian --blocking-threads per worker (README: 2)")
    parser.add_argument("--seconds", type=int, default=10, help="wrk -d for the GET runs")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print(WRK_MISSING, file=sys.stderr)
        return 2
    with configured_or_throwaway() as url, tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(RESERVE_LUA)
        lua.flush()
        client = redis.Redis.from_url(url, decode_responses=True)
        result: dict[str, Any] = {"server": "granian", "workers": args.workers,
                                  "threads": args.threads,
                                  "load_average": [round(load, 2) for load in os.getloadavg()]}
        result["stock"] = bench_stock(url, client, args.workers, args.threads, args.seconds,
                                      lua.name)
        result["seats"] = bench_seats(url, client, args.workers, args.threads, args.seconds,
                                      lua.name)
    print(json.dumps(result), flush=True)
    return 0 if result["stock"]["reserve_product"]["ok"] and \
        result["seats"]["reserve_seat"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
