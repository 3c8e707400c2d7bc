"""Side by side: Kue 0.11.6, BullMQ and ours on the 7_job workload; Express and ours over HTTP.

    PYTHONPATH=. .venv/bin/python bench/peers.py --loaded        # ~1.5 min a round; node, wrk

The peers are the drivers in ``--anchors`` (default /work/shared/anchors): ``kue-bench``,
``bullmq-bench`` and ``express-bench``. Their ``run.sh`` installs their npm packages into
``~/.cache/qs-anchors/<name>`` (one run with 110 jobs before the first round, not counted);
then this bench starts their ``processor.js`` and ``creator.js`` itself, to time and
measure each process. Every measurement gets a fresh throwaway redis-server on a free port
(``local_redis.RedisServer``, never 6379). Before each round it waits (``--calm-wait``,
90 s at most) until the cores are at most ``--calm`` busy (50 %; /proc/stat over 1 s) and
records how busy they were. In every round each system runs once, the order turned by one
system each round, so no system always goes first:

1. end to end (``jobs_per_s``): ``--jobs`` jobs (5,000) run by two at a time, the creator
   hearing every progress/completed/failed event. Ours: ``pipeline.pipeline_phase``
   (``7_job_processor.py``, the creator of ``7_job_creator.py``, every event and registry
   checked). Peers: ``processor.js`` (concurrency 2) started and ready (it prints READY),
   then ``node creator.js N full``, whose JSON line gives jobs/s and the event counts
   (checked: 910 failed, 4,090 completed, 9,090 progress for N = 5,000).
   CPU ms per job: the creator (ours: process time; a peer's: the whole ``node`` process,
   start included), the workers (``/proc``), Redis (``INFO cpu``).
2. loaded (``--loaded``): step 1 again with one ``while :; do :; done`` per core running,
   each in its own process group, killed (and reaped) before the next step.
3. enqueue and memory: ``--jobs`` pending jobs made by the system's creator with no worker
   (Kue: one ``save`` per job; BullMQ: ``addBulk`` of 500; ours: the batched enqueue of
   ``JobBatch``), on a server with Redis's default ``hash-max-listpack-value`` (64); then
   on the project's settings (256). Memory per pending job: ``used_memory`` growth / jobs,
   read by one control connection before the creator connects and after every other
   connection has closed; the pending jobs are counted.
4. HTTP: ``wrk -t2 -c32 -d<--seconds>s --latency`` on ``GET /list_products/1`` of Express
   (``express-bench/run.sh``: one process, then ``CLUSTER=2``, Node's cluster, one process
   per core) and of ours (``http_load.granian``: the README's granian command); req/s, p99.
5. flat cost (``--flat N``, e.g. 50000): step 1 again with N jobs for BullMQ and ours (on
   a fresh server, the same checks scaled to N), just after the round's step 1, so each
   round gives N jobs' jobs/s over ``--jobs`` jobs' (``ratio_to_quiet``) and the CPU ms
   per job of each process at N: does an extra job cost the same with 50,000 as with 5,000?

Printed: two tables of medians (range over the rounds), the figure per system and
ours / the best peer (for memory, CPU and p99 lower is better: a ratio above 1 is worse).
Every measurement is one JSON line in ``--results``/peers-<date>-<time>.jsonl; ``--chart``
draws jobs/s (quiet and loaded) and req/s as a PNG (matplotlib, the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

import http_load
import pipeline
from before_after import aligned, summary
from queuing import jobs, notifications
from queuing.connection import rq_client
from queuing.job_batch import JobBatch
from queuing.local_redis import RedisServer, free_port

ROOT = pipeline.ROOT
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qs-anchors"
DEFAULT_SERVER = ("--hash-max-ziplist-value", "64")  # Redis's default, over the project's 256
RUN_TIMEOUT = 300.0
START_TIMEOUT = 180.0  # Express's first start runs npm install

PEER_FOLDERS = {"kue": "kue-bench", "bullmq": "bullmq-bench"}
PEER_NAMES = {"kue": "Kue", "bullmq": "BullMQ", "ours": "ours",
              "express": "Express", "express_cluster": "Express cluster (2)"}
JOB_SYSTEMS = ("kue", "bullmq", "ours")
FLAT_SYSTEMS = ("bullmq", "ours")  # Kue at 50,000 jobs takes minutes a round
HTTP_SERVERS = ("express", "express_cluster", "ours")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def turned(items: tuple[str, ...], round_number: int) -> list[str]:
    """The systems in this round's order: round 1 as given, round 2 from the second..."""
    shift = (round_number - 1) % len(items)
    return list(items[shift:] + items[:shift])


