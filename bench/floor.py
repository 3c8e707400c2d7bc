"""The floor of a Python worker for the 7_job workload: lean_worker's scripts without RQ's loop.

    PYTHONPATH=. .venv/bin/python bench/floor.py --jobs 5000 --rounds 3 --loaded

Why: our processor spends more CPU per job than BullMQ's, and under load its rate is its
share of the CPU divided by that (bench/README.md, "Under load"). This measures how low a
Python worker's CPU per job can go on the same Redis writes: the same Lua scripts
(lua/start_job.lua, lua/end_job.lua, lean_scripts.END_AND_START_LUA), the same job function
and callbacks, the same events in the creator's stream, but a plain loop instead of RQ's
Worker and Job: read the started job's hash, decode ``data``, check its names are allowed
(untrusted_jobs), call the function with its events held (job_events.Outbox), build the end
call and send it with the next start in one EVALSHA. Variants (``--variants``):

- ``a``: that loop, one job at a time;
- ``b``: one process, one thread, two jobs at a time, pipelined as BullMQ's concurrency 2
  on its event loop: while one slot's end+start is in flight (sent, not read), the other
  slot's job runs; then its reply is read;
- ``c``: the real worker alone, ``workers.make_worker(...).work(burst=True)`` (the
  LeanWorker subclass 7_job_processor.py runs in each of its processes).

Each run: a throwaway redis-server (never REDIS_URL), ``--jobs`` jobs enqueued first by the
creator's code (JobBatch + notifications.create_notification_jobs, as pipeline.py), then the
worker as a process in its own session (as the processor), burst: CPU by its getrusage, rate
by its clock, around its whole work. ``--loaded``: each round again under two ``while :; do
:; done`` loops in sessions of their own. Afterwards every run is checked: registries,
statuses and every event in the stream (pipeline.py's checks), and the keys left compared
with variant c's. ``--end-to-end``: each round also runs pipeline.py's end-to-end phase (the
creator listening, every event checked) with 7_job_processor.py and with this loop (``b``) as
the processor, and BullMQ's processor and creator as peers.py runs them (if it installed them).

The loop covers the plain case only (what the workload's jobs are); what it leaves out of
RQ's worker is listed in bench/README.md, "The floor of a Python worker loop".
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from base64 import b64encode
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import hiredis
import redis
from rq import SimpleWorker
from rq.defaults import DEFAULT_FAILURE_TTL, DEFAULT_RESULT_TTL, DEFAULT_WORKER_TTL
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job
from rq.job import _current_job as current_job
from rq.job_lifecycle import format_exc_info
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import import_attribute, utcformat

import peers
import pipeline
from before_after import aligned
from queuing import job_events, jobs, lean_scripts, notifications, untrusted_jobs, workers
from queuing.connection import rq_client
from queuing.constants import JOB_EVENTS_TTL_SECONDS
from queuing.job_batch import JobBatch
from queuing.job_events import JobEvent
from queuing.local_redis import RedisServer

QUEUE = pipeline.QUEUE
HEADS = lean_scripts.HEADS
# Fields a job of the plain case does not have: RQ's own code would handle them.
NOT_PLAIN = (b"result_ttl", b"failure_ttl", b"retries_left", b"repeats_left",
             b"dependency_ids", b"stopped_callback_name", b"instance")
LOOP = ["sh", "-c", "while :; do :; done"]

# --- The loop (the worker process) -------------------------------------------------------


class _Running:
    """What a job function and its callbacks read of RQ's current job: id, meta, connection."""

    __slots__ = ("connection", "id", "meta")

    def __init__(self, job_id: str, meta: dict, connection: redis.Redis) -> None:
        self.id, self.meta, self.connection = job_id, meta, connection


class Slot:
    """One job at a time: an RQ worker of its own name (registered, so ``rq info`` and the
    scripts' worker keys are as RQ's), its job in hand and the execution it started."""

    def __init__(self, loop: FloorLoop, number: int) -> None:
        self.worker = SimpleWorker([loop.queue], connection=loop.connection,
                                   name=f"floor.{os.getpid()}.{number}",
                                   serializer=JSONSerializer)
        self.name, self.key = self.worker.name, self.worker.key
        self.executions_key = self.worker.executions_key
        self.execution_id = ""
        self.started_at = 0.0


