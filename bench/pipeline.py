"""The notification pipeline benchmark of issue 5 (the 7_job workload), with its own baseline.

    .venv/bin/python bench/pipeline.py --jobs 5000

Phases, each against the same Redis (REDIS_URL, else a throwaway redis-server):

1. enqueue: ``--enqueue-jobs`` jobs (default 10,000) through the creator's own code
   (JobBatch + notifications.create_notification_jobs: ids from one INCRBY and one
   MULTI/EXEC per batch of fast_enqueue.ENQUEUE_BATCH jobs, the reply stream, the
   callbacks, the created lines), no worker running. used_memory is read once ``--jobs``
   are pending: its growth / ``--jobs`` is ``bytes_per_pending_job``, which depends on
   the server's ``hash_max_listpack_value`` (reported). The jobs are then emptied.
2. end to end: ``7_job_processor.py`` runs as its own process (two workers); the clock
   starts at the first create and stops when the creator has seen the last final event.
   The creator formats every line as 7_job_creator.py does (its ``event_line``) into
   ``--out``; its 11 records (``JOBS``) are read from the script's source: this process
   imports the ``queuing`` package, never a numbered script.
   Every event, RQ registry and job status is checked afterwards.
3. plain RQ: two ``rq worker -w rq.worker.SimpleWorker -S json`` processes, the same
   function and data, plain ``enqueue`` (no ids, no meta, no callbacks, so no events).
4. round trips: phase 2 again with ``--count-jobs`` jobs and every round trip counted
   (bench/roundtrips.py), by phase: enqueue, creator, worker, events.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

import roundtrips
from queuing import console, jobs, notifications
from queuing.connection import rq_client
from queuing.constants import PUSH_NOTIFICATION_QUEUE_2
from queuing.job_batch import LISTEN_SOCKET_TIMEOUT, JobBatch
from queuing.job_events import COMPLETED, FAILED, PROGRESS, JobEvent
from queuing.local_redis import configured_or_throwaway

ROOT = Path(__file__).resolve().parent.parent  # the numbered scripts run from here
BENCH = Path(__file__).resolve().parent
CREATOR_SCRIPT = ROOT / "7_job_creator.py"

QUEUE = PUSH_NOTIFICATION_QUEUE_2
READY_TIMEOUT = 30.0
SETTLE_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def script_constant(script: Path, name: str) -> Any:
    """A literal assigned at the top level of a script, read from its source (not run)."""
    for node in ast.parse(script.read_text(), str(script)).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == name for target in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"no {name} = <literal> in {script}")


# The course's 11 records, as 7_job_creator.py creates them; its lines, as it prints them.
JOBS: list[dict[str, str]] = script_constant(CREATOR_SCRIPT, "JOBS")
event_line = partial(notifications.lifecycle_line, id_prefix="#")  # 7_job_creator.event_line


def job_data(count: int) -> Iterator[dict[str, str]]:
    """The course's 11 records, cycled: 2 of every 11 are blacklisted."""
    return itertools.islice(itertools.cycle(JOBS), count)


def expected_failures(count: int) -> int:
    return sum(data["phoneNumber"] in notifications.BLACKLISTED_NUMBERS
               for data in job_data(count))


# --- Processes --------------------------------------------------------------------------