def load_average() -> list[float]:
    return [round(load, 2) for load in os.getloadavg()]


def busy_share(seconds: float = 1.0) -> float:
    """The share of all cores' time spent busy over the next ``seconds`` (/proc/stat): how
    much the neighbours use before a round starts (the load average lags by minutes)."""
    def sample() -> tuple[int, int]:
        fields = [int(n) for n in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    total_before, idle_before = sample()
    time.sleep(seconds)
    total_after, idle_after = sample()
    return round(1 - (idle_after - idle_before) / max(total_after - total_before, 1), 2)


def wait_for_calm(most_busy: float, longest: float) -> float:
    """Wait (at most ``longest`` seconds) until the cores are at most ``most_busy`` busy; the
    share seen last. A neighbour's burst then lands less often in a round."""
    deadline = time.monotonic() + longest
    busy = busy_share()
    while busy > most_busy and time.monotonic() < deadline:
        time.sleep(4)
        busy = busy_share()
    return busy


# --- Peers' processes -------------------------------------------------------------------

def install_peers(anchors: Path) -> dict[str, str]:
    """Each peer's run.sh once with 110 jobs (installs its npm packages, shows it works);
    the versions installed."""
    versions = {}
    with RedisServer() as server:
        for peer, folder in PEER_FOLDERS.items():
            log(f"warm-up: {folder}/run.sh {server.port} 110")
            subprocess.run(["bash", str(anchors / folder / "run.sh"), str(server.port), "110"],
                           check=True, stdout=subprocess.DEVNULL, timeout=RUN_TIMEOUT)
            versions[peer] = package_version(folder, peer)
        log("warm-up: express-bench/run.sh (installs express)")
        with express(anchors, server.port, 1):
            versions["express"] = package_version("express-bench", "express")
    return versions


def package_version(folder: str, package: str) -> str:
    manifest = CACHE / folder / "node_modules" / package / "package.json"
    return json.loads(manifest.read_text())["version"]


def children_cpu() -> float:
    """CPU seconds of this process's reaped children (a creator, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_node(script: Path, port: int, output: Any) -> subprocess.Popen:
    """``node script`` against the server on ``port``, in its own process group."""
    return subprocess.Popen(["node", str(script)], cwd=script.parent,
                            env={**os.environ, "REDIS_PORT": str(port)},
                            stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                            start_new_session=True)


def wait_for_ready(process: subprocess.Popen, output: Any) -> None:
    """Until the processor printed READY (its workers are connected)."""
    deadline = time.monotonic() + pipeline.READY_TIMEOUT
    while b"READY" not in Path(output.name).read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{process.args} did not print READY")
        time.sleep(0.05)


def run_creator(folder: str, port: int, count: int, mode: str) -> dict[str, Any]:
    """``node creator.js N mode``; its JSON line, with the creator's CPU seconds."""
    cpu_before = children_cpu()
    done = subprocess.run(["node", str(CACHE / folder / "creator.js"), str(count), mode],
                          cwd=CACHE / folder, env={**os.environ, "REDIS_PORT": str(port)},
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["creator_cpu_s"] = children_cpu() - cpu_before
    return result


def event_problems(result: dict[str, Any], count: int) -> list[str]:
    """What a run's event counts lack: every job completed or failed, every progress."""
    failures = pipeline.expected_failures(count)
    wanted = {"completed": count - failures, "failed": failures,
              "progress_events": 2 * count - failures}
    return [f"{name} {result.get(name)} (expected {value})"
            for name, value in wanted.items() if result.get(name) != value]


def peer_end_to_end(peer: str, count: int) -> dict[str, Any]:
    """processor.js (concurrency 2) ready, then creator.js in full mode, on a fresh server."""
    folder = PEER_FOLDERS[peer]
    with RedisServer() as server, tempfile.NamedTemporaryFile() as output:
        control = redis.Redis(port=server.port)
        processor = start_node(CACHE / folder / "processor.js", server.port, output)
        try:
            wait_for_ready(processor, output)
            worker_before = pipeline.cpu_seconds(processor.pid)
            redis_before = pipeline.redis_cpu(control)
            result = run_creator(folder, server.port, count, "full")
            worker_cpu = pipeline.cpu_seconds(processor.pid) - worker_before
            redis_cpu = pipeline.redis_cpu(control) - redis_before
        finally:
            pipeline.stop(processor)
    per_job = 1000 / count
    return {"jobs_per_s": round(result["jobs_per_s"]), "seconds": round(result["total_s"], 2),
            "events": {name: result.get(name)
                       for name in ("completed", "failed", "progress_events")},
            "problems": event_problems(result, count),
            "cpu_ms_per_job": {"creator": round(result["creator_cpu_s"] * per_job, 3),
                               "workers": round(worker_cpu * per_job, 3),
                               "redis": round(redis_cpu * per_job, 3)}}


def ours_end_to_end(count: int) -> dict[str, Any]:
    """pipeline.py's end-to-end phase (it checks every event and registry) on a fresh server."""
    with RedisServer() as server, open(os.devnull, "w") as out, \
            tempfile.TemporaryFile("w+") as errors:
        try:
            result = pipeline.pipeline_phase(server.url, rq_client(server.url), count, out,
                                             errors)
        except (AssertionError, RuntimeError) as error:
            errors.seek(0)
            log(errors.read()[-2000:])
            return {"problems": [str(error)[:500]]}
    return {"jobs_per_s": result["jobs_per_s"], "seconds": result["seconds"],
            "events": result["events"], "problems": [],
            "cpu_ms_per_job": result["cpu_ms_per_job"]}


def end_to_end(system: str, count: int) -> dict[str, Any]:
    return ours_end_to_end(count) if system == "ours" else peer_end_to_end(system, count)


# --- Enqueue and memory -----------------------------------------------------------------

def enqueue_ours(url: str, count: int) -> float:
    """The creator's batched enqueue (JobBatch + create_notification_jobs); jobs/s. Its
    connection is closed before returning, as a peer's creator has exited."""
    connection = rq_client(url)
    queue = jobs.json_queue(pipeline.QUEUE, connection)
    with open(os.devnull, "w") as out, contextlib.redirect_stdout(out), JobBatch(queue) as batch:
        started = time.perf_counter()
        notifications.create_notification_jobs(batch, pipeline.job_data(count),
                                               notifications.push_tracked_notification)
        elapsed = time.perf_counter() - started
    connection.connection_pool.disconnect()
    return count / elapsed


def pending_jobs(system: str, control: redis.Redis) -> int:
    """Jobs waiting for a worker, where each system keeps them."""
    if system == "kue":
        return control.zcard("q:jobs:inactive")
    if system == "bullmq":
        return control.llen(f"bull:{pipeline.QUEUE}:wait")
    return control.llen(f"rq:queue:{pipeline.QUEUE}")


def wait_for_alone(control: redis.Redis) -> None:
    """Until the control connection is the server's only client (the creator is gone)."""
    deadline = time.monotonic() + pipeline.SETTLE_TIMEOUT
    while control.info("clients")["connected_clients"] > 1:
        if time.monotonic() > deadline:
            raise RuntimeError("the creator's connections did not close")
        time.sleep(0.05)


def enqueue_and_memory(system: str, count: int, server_args: tuple[str, ...]) -> dict[str, Any]:
    """``count`` pending jobs from the system's creator, no worker: jobs/s and used_memory
    growth per job, on a fresh server started with ``server_args``."""
    with RedisServer(*server_args) as server:
        control = redis.Redis(port=server.port)
        before = control.info("memory")["used_memory"]
        if system == "ours":
            per_s = enqueue_ours(server.url, count)
        else:
            per_s = run_creator(PEER_FOLDERS[system], server.port, count,
                                "enqueue")["enqueue_jobs_per_s"]
        wait_for_alone(control)
        grown = control.info("memory")["used_memory"] - before
        pending = pending_jobs(system, control)
        listpack = pipeline.hash_max_listpack_value(control)
    return {"enqueue_per_s": round(per_s), "bytes_per_pending_job": round(grown / count),
            "hash_max_listpack_value": listpack,
            "problems": [] if pending == count else [f"{pending} pending, not {count}"]}


# --- HTTP -------------------------------------------------------------------------------

def wait_for_http(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:  # refused, or an HTTP error (urllib.error.HTTPError)
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{process.args} did not answer {url}") from None
            time.sleep(0.2)


@contextlib.contextmanager
def express(anchors: Path, redis_port: int, processes: int) -> Iterator[str]:
    """express-bench/run.sh on a free port (``processes`` > 1: Node's cluster); the base URL."""
    port = free_port()
    command = ["bash", str(anchors / "express-bench" / "run.sh"), str(redis_port), str(port),
               str(processes)]
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/list_products/1", server)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def http_run(server_name: str, anchors: Path, seconds: int) -> dict[str, Any]:
    """wrk on GET /list_products/1 of one server, on a fresh redis-server."""
    with RedisServer() as redis_server:
        if server_name == "ours":
            serving = http_load.granian("queuing.stock:create_app", redis_server.url, 2, 2)
        else:
            serving = express(anchors, redis_server.port,
                              2 if server_name == "express_cluster" else 1)
        with serving as base:
            result = http_load.wrk(f"{base}/list_products/1", seconds)
    result["problems"] = [f"{result['errors']} errors"] if result["errors"] else []
    return result


# --- Load -------------------------------------------------------------------------------

@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """``count`` shell busy loops, each in its own process group; killed and reaped after."""
    loops = [subprocess.Popen(["bash", "-c", "while :; do :; done"], start_new_session=True)
             for _ in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(loop.pid, signal.SIGKILL)
            loop.wait()


# --- Summary ----------------------------------------------------------------------------

# (label, kind of measurement, how to read it, digits, higher is better)
JOB_FIGURES: list[tuple[str, str, Callable[[dict], float], int, bool]] = [
    ("end to end, jobs/s, quiet", "quiet", lambda r: r["jobs_per_s"], 0, True),
    ("end to end, jobs/s, loaded", "loaded", lambda r: r["jobs_per_s"], 0, True),
    ("enqueue, jobs/s (default server)", "memory_default",
     lambda r: r["enqueue_per_s"], 0, True),
    ("memory per pending job, B (default server)", "memory_default",
     lambda r: r["bytes_per_pending_job"], 0, False),
    ("memory per pending job, B (project settings)", "memory_project",
     lambda r: r["bytes_per_pending_job"], 0, False),
    ("CPU ms/job, creator, quiet", "quiet", lambda r: r["cpu_ms_per_job"]["creator"], 3, False),
    ("CPU ms/job, workers, quiet", "quiet", lambda r: r["cpu_ms_per_job"]["workers"], 3, False),
    ("CPU ms/job, Redis, quiet", "quiet", lambda r: r["cpu_ms_per_job"]["redis"], 3, False),
]


def flat_figures(count: int) -> list[tuple[str, str, Callable[[dict], float], int, bool]]:
    """The rows of ``--flat``: end to end with ``count`` jobs, its ratio to the same round's
    quiet run, and the CPU per job of each process at ``count``."""
    jobs_label = f"{count:,} jobs"
    return [
        (f"end to end, jobs/s, {jobs_label}", "flat", lambda r: r["jobs_per_s"], 0, True),
        (f"end to end, {jobs_label} / quiet, jobs/s", "flat",
         lambda r: r.get("ratio_to_quiet"), 2, True),  # none: the quiet run failed
        *((f"CPU ms/job, {name}, {jobs_label}", "flat",
           lambda r, process=process: r["cpu_ms_per_job"][process], 3, False)
          for process, name in (("creator", "creator"), ("workers", "workers"),
                                ("redis", "Redis"))),
    ]


HTTP_FIGURES: list[tuple[str, str, Callable[[dict], float], int, bool]] = [
    ("GET /list_products/1, req/s", "http", lambda r: r["req_per_s"], 0, True),
    ("GET /list_products/1, p50 ms", "http", lambda r: r["p50_ms"], 2, False),
    ("GET /list_products/1, p99 ms", "http", lambda r: r["p99_ms"], 2, False),
]


def with_ratio_to_quiet(result: dict[str, Any], quiet: list[dict], system: str,
                        round_number: int) -> dict[str, Any]:
    """``result`` (a --flat run) with its jobs/s over the same round's quiet run of the same
    system: paired in time, the ratio moves less with the neighbours than either figure."""
    paired = [line["result"] for line in quiet
              if line["round"] == round_number and line["system"] == system
              and line["kind"] == "quiet" and not line["result"].get("problems")]
    if paired and not result.get("problems"):
        result["ratio_to_quiet"] = round(result["jobs_per_s"] / paired[0]["jobs_per_s"], 3)
    return result


def values(lines: list[dict], system: str, kind: str, read: Callable[[dict], float]) -> list:
    """The figure of every run of ``system`` and ``kind`` that had no problem (and has it)."""
    found = [read(line["result"]) for line in lines
             if line.get("system") == system and line.get("kind") == kind
             and not line["result"].get("problems")]
    return [value for value in found if value is not None]


def median_or_none(numbers: list[float]) -> float | None:
    return statistics.median(numbers) if numbers else None


def table(lines: list[dict], systems: tuple[str, ...], figures: list) -> str:
    """One row per figure: the systems' medians (range) and ours / the best peer."""
    header = ["figure", *(PEER_NAMES[system] for system in systems), "ours / best peer"]
    rows = [header]
    for label, kind, read, digits, higher_better in figures:
        found = {system: values(lines, system, kind, read) for system in systems}
        if not any(found.values()):
            continue
        peers = [median_or_none(found[s]) for s in systems if s != "ours"]
        peers = [value for value in peers if value is not None]
        best = (max if higher_better else min)(peers) if peers else None
        ours = median_or_none(found["ours"])
        ratio = f"{ours / best:.2f}" if ours is not None and best else "-"
        rows.append([label, *(summary(found[s], digits) for s in systems), ratio])
    return aligned(rows)


def draw_chart(lines: list[dict], path: Path, title: str, jobs_count: int) -> None:
    """Two bar charts: jobs/s per system, quiet and loaded; req/s per HTTP server."""
    import matplotlib  # the bench extra
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (jobs_axes, http_axes) = pyplot.subplots(1, 2, figsize=(11, 4.6),
                                                     width_ratios=[3, 2])
    width = 0.38
    for offset, kind, colour in ((-width / 2, "quiet", "#4c78a8"),
                                 (width / 2, "loaded", "#f58518")):
        runs = [values(lines, system, kind, lambda r: r["jobs_per_s"]) for system in JOB_SYSTEMS]
        bars(jobs_axes, [i + offset for i in range(len(JOB_SYSTEMS))], runs, width, colour,
             f"{kind}" + (" (a busy loop per core)" if kind == "loaded" else ""))
    jobs_axes.set_xticks(range(len(JOB_SYSTEMS)), [PEER_NAMES[s] for s in JOB_SYSTEMS])
    jobs_axes.set_ylabel("jobs/s, end to end (median; bar: range)")
    jobs_axes.set_title(f"7_job workload, {jobs_count:,} jobs, 2 at a time, every event heard",
                        fontsize=10)
    jobs_axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    runs = [values(lines, server, "http", lambda r: r["req_per_s"]) for server in HTTP_SERVERS]
    bars(http_axes, range(len(HTTP_SERVERS)), runs, 0.6, "#54a24b", None)
    p99 = [median_or_none(values(lines, server, "http", lambda r: r["p99_ms"]))
           for server in HTTP_SERVERS]
    labels = [f"{PEER_NAMES[s]}\np99 {v:.1f} ms" if v is not None else PEER_NAMES[s]
              for s, v in zip(HTTP_SERVERS, p99, strict=True)]
    http_axes.set_xticks(range(len(HTTP_SERVERS)), labels)
    http_axes.set_ylabel("requests/s (median; bar: range)")
    http_axes.set_title("GET /list_products/1, wrk -t2 -c32", fontsize=10)
    for axes in (jobs_axes, http_axes):
        axes.spines[["top", "right"]].set_visible(False)
        axes.margins(y=0.15)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def bars(axes: Any, positions: Any, runs: list[list[float]], width: float, colour: str,
         label: str | None) -> None:
    """Median bars with min-max error bars and the median written on top."""
    positions = list(positions)
    medians = [statistics.median(r) if r else 0 for r in runs]
    low = [m - min(r) if r else 0 for m, r in zip(medians, runs, strict=True)]
    high = [max(r) - m if r else 0 for m, r in zip(medians, runs, strict=True)]
    axes.bar(positions, medians, width, color=colour, label=label,
             yerr=[low, high], capsize=3, error_kw={"elinewidth": 1})
    for x, m, h in zip(positions, medians, high, strict=True):
        if m:
            axes.annotate(f"{m:,.0f}", (x, m + h), ha="center", va="bottom", fontsize=8,
                          xytext=(0, 2), textcoords="offset points")


# --- Main -------------------------------------------------------------------------------

def code_state() -> dict[str, Any]:
    """The commit measured, and whether the tree differs from it (then it is measured too)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                              "queuing", "*.py"], capture_output=True, text=True).stdout
    return {"commit": commit, "uncommitted_changes": changed.splitlines()[:20]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--loaded", action="store_true",
                        help="also end to end with a busy loop per core")
    parser.add_argument("--flat", type=int, default=0, metavar="N",
                        help="also end to end with N jobs (BullMQ and ours), e.g. 50000")
    parser.add_argument("--seconds", type=int, default=10, help="wrk -d of each HTTP run")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--calm", type=float, default=0.5, metavar="SHARE",
                        help="before a round, wait until the cores are at most this busy")
    parser.add_argument("--calm-wait", type=float, default=90, metavar="SECONDS",
                        help="... but no longer than this (0: do not wait)")
    parser.add_argument("--anchors", type=Path, default=Path("/work/shared/anchors"))
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--chart", type=Path, default=ROOT / "bench" / "results" / "peers.png")
    args = parser.parse_args(argv)
    for tool in ("node", "npm", "wrk", "redis-server"):
        if not shutil.which(tool):
            log(f"{tool} not found on PATH")
            return 2
    started = datetime.datetime.now(datetime.timezone.utc)
    args.results.mkdir(parents=True, exist_ok=True)
    raw_path = args.results / f"peers-{started:%Y-%m-%d-%H%M}.jsonl"
    header = {"started": started.isoformat(timespec="seconds"), "load_average": load_average(),
              "cpus": os.cpu_count(), "jobs": args.jobs, "flat_jobs": args.flat,
              "rounds": args.rounds,
              "redis_server": subprocess.run(["redis-server", "--version"], capture_output=True,
                                             text=True).stdout.split()[2],
              "node": subprocess.run(["node", "--version"], capture_output=True,
                                     text=True).stdout.strip(), **code_state()}
    header["versions"] = install_peers(args.anchors)
    log(f"start: {json.dumps(header)}")
    lines: list[dict] = []
    busy_before: list[float] = []
    with open(raw_path, "w") as raw:
        raw.write(json.dumps(header) + "\n")

        def record(system: str, kind: str, round_number: int, result: dict) -> None:
            line = {"round": round_number, "system": system, "kind": kind,
                    "load_average": load_average(), "result": result}
            lines.append(line)
            raw.write(json.dumps(line) + "\n")
            raw.flush()
            shown = {key: result[key] for key in ("jobs_per_s", "ratio_to_quiet",
                                                   "enqueue_per_s",
                                                   "bytes_per_pending_job", "req_per_s",
                                                   "p99_ms", "problems") if key in result}
            log(f"  round {round_number} {kind:15} {system:16} {shown}")

        for round_number in range(1, args.rounds + 1):
            busy = wait_for_calm(args.calm, args.calm_wait)
            busy_before.append(busy)
            raw.write(json.dumps({"round": round_number, "load_average": load_average(),
                                  "busy_share_before": busy}) + "\n")
            log(f"round {round_number}/{args.rounds}, load average {load_average()},"
                f" cores {busy:.0%} busy before it")
            for system in turned(JOB_SYSTEMS, round_number):
                record(system, "quiet", round_number, end_to_end(system, args.jobs))
            if args.flat:  # as calm a start as the quiet runs had: a long run cannot dodge
                wait_for_calm(args.calm, args.calm_wait)  # a neighbour's burst, a short one can
                for system in turned(FLAT_SYSTEMS, round_number):
                    record(system, "flat", round_number, with_ratio_to_quiet(
                        end_to_end(system, args.flat), lines, system, round_number))
            for system in turned(JOB_SYSTEMS, round_number):
                record(system, "memory_default", round_number,
                       enqueue_and_memory(system, args.jobs, DEFAULT_SERVER))
                record(system, "memory_project", round_number,
                       enqueue_and_memory(system, args.jobs, ()))
            if not args.no_http:
                for server in turned(HTTP_SERVERS, round_number):
                    record(server, "http", round_number,
                           http_run(server, args.anchors, args.seconds))
            if args.loaded:
                with busy_loops(os.cpu_count() or 2):
                    for system in turned(JOB_SYSTEMS, round_number):
                        record(system, "loaded", round_number, end_to_end(system, args.jobs))
        ended = datetime.datetime.now(datetime.timezone.utc)
        footer = {"ended": ended.isoformat(timespec="seconds"), "load_average": load_average(),
                  "minutes": round((ended - started).total_seconds() / 60, 1)}
        raw.write(json.dumps(footer) + "\n")
    versions = header["versions"]
    title = (f"{started:%Y-%m-%d %H:%M} UTC, ours at {header['commit']}, {os.cpu_count()} cores,"
             f" {args.rounds} rounds; Kue {versions['kue']}, BullMQ {versions['bullmq']},"
             f" Express {versions['express']}, Node {header['node']}, Redis"
             f" {header['redis_server'].removeprefix('v=')}\nload average (1 min) at start"
             f" {header['load_average'][0]}, at end {footer['load_average'][0]}; cores busy before"
             f" each round: {', '.join(f'{busy:.0%}' for busy in busy_before)}")
    print(title)
    print(f"{args.rounds} rounds in {footer['minutes']} min; medians (range); raw: {raw_path}")
    print()
    print(table(lines, JOB_SYSTEMS, JOB_FIGURES + flat_figures(args.flat)))
    if not args.no_http:
        print()
        print(table(lines, HTTP_SERVERS, HTTP_FIGURES))
    problems = [line for line in lines if line["result"].get("problems")]
    for line in problems:
        print(f"left out: round {line['round']} {line['system']} {line['kind']}: "
              f"{line['result']['problems']}")
    draw_chart(lines, args.chart, title, args.jobs)
    print(f"chart: {args.chart}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
