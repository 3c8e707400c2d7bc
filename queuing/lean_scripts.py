"""The calls of lean_worker's two Lua scripts, lua/start_job.lua and lua/end_job.lua.

The scripts restate RQ 3.0's own writes when a job starts and ends (each block of them
names the RQ method it restates); here is what they are called with: every key they
touch, in KEYS, and the values that need Python (times, ids, RQ's encoding of a result,
the fields of the job's events, which job_events.py makes) in ARGV. When a job's end
also starts the next job, both go in one script call (END_AND_START_LUA, the two
scripts' bodies unchanged, run one after the other).
tests/test_lean_worker.py compares what they leave in Redis with RQ's SimpleWorker.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple
from uuid import uuid4

import redis
import rq
from rq.defaults import DEFAULT_WORKER_TTL
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.results import Result
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import now, str_to_date

from queuing.constants import JOB_EVENTS_TTL_SECONDS
from queuing.job_events import JobEvent

try:
    import hiredis
except ImportError:  # redis[hiredis] is a dependency; without it, redis-py's own packer
    hiredis = None

_LUA = Path(__file__).parent / "lua"
START_JOB_LUA = (_LUA / "start_job.lua").read_text()
END_JOB_LUA = (_LUA / "end_job.lua").read_text()
# An end and the next start in one call: KEYS are the end's then the start's; ARGV[1] and
# ARGV[2] how many KEYS and ARGV are the end's, then the end's ARGV, then the start's.
# Each script's body runs as a function whose KEYS and ARGV are its own part.
END_AND_START_LUA = f"""
local function part(list, first, last)
  local out = {{}}
  for i = first, last do out[#out + 1] = list[i] end
  return out
end
local function end_job(KEYS, ARGV)
{END_JOB_LUA}
end
local function start_job(KEYS, ARGV)
{START_JOB_LUA}
end
local end_keys, end_args = tonumber(ARGV[1]), tonumber(ARGV[2])
local ended = end_job(part(KEYS, 1, end_keys), part(ARGV, 3, 2 + end_args))
return {{ended, start_job(part(KEYS, end_keys + 1, #KEYS), part(ARGV, 3 + end_args, #ARGV))}}
"""

# The RQ release line whose bookkeeping the scripts restate, and the only one the lean
# worker runs with (workers.py chooses RQ's own worker code otherwise).
RESTATED_RQ = (3, 0)
# How long the round trips keep one connection of the pool before they give it back and
# take one again. Taking one per round trip cost ~10 us (the pool's checks), but those
# checks follow a new master behind a Sentinel URL (sentinel.py) and find a connection
# Redis closed while the worker was idle.
HOLD_SECONDS = 0.5
# How many of the job ids first in the queue a start names: when other workers took the
# first ones meanwhile, one of the next is at the head, and the start needs no second try.
HEADS = 3


def restates_installed_rq() -> bool:
    """Whether the installed RQ is the release line the scripts restate."""
    major, minor = (int(part) for part in rq.__version__.split(".")[:2])
    return (major, minor) == RESTATED_RQ


class Call(NamedTuple):
    """One script call: which script, its KEYS and ARGV."""

    script: str
    keys: list[str]
    args: list[Any]


class StartCall(NamedTuple):
    """A start_job call, with what the worker needs of it once the job is started."""

    call: Call
    execution_id: str
    at: datetime


def start_call(worker: Any, queue_key: str, intermediate_key: str, started_registry: str,
               job_ids: list[str], wait_for: str | None = None) -> StartCall:
    """The start of whichever of ``job_ids`` (the first few last seen in the queue) is at
    its head;
    ``wait_for``: a set that must be empty for the start (the dependents of the job that
    just ended)."""
    at, execution_id = now(), uuid4().hex
    keys = [queue_key, intermediate_key, worker.key, worker.executions_key, started_registry,
            WORKERS_SUSPENDED]
    job_prefix = worker.job_class.redis_job_namespace_prefix  # Job.key_for
    for job_id in job_ids:
        keys += [job_prefix + job_id, _EXECUTION_KEY.format(job_id, execution_id),
                 _EXECUTIONS_KEY.format(job_id)]
    if wait_for is not None:
        keys.append(wait_for)
    stamp = at.timestamp()
    args = [job_ids[0], execution_id, repr(stamp), math.floor(stamp), utc_text(at),
            worker.name, DEFAULT_WORKER_TTL, "1" if wait_for is not None else "", HEADS,
            *job_ids[1:]]
    return StartCall(Call("start", keys, args), execution_id, at)


# RQ's key of an execution (Execution.key) and of a job's executions (ExecutionRegistry),
# as templates made by RQ's own code: building an Execution per key cost ~1 us.
_EXECUTION_KEY = Execution("{1}", "{0}", None).key  # type: ignore[arg-type]
_EXECUTIONS_KEY = ExecutionRegistry.key_template


def utc_text(at: datetime) -> str:
    """rq.utils.utcformat(at) (``2026-12-02T02:20:15.516097Z``), in half the time: the
    same digits from isoformat, for a UTC (or naive) time of the years 1000-9999."""
    return at.isoformat(timespec="microseconds")[:26] + "Z"


def end_call(job: Job, worker: Any, execution: Execution, started_registry: str,
             end_registry: str, result: Result, *, result_ttl: int | None, ttl: int,
             score: Any, counter: str, events: list[tuple[str, JobEvent]]) -> Call:
    """The end of ``job``, recorded in ``end_registry`` with ``result``, after ``events``."""
    streams = list(dict.fromkeys(stream for stream, _event in events))
    keys = [job.key, worker.key, worker.executions_key, started_registry, end_registry,
            Result.get_key(job.id), _EXECUTION_KEY.format(job.id, execution.id),
            _EXECUTIONS_KEY.format(job.id), job.dependents_key, job.dependencies_key, *streams]
    job_fields = flat({"status": job._status, "started_at": utc_text(job.started_at),
                       "ended_at": utc_text(job.ended_at),
                       "last_heartbeat": utc_text(job.last_heartbeat),
                       "worker_name": worker.name})
    result_fields = flat(result.serialize())
    args: list[Any] = [
        job.id, execution.id, counter, repr((job.ended_at - job.started_at).total_seconds()),
        ttl, score, "" if result_ttl is None else result_ttl, JOB_EVENTS_TTL_SECONDS,
        len(job_fields), *job_fields, len(result_fields), *result_fields]
    for stream, event in events:
        fields = flat(event.fields())  # the stream entry job_events.write_events writes
        args += [11 + streams.index(stream), len(fields), *fields]
    return Call("end", keys, args)


def started_job(worker: Any, job_id: str, fields: list[bytes], start: StartCall) -> Job:
    """The job the start script started, from the hash it read, as RQ has it after
    prepare_job_execution; its execution goes in the worker's. Raises what RQ's
    Job.restore raises for a malformed hash."""
    # The worker's serializer is resolved already: Job() would check it again against
    # RQ's typing.Protocol (~10 us a job), so the job gets it once built.
    job = worker.job_class(job_id, connection=worker.connection)
    job.serializer = worker.serializer
    hash_fields = dict(zip(fields[::2], fields[1::2], strict=True))
    shared_dates = {name: hash_fields.pop(name) for name in _SHARED_DATES
                    if hash_fields.get(name)}
    job.restore(hash_fields)
    for name, text in shared_dates.items():
        setattr(job, name.decode(), _parsed_date(text))
    job._status = JobStatus.STARTED
    job.worker_name, job.started_at, job.last_heartbeat = worker.name, start.at, start.at
    job.redis_server_version = worker.get_redis_server_version()
    execution = Execution(start.execution_id, job_id, worker.connection,
                          worker_name=worker.name)
    execution.created_at = execution.last_heartbeat = start.at
    worker.executions[start.execution_id] = execution
    return job


# A batch's jobs share their creation and enqueue times (fast_enqueue.py): RQ's
# Job.restore parses each with strptime (~10 us); here each distinct text is parsed once,
# by RQ's own str_to_date (a datetime is immutable, so jobs may share one).
_SHARED_DATES = (b"created_at", b"enqueued_at")
_parsed_date = lru_cache(maxsize=64)(str_to_date)


def undo_start(worker: Any, job_id: str, execution_id: str) -> None:
    """Undo the start script's execution records of a job that will not run."""
    execution = Execution(execution_id, job_id, worker.connection)
    with worker.connection.pipeline(transaction=True) as pipe:
        pipe.delete(execution.key)
        pipe.zrem(ExecutionRegistry.key_template.format(job_id), execution_id)
        pipe.srem(worker.executions_key, execution.composite_key)
        pipe.hset(worker.key, "state", "idle")
        pipe.execute()


class Scripts:
    """The scripts on one connection, sent as EVALSHA (loaded when Redis lacks them).

    The calls are packed and their replies read here rather than by a redis-py
    pipeline: at one round trip per job, the pipeline's own Python (its objects, a test
    of each of some 80 arguments per call, the reply parsing per command) was ~15 % of a
    worker's CPU (bench/README.md, "Under load"). A connection error is raised as
    redis-py raises it; the worker's caller waits for Redis and runs the calls again
    (both scripts may run twice)."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self.scripts = {"start": connection.register_script(START_JOB_LUA),
                        "end": connection.register_script(END_JOB_LUA),
                        "end_and_start": connection.register_script(END_AND_START_LUA)}
        self._held: Any = None  # the pool's connection the round trips use now
        self._held_until = 0.0

    def _connection(self) -> Any:
        """The connection for the next round trip: the one held, taken from the pool at
        most HOLD_SECONDS ago, else another."""
        now = time.monotonic()
        if self._held is None or now >= self._held_until:
            self.release()
            self._held = self.connection.connection_pool.get_connection()
            self._held_until = now + HOLD_SECONDS
        return self._held

    def release(self) -> None:
        """Give the held connection back to the pool (when the worker ends)."""
        held, self._held = self._held, None
        if held is not None:
            self.connection.connection_pool.release(held)

    def run(self, calls: list[Call]) -> list[Any]:
        """The replies of ``calls``, sent in one round trip; an end followed by a start is
        one script call (END_AND_START_LUA), its reply the two scripts' replies."""
        if [call.script for call in calls] == ["end", "start"]:
            end, start = calls
            both = Call("end_and_start", [*end.keys, *start.keys],
                        [len(end.keys), len(end.args), *end.args, *start.args])
            return self._run([both])[0]
        return self._run(calls)

    def _run(self, calls: list[Call]) -> list[Any]:
        commands = [("EVALSHA", self.scripts[script].sha, len(keys), *keys, *args)
                    for script, keys, args in calls]
        while True:
            replies = self._round_trip(commands)
            if not any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
                break
            for script in self.scripts.values():  # a new or restarted Redis: load them
                self.connection.script_load(script.script)
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    def _round_trip(self, commands: list[tuple]) -> list[Any]:
        """Send ``commands`` and read their replies, an error reply as its exception; a
        connection left in an unknown state is closed, not reused."""
        connection = self._connection()
        try:
            if hiredis is not None:
                connection.send_packed_command([b"".join(map(hiredis.pack_command, commands))])
            else:
                connection.send_packed_command(connection.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as error:
                    replies.append(error)
            return replies
        except BaseException:
            connection.disconnect()  # the next round trip connects it again
            raise


def flat(fields: dict[str, Any]) -> list[str]:
    """A hash's fields as HSET/XADD take them, each value encoded as redis-py would."""
    return [part for key, value in fields.items() for part in (key, _encoded(value))]


def _encoded(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):  # JobStatus too: a str whose str() is its name
        return str.__str__(value)
    return repr(value) if isinstance(value, float) else str(value)