def start(command: list[str], url: str, stderr: TextIO | int) -> subprocess.Popen:
    """A process group of our own, so stopping it stops its forked workers too."""
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "REDIS_URL": url},
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=stderr, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C for the whole group (RQ's warm shutdown), then SIGKILL if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_workers(control: redis.Redis, queue: Queue, count: int,
                     processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while Worker.count(connection=control, queue=queue) < count:
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise RuntimeError(f"{count} workers did not start on {queue.name}")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a live process and its live descendants, from /proc."""
    total = 0.0
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        total += sum(cpu_seconds(int(child)) for child in children)
    return total


def redis_cpu(control: redis.Redis) -> float:
    info = control.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def hash_max_listpack_value(control: redis.Redis) -> int | None:
    """The server's hash-max-listpack-value (hash-max-ziplist-value before Redis 7): it
    decides whether a job hash is compact, so bytes_per_pending_job depends on it. None
    where CONFIG GET is not allowed (some managed servers)."""
    try:
        config = control.config_get("hash-max-*-value")
    except redis.ResponseError:
        return None
    value = config.get("hash-max-listpack-value") or config.get("hash-max-ziplist-value")
    return int(value) if value else None


def command_calls(control: redis.Redis) -> Counter[str]:
    return Counter({name.removeprefix("cmdstat_"): stats["calls"]
                    for name, stats in control.info("commandstats").items()})


# --- Phases -----------------------------------------------------------------------------

@contextlib.contextmanager
def profiled(path: Path | str | None) -> Iterator[None]:
    """pyinstrument around the block, its text report written to ``path`` (None: no-op)."""
    if not path:
        yield
        return
    from pyinstrument import Profiler  # installed only to profile (pip install pyinstrument)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        Path(path).write_text(profiler.output_text(show_all=False))


def enqueue_phase(url: str, control: redis.Redis, jobs_count: int, memory_at: int,
                  out: TextIO, profile: str | None = None) -> dict[str, Any]:
    """Enqueue through the creator's code with no worker; memory per pending job."""
    queue = jobs.json_queue(QUEUE, rq_client(url))
    before = control.info("memory")["used_memory"]
    with contextlib.redirect_stdout(out), JobBatch(queue) as batch, \
            profiled(profile and Path(profile, "enqueue.txt")):
        data = job_data(jobs_count)
        started = time.perf_counter()
        notifications.create_notification_jobs(
            batch, itertools.islice(data, memory_at), notifications.push_tracked_notification)
        grown = control.info("memory")["used_memory"] - before
        notifications.create_notification_jobs(
            batch, data, notifications.push_tracked_notification)
        elapsed = time.perf_counter() - started
    pending = queue.count
    queue.empty()
    if pending != jobs_count:
        raise AssertionError(f"{pending} jobs pending, not {jobs_count}")
    return {"enqueue_jobs": jobs_count, "enqueue_per_s": round(jobs_count / elapsed),
            "bytes_per_pending_job": round(grown / memory_at)}


def run_creator(queue: Queue, count: int, out: TextIO,
                counting: bool = False) -> tuple[float, float, list[JobEvent], list[str]]:
    """The creator of 7_job_creator.py, its lines into ``out``; (enqueue s, total s, ...)."""
    events: list[JobEvent] = []
    with contextlib.redirect_stdout(out), JobBatch(queue) as batch:
        roundtrips.phase = "enqueue" if counting else None
        started = time.perf_counter()
        notifications.create_notification_jobs(
            batch, job_data(count), notifications.push_tracked_notification)
        enqueued = time.perf_counter()
        roundtrips.phase = "creator" if counting else None
        for event in batch.events():  # notifications.print_events, counting as it goes
            console.log(event_line(event))
            events.append(event)
        ended = time.perf_counter()
        roundtrips.phase = None
    return enqueued - started, ended - started, events, batch.job_ids


def check_events(events: list[JobEvent], job_ids: list[str], count: int) -> Counter[str]:
    """Every job: progress 0, then (unless blacklisted) 50 and completed, else failed."""
    kinds = Counter(event.kind for event in events)
    failures = expected_failures(count)
    expected = {PROGRESS: 2 * count - failures, COMPLETED: count - failures, FAILED: failures}
    if kinds != expected:
        raise AssertionError(f"events {dict(kinds)}, expected {expected}")
    story: dict[str, str] = {}
    for event in events:
        story[event.job_id] = story.get(event.job_id, "") + (
            str(event.progress) if event.kind == PROGRESS else event.kind[0])
    if set(story) != set(job_ids) or set(story.values()) - {"0f", "050c"}:
        raise AssertionError(f"out of order events: {Counter(story.values())}")
    return kinds


def check_rq(control: redis.Redis, queue: Queue, job_ids: list[str], before: dict[str, int],
             kinds: Counter[str]) -> None:
    """The queue is empty, nothing is started, the registries and statuses add up."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        counts = registry_counts(queue)
        pipe = control.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(f"rq:job:{job_id}", "status")
        statuses = Counter(status.decode() for status in pipe.execute())
        wanted = {"finished": kinds[COMPLETED], "failed": kinds[FAILED]}
        if (queue.count == 0 and counts["started"] == 0 and statuses == wanted
                and counts["finished"] - before["finished"] == kinds[COMPLETED]
                and counts["failed"] - before["failed"] == kinds[FAILED]):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"RQ state wrong: queue {queue.count}, registries {counts}"
                                 f" (before {before}), statuses {dict(statuses)}")
        time.sleep(0.05)


def registry_counts(queue: Queue) -> dict[str, int]:
    return {"finished": FinishedJobRegistry(queue=queue).count,
            "failed": FailedJobRegistry(queue=queue).count,
            "started": StartedJobRegistry(queue=queue).count}


def pipeline_phase(url: str, control: redis.Redis, count: int, out: TextIO,
                   errors: TextIO, counting: str | None = None,
                   profile: str | None = None) -> dict[str, Any]:
    """7_job_processor.py in its own process, the creator here; checked, timed, measured."""
    connection = rq_client(url, socket_timeout=LISTEN_SOCKET_TIMEOUT)
    queue = jobs.json_queue(QUEUE, connection)
    if Worker.count(connection=control, queue=queue):
        raise RuntimeError(f"workers already listen on {QUEUE}: stop them first")
    command = [sys.executable, "7_job_processor.py"]
    if counting:
        command = [sys.executable, str(BENCH / "roundtrips.py"), counting, "7_job_processor.py"]
    if profile:  # py-spy from the venv (pip install py-spy), else from PATH
        spy = Path(sys.executable).parent / "py-spy"
        command = [str(spy) if spy.exists() else "py-spy", "record", "--subprocesses",
                   "--rate", "200", "--format", "raw",
                   "--output", str(Path(profile, "processor.txt")), "--", *command]
    processor = start(command, url, errors)
    try:
        wait_for_workers(control, queue, 2, [processor])
        before = registry_counts(queue)
        calls = command_calls(control)
        redis_before, worker_before = redis_cpu(control), cpu_seconds(processor.pid)
        creator_before = time.process_time()
        with profiled(profile and Path(profile, "creator.txt")):
            enqueue_s, total_s, events, job_ids = run_creator(queue, count, out, bool(counting))
        creator_cpu = time.process_time() - creator_before
        worker_cpu = cpu_seconds(processor.pid) - worker_before  # with py-spy's, if profiled
        redis_cpu_s = redis_cpu(control) - redis_before
        calls = command_calls(control) - calls
        kinds = check_events(events, job_ids, count)
        check_rq(control, queue, job_ids, before, kinds)
    finally:
        stop(processor)
    per_job = 1000 / count
    return {
        "jobs_per_s": round(count / total_s),
        "enqueue_per_s_while_processing": round(count / enqueue_s),
        "events_seen": len(events), "events": dict(kinds),
        "commands_per_job": round(sum(calls.values()) / count, 1),
        "top_commands_per_job": {name: round(n / count, 2) for name, n in calls.most_common(8)},
        "cpu_ms_per_job": {"creator": round(creator_cpu * per_job, 3),
                           "workers": round(worker_cpu * per_job, 3),
                           "redis": round(redis_cpu_s * per_job, 3)},
        "seconds": round(total_s, 2),
    }


def plain_rq_phase(url: str, control: redis.Redis, count: int) -> dict[str, Any]:
    """Two stock SimpleWorker processes, the same function and data, no ids or events."""
    queue = jobs.json_queue(QUEUE, rq_client(url))
    command = [sys.executable, "-m", "rq.cli", "worker", "--quiet", "--path", str(ROOT),
               "--worker-class", "rq.worker.SimpleWorker", "--serializer", "json", QUEUE]
    # RQ logs a traceback for each failed job (910 of 5,000): they go nowhere.
    workers = [start(command, url, subprocess.DEVNULL) for _ in range(2)]
    try:
        wait_for_workers(control, queue, 2, workers)
        before = registry_counts(queue)
        started = time.perf_counter()
        for data in job_data(count):
            queue.enqueue(notifications.push_tracked_notification, data)
        enqueued = time.perf_counter()
        deadline = time.monotonic() + 600
        while True:
            counts = registry_counts(queue)
            done = (counts["finished"] - before["finished"], counts["failed"] - before["failed"])
            if sum(done) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        for worker in workers:
            stop(worker)
    if done != (count - expected_failures(count), expected_failures(count)):
        raise AssertionError(f"plain RQ finished/failed {done}")
    return {"plain_rq_jobs_per_s": round(count / elapsed),
            "plain_rq_enqueue_per_s": round(count / (enqueued - started))}


def count_phase(url: str, control: redis.Redis, count: int, out: TextIO,
                errors: TextIO) -> dict[str, Any]:
    """Phase 2 with every round trip counted, in the creator and in the workers."""
    roundtrips.install()
    with tempfile.TemporaryDirectory(prefix="bench-rt-") as folder:
        roundtrips.round_trips.clear()
        roundtrips.commands.clear()
        pipeline_phase(url, control, count, out, errors, counting=folder)
        roundtrips.write_tally(folder)
        tallies = roundtrips.read_tallies(folder)
    phases = {label: round(part["round_trips"] / count, 2) for label, part in tallies.items()}
    return {
        "count_jobs": count,
        "round_trips_per_job": round(sum(phases.values()), 2),
        "round_trips_per_job_by_phase": phases,
        "commands_per_job_by_phase": {
            label: {name: round(n / count, 2) for name, n in part["commands"].most_common()}
            for label, part in tallies.items()},
    }


# --- Main -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--enqueue-jobs", type=int, default=10_000)
    parser.add_argument("--count-jobs", type=int, default=1000,
                        help="jobs of the round-trip counting run (0: skip it)")
    parser.add_argument("--no-plain-rq", action="store_true")
    parser.add_argument("--out", default=os.devnull, help="where the creator's lines go")
    parser.add_argument("--profile", metavar="DIR",
                        help="profile: py-spy (workers), pyinstrument (enqueue, creator)")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"jobs": args.jobs}
    with configured_or_throwaway() as url, open(args.out, "w") as out, \
            tempfile.TemporaryFile("w+") as errors:
        control = rq_client(url)  # the project's client: direct or Sentinel URL
        result["hash_max_listpack_value"] = hash_max_listpack_value(control)
        result["hiredis"] = redis.utils.HIREDIS_AVAILABLE  # redis-py packs and parses in C
        try:
            if args.profile:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
            log(f"enqueue: {args.enqueue_jobs} jobs, no worker")
            result.update(enqueue_phase(url, control, max(args.enqueue_jobs, args.jobs),
                                        args.jobs, out, args.profile))
            log(f"end to end: {args.jobs} jobs, 7_job_processor.py")
            result.update(pipeline_phase(url, control, args.jobs, out, errors,
                                         profile=args.profile))
            if not args.no_plain_rq:
                log(f"plain RQ: {args.jobs} jobs, two SimpleWorker processes")
                result.update(plain_rq_phase(url, control, args.jobs))
            if args.count_jobs:
                log(f"round trips: {args.count_jobs} jobs, counted")
                result.update(count_phase(url, control, args.count_jobs, out, errors))
        except (AssertionError, RuntimeError):
            errors.seek(0)
            log(errors.read()[-3000:])
            log(f"figures so far: {json.dumps(result)}")
            raise
    result["ratio_to_plain_rq"] = (round(result["jobs_per_s"] / result["plain_rq_jobs_per_s"], 2)
                                   if "plain_rq_jobs_per_s" in result else None)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