class FloorLoop:
    """lean_worker's scripts driven by a plain loop of ``slots`` jobs at a time on one thread."""

    def __init__(self, url: str, slots: int) -> None:
        self.connection = rq_client(url)
        self.queue = jobs.json_queue(QUEUE, self.connection)
        # The keys, from RQ's own code once: {0} is a job id, {1} an execution id.
        job = Job("JOBID", connection=self.connection)
        execution = Execution("EXECUTIONID", "JOBID", self.connection)
        self.job_key, self.dependents_key, self.dependencies_key, self.execution_key, \
            self.executions_key, self.results_key = (
                key.replace("JOBID", "{0}").replace("EXECUTIONID", "{1}") for key in (
                    job.key, job.dependents_key, job.dependencies_key, execution.key,
                    ExecutionRegistry.key_template.format("JOBID"), Result.get_key("JOBID")))
        self.started_registry = StartedJobRegistry(queue=self.queue).key
        self.end_registries = {True: FinishedJobRegistry(queue=self.queue).key,
                               False: FailedJobRegistry(queue=self.queue).key}
        self.allowed = untrusted_jobs.allowed_names()  # read once, not per job
        self.functions: dict[str, Callable] = {}
        self.sha = {name: self.connection.script_load(script) for name, script in (
            ("start", lean_scripts.START_JOB_LUA), ("end", lean_scripts.END_JOB_LUA),
            ("end_and_start", lean_scripts.END_AND_START_LUA))}
        self.slots = [Slot(self, number) for number in range(slots)]
        self.wire = self.connection.connection_pool.get_connection()  # one, for the loop
        self.heads: list[str] = []
        self.inflight: deque[tuple[Slot, bool]] = deque()  # (slot, its call has a start)
        self.stopping = False
        self.done = 0

    # -- the calls ----------------------------------------------------------------------

    def _start(self, slot: Slot, wait_for: str | None) -> tuple[list, list]:
        """lean_scripts.start_call's KEYS and ARGV, from string templates."""
        at = datetime.now(UTC)
        slot.execution_id = uuid4().hex
        keys = [self.queue.key, self.queue.intermediate_queue_key, slot.key,
                slot.executions_key, self.started_registry, WORKERS_SUSPENDED]
        for job_id in self.heads:
            keys += [self.job_key.format(job_id),
                     self.execution_key.format(job_id, slot.execution_id),
                     self.executions_key.format(job_id)]
        if wait_for is not None:
            keys.append(wait_for)
        args = [self.heads[0], slot.execution_id, repr(at.timestamp()), int(at.timestamp()),
                utcformat(at), slot.name, DEFAULT_WORKER_TTL,
                "1" if wait_for is not None else "", HEADS, *self.heads[1:]]
        slot.started_at = at.timestamp()
        return keys, args

    def _end(self, slot: Slot, job_id: str, ok: bool, began: datetime, ended: datetime,
             exc_string: str | None, events: list[tuple[str, JobEvent]]) -> tuple[list, list]:
        """lean_scripts.end_call's KEYS and ARGV for a job that returned None (ok) or raised."""
        streams = list(dict.fromkeys(stream for stream, _event in events))
        keys = [self.job_key.format(job_id), slot.key, slot.executions_key,
                self.started_registry, self.end_registries[ok], self.results_key.format(job_id),
                self.execution_key.format(job_id, slot.execution_id),
                self.executions_key.format(job_id), self.dependents_key.format(job_id),
                self.dependencies_key.format(job_id), *streams]
        ended_text = utcformat(ended)
        job_fields = ["status", "finished" if ok else "failed", "started_at", utcformat(began),
                      "ended_at", ended_text, "last_heartbeat", ended_text,
                      "worker_name", slot.name]
        result = ["type", "1" if ok else "2", "worker_name", slot.name]  # Result.serialize
        if exc_string is not None:
            result += ["exc_string", b64encode(zlib.compress(exc_string.encode())).decode()]
        result += ["execution_id", slot.execution_id, "execution_started_at",
                   repr(slot.started_at), "execution_ended_at", repr(ended.timestamp())]
        ttl = DEFAULT_RESULT_TTL if ok else DEFAULT_FAILURE_TTL
        args = [job_id, slot.execution_id, "successful_job_count" if ok else "failed_job_count",
                repr((ended - began).total_seconds()), ttl, int(ended.timestamp()) + ttl,
                ttl if ok else "", JOB_EVENTS_TTL_SECONDS,
                len(job_fields), *job_fields, len(result), *result]
        for stream, event in events:
            fields = lean_scripts.flat(event.fields())
            args += [11 + streams.index(stream), len(fields), *fields]
        return keys, args

    def _send(self, slot: Slot, script: str, keys: list, args: list, starts: bool) -> None:
        self.wire.send_packed_command(
            [hiredis.pack_command(("EVALSHA", self.sha[script], len(keys), *keys, *args))])
        self.inflight.append((slot, starts))

    def _send_start(self, slot: Slot) -> None:
        self._send(slot, "start", *self._start(slot, None), starts=True)

    # -- the job ------------------------------------------------------------------------

    def _run(self, slot: Slot, job_id: str, fields: list[bytes]) -> None:
        """Run the job the start script started, then send its end (and the slot's next start)."""
        job = dict(zip(fields[::2], fields[1::2], strict=True))
        if any(name in job for name in NOT_PLAIN):
            raise NotImplementedError(f"job {job_id} is not of the plain case: RQ's code runs it")
        func_name, instance, args, kwargs = json.loads(job[b"data"])
        names = (func_name, job.get(b"success_callback_name", b"").decode(),
                 job.get(b"failure_callback_name", b"").decode())
        refused = [name for name in names
                   if name and untrusted_jobs.current_name(name) not in self.allowed]
        running = _Running(job_id, json.loads(job.get(b"meta") or b"{}"), self.connection)
        token = current_job.set(running)
        began = datetime.now(UTC)
        exc_string = None
        with job_events.holding_events() as outbox:
            try:
                if refused or instance is not None:
                    raise untrusted_jobs.ForbiddenJob(f"{', '.join(refused)} is not allowed")
                self._function(names[0])(*args, **kwargs)
                if names[1]:
                    self._function(names[1])(running, self.connection, None)
                ok = True
            except Exception:
                ok, exc_info = False, sys.exc_info()
                exc_string = format_exc_info(exc_info)
                if not isinstance(exc_info[1], jobs.ExpectedJobFailure):
                    print(f"Notification job {job_id} failed: {exc_info[1]}", file=sys.stderr)
                if names[2] and not refused:
                    self._function(names[2])(running, self.connection, *exc_info)
            finally:
                current_job.reset(token)
            end = self._end(slot, job_id, ok, began, datetime.now(UTC), exc_string,
                            outbox.take())
        self.done += 1
        if self.stopping or not self.heads:
            self._send(slot, "end", *end, starts=False)
            return
        keys, args = self._start(slot, self.dependents_key.format(job_id))
        self._send(slot, "end_and_start", [*end[0], *keys],
                   [len(end[0]), len(end[1]), *end[1], *args], starts=True)

    def _function(self, name: str) -> Callable:
        function = self.functions.get(name)
        if function is None:
            function = self.functions[name] = import_attribute(untrusted_jobs.current_name(name))
        return function

    # -- the loop -----------------------------------------------------------------------

    def work(self, burst: bool) -> None:
        """Run jobs until the queue is empty (``burst``) or SIGINT/SIGTERM, then stop."""
        for slot in self.slots:
            slot.worker.register_birth()
        idle = list(self.slots)
        try:
            while True:
                if not self.inflight:
                    if self.stopping or (burst and self.done and not self.heads):
                        break
                    if not self._wait_for_heads(burst):
                        break
                    while idle and self.heads:
                        self._send_start(idle.pop())
                slot, starts = self.inflight.popleft()
                reply = self.wire.read_response()
                ended = None
                if not starts:
                    ended, reply = reply[0], None
                elif isinstance(reply[0], list):  # an end and a start
                    ended, reply = reply[0][0], reply[1]
                if ended is not None and ended not in (b"ended", b"ended_before"):
                    raise RuntimeError(f"end script: {ended!r}: RQ's own code handles that")
                if reply is None:
                    idle.append(slot)
                    continue
                outcome, job_id, detail, *heads = reply
                self.heads = [head.decode() for head in heads if head]
                if outcome == b"started":
                    self._run(slot, job_id.decode(), detail)
                elif outcome == b"moved" and not self.stopping:
                    self._send_start(slot)
                elif outcome in (b"empty", b"moved", b"gone"):
                    idle.append(slot)
                else:
                    raise RuntimeError(f"start script: {outcome!r}: RQ's own code handles that")
                while idle and self.heads and not self.stopping:  # jobs came: wake a slot
                    self._send_start(idle.pop())
        finally:
            self.connection.connection_pool.release(self.wire)
            for slot in self.slots:
                slot.worker.register_death()

    def _wait_for_heads(self, burst: bool) -> bool:
        """The first jobs in the queue, into ``heads``; when none, wait for one (BLPOP, and
        the job put back at the head: a bench's wait; a real loop would have a script wait).
        False: stop."""
        while not self.stopping:
            self.heads = [head.decode() for head in self.connection.lrange(
                self.queue.key, 0, HEADS - 1)]
            if self.heads or burst:
                return bool(self.heads)
            with contextlib.suppress(redis.TimeoutError):
                popped = self.connection.blpop([self.queue.key], timeout=1)
                if popped:
                    self.connection.lpush(self.queue.key, popped[1])
        return False


def worker_main(variant: str, url: str, burst: bool) -> int:
    """The worker process: run ``variant`` and print its CPU and clock as one JSON line."""
    def stop(_signum: int, _frame: Any) -> None:
        if loop is not None:
            loop.stopping = True
    loop = None
    if variant in ("a", "b"):
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        loop = FloorLoop(url, slots=1 if variant == "a" else 2)
        run = lambda: loop.work(burst)  # noqa: E731
    else:
        workers.configure_logging()
        worker = workers.make_worker(QUEUE, rq_client(url))
        run = lambda: worker.work(burst=burst, logging_level=workers.logging_level())  # noqa: E731
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run()
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "variant": variant, "jobs": loop.done if loop else None, "wall_s": wall,
        "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
        "user_s": after.ru_utime - before.ru_utime,
        "voluntary": after.ru_nvcsw - before.ru_nvcsw,
        "involuntary": after.ru_nivcsw - before.ru_nivcsw}), flush=True)
    return 0


# --- The bench (the parent process) ------------------------------------------------------

def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[list[int]]:
    """``count`` busy loops, each in a session of its own (as from a terminal); killed after."""
    loops = [subprocess.Popen(LOOP, start_new_session=True) for _ in range(count)]
    try:
        time.sleep(0.3)
        yield [process.pid for process in loops]
    finally:
        for process in loops:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def enqueue(connection: redis.Redis, count: int) -> JobBatch:
    """``count`` jobs through the creator's code, no worker running (pipeline.py's way)."""
    batch = JobBatch(jobs.json_queue(QUEUE, connection))
    with contextlib.redirect_stdout(io.StringIO()):
        notifications.create_notification_jobs(batch, pipeline.job_data(count),
                                               notifications.push_tracked_notification)
    return batch


def key_shapes(connection: redis.Redis) -> set[str]:
    """What is left in Redis, as shapes: each key with its ids and worker name blanked, its
    type, and for hashes and streams their field names (a job's, a result's, an event's)."""
    shapes = set()
    for key in connection.scan_iter(count=1000):
        name = key.decode()
        name = re.sub(r"^(rq:worker:|queuing:lease:)[^:]+", r"\1W", name)
        name = re.sub(r"^(queuing:job_events:).*", r"\1S", name)
        name = re.sub(r"[0-9a-f]{32}|\d+", "#", name)
        kind = connection.type(key).decode()
        fields: list = []
        if kind == "hash":
            fields = sorted(field.decode() for field in connection.hkeys(key))
        elif kind == "stream":
            fields = sorted({field.decode() for _id, entry in connection.xrange(key, count=50)
                             for field in entry})
        shapes.add(f"{name} {kind} {','.join(fields)}")
    return shapes


def measure(server: RedisServer, variant: str, count: int, loaded: bool) -> dict[str, Any]:
    """One run: flush, enqueue, the worker in burst mode (under loops if ``loaded``), checks."""
    control = rq_client(server.url)
    control.flushall()  # the bench's own throwaway server (main), never REDIS_URL
    batch = enqueue(control, count)
    queue = batch.queue
    redis_before = pipeline.redis_cpu(control)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", variant,
               "--url", server.url]
    with busy_loops(2 if loaded else 0), tempfile.TemporaryFile("w+") as errors:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=errors, text=True,
                              start_new_session=True, timeout=600, cwd=pipeline.ROOT)
        errors.seek(0)
        if done.returncode != 0:
            raise RuntimeError(f"worker {variant} exited {done.returncode}: "
                               f"{errors.read()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    redis_s = pipeline.redis_cpu(control) - redis_before
    events = [JobEvent.from_fields(fields) for _id, fields in control.xrange(batch.stream)]
    kinds = pipeline.check_events(events, batch.job_ids, count)
    pipeline.check_rq(control, queue, batch.job_ids, {"finished": 0, "failed": 0}, kinds)
    shapes = key_shapes(control)
    batch.close()
    per_job = 1000 / count
    return {"variant": variant, "loaded": loaded, "jobs_per_s": count / result["wall_s"],
            "cpu_ms": result["cpu_s"] * per_job, "user_ms": result["user_s"] * per_job,
            "redis_ms": redis_s * per_job, "voluntary": result["voluntary"] / count,
            "involuntary": result["involuntary"] / count, "events": dict(kinds),
            "shapes": sorted(shapes), "at": time.strftime("%H:%M:%S", time.gmtime())}


@contextlib.contextmanager
def processor(command: list[str] | None) -> Iterator[None]:
    """pipeline.pipeline_phase with ``command`` as its processor instead of
    7_job_processor.py (None: unchanged): its start is wrapped, nothing else."""
    original = pipeline.start
    if command is not None:
        pipeline.start = lambda _command, url, stderr: original(command, url, stderr)
    try:
        yield
    finally:
        pipeline.start = original


def end_to_end(server: RedisServer, variant: str, count: int, loaded: bool) -> dict[str, Any]:
    """pipeline.py's end-to-end phase: the creator listening, ``variant`` the processor
    (``processor``: 7_job_processor.py; ``b``: this loop, two jobs at a time); or, for
    ``bullmq``, peers.py's run of BullMQ's processor and creator (on a server of its own)."""
    if variant == "bullmq":
        with busy_loops(2 if loaded else 0):
            result = peers.peer_end_to_end("bullmq", count)
        return {"variant": "e2e-bullmq", "loaded": loaded, "jobs_per_s": result["jobs_per_s"],
                "problems": result["problems"],  # its creator's event counts (peers.py)
                "cpu_ms": result["cpu_ms_per_job"]["workers"],
                "redis_ms": result["cpu_ms_per_job"]["redis"],
                "creator_ms": result["cpu_ms_per_job"]["creator"],
                "events": result["events"], "at": time.strftime("%H:%M:%S", time.gmtime())}
    control = rq_client(server.url)
    control.flushall()  # the bench's own throwaway server (main), never REDIS_URL
    command = None if variant == "processor" else [
        sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--url", server.url,
        "--serve"]
    with busy_loops(2 if loaded else 0), processor(command), open(os.devnull, "w") as out, \
            tempfile.TemporaryFile("w+") as errors:
        try:
            result = pipeline.pipeline_phase(server.url, control, count, out, errors)
        except (AssertionError, RuntimeError):
            errors.seek(0)
            log(errors.read()[-2000:])
            raise
    return {"variant": f"e2e-{variant}", "loaded": loaded, "jobs_per_s": result["jobs_per_s"],
            "cpu_ms": result["cpu_ms_per_job"]["workers"],
            "redis_ms": result["cpu_ms_per_job"]["redis"],
            "creator_ms": result["cpu_ms_per_job"]["creator"],
            "events": result["events"], "at": time.strftime("%H:%M:%S", time.gmtime())}


def summary(values: list[float], digits: int) -> str:
    text = f"{statistics.median(values):,.{digits}f}"
    return text + (f" ({min(values):,.{digits}f}-{max(values):,.{digits}f})"
                   if len(values) > 1 else "")


def turned(items: list[str], number: int) -> list[str]:
    """``items``, the order turned by one each round."""
    return items[number % len(items):] + items[:number % len(items)] if items else []


def column(runs: list[dict[str, Any]], name: str, digits: int) -> str:
    return summary([run[name] for run in runs], digits) if name in runs[0] else "-"


def table(runs: list[dict[str, Any]]) -> str:
    rows = [["variant", "load", "runs", "CPU ms/job", "user ms/job", "jobs/s", "Redis ms/job",
             "vol/invol switches per job"]]
    for variant in dict.fromkeys(run["variant"] for run in runs):
        for loaded in (False, True):
            chosen = [run for run in runs if run["variant"] == variant
                      and run["loaded"] == loaded and not run.get("problems")]
            if not chosen:
                continue
            rows.append([variant, "loaded" if loaded else "quiet", str(len(chosen)),
                         column(chosen, "cpu_ms", 3), column(chosen, "user_ms", 3),
                         column(chosen, "jobs_per_s", 0), column(chosen, "redis_ms", 3),
                         f"{column(chosen, 'voluntary', 2)} / "
                         f"{column(chosen, 'involuntary', 2)}"])
    return aligned(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="a,b,c", help="of a, b, c (see above)")
    parser.add_argument("--loaded", action="store_true", help="each round again under 2 loops")
    parser.add_argument("--end-to-end", action="store_true",
                        help="also pipeline.py's end-to-end phase with the processor, with "
                        "b, and BullMQ's (if peers.py installed it)")
    parser.add_argument("--results", type=Path, help="a file for every run's JSON line")
    parser.add_argument("--worker", choices=["a", "b", "c"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.url, burst=not args.serve)
    variants = args.variants.split(",")
    e2e = []
    if args.end_to_end:
        e2e = ["processor", "b"] + (["bullmq"] if peers.CACHE.joinpath(
            peers.PEER_FOLDERS["bullmq"], "node_modules").exists() else [])
    loads = [False, True] if args.loaded else [False]
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    log(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.jobs} jobs, "
        f"{args.rounds} rounds, load average {os.getloadavg()[0]:.2f}")
    with RedisServer() as server:  # never REDIS_URL: a throwaway server of its own
        for number in range(args.rounds):
            busy = peers.wait_for_calm(0.5, 60)  # a neighbour's burst lands less often in one
            log(f"round {number + 1}: cores {busy:.0%} busy before it")
            for loaded in loads if number % 2 == 0 else loads[::-1]:
                for variant in turned(variants, number):
                    run = measure(server, variant, args.jobs, loaded)
                    runs.append(run)
                    log(f"  round {number + 1} {variant} {'loaded' if loaded else 'quiet '}"
                        f" {run['jobs_per_s']:,.0f} jobs/s, {run['cpu_ms']:.3f} CPU ms/job,"
                        f" Redis {run['redis_ms']:.3f}, events {run['events']}")
                for variant in turned(e2e, number):
                    run = end_to_end(server, variant, args.jobs, loaded)
                    runs.append(run)
                    log(f"  round {number + 1} e2e {variant} "
                        f"{'loaded' if loaded else 'quiet '} {run['jobs_per_s']:,} jobs/s,"
                        f" workers {run['cpu_ms']:.3f} CPU ms/job {run.get('problems') or ''}")
    if args.results:
        with open(args.results, "a") as results:
            for run in runs:
                results.write(json.dumps(run) + "\n")
    shapes = {run["variant"]: set(run["shapes"]) for run in runs if "shapes" in run}
    print(f"{len(runs)} runs in {(time.monotonic() - started) / 60:.1f} min, load average at "
          f"end {os.getloadavg()[0]:.2f}; medians (range); every run checked (events, "
          "registries, statuses)")
    print(table(runs))
    for run in runs:
        if run.get("problems"):
            print(f"left out: {run['variant']} {'loaded' if run['loaded'] else 'quiet'} at "
                  f"{run['at']}: {run['problems']}")
    for variant, left in shapes.items():
        if variant != "c" and "c" in shapes:
            print(f"keys left by {variant} and not by c: {sorted(left - shapes['c']) or 'none'};"
                  f" by c and not by {variant}: {sorted(shapes['c'] - left) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
