"""The batched enqueue: many jobs of one function in one transaction, as RQ writes them.

``Queue.enqueue`` costs three round trips and RQ's Python work per job; :func:`enqueue_jobs`
writes the same job hashes for a whole batch in two round trips (task 7's creator uses it;
tasks 6 and 8 show RQ's own ``enqueue``), with a shorter description
(:func:`job_description`). ``tests/test_fast_enqueue.py`` checks every field against
``Queue.enqueue``'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import redis
from redis.commands.core import Script
from rq import Callback, Queue
from rq.defaults import CALLBACK_TIMEOUT
from rq.serializers import JSONSerializer
from rq.utils import get_call_string, now, utcformat

from queuing import jobs, replication
from queuing.connection import through_outages
from queuing.constants import (
    BATCH_MARKER_KEY,
    BATCH_MARKER_SECONDS,
    JOB_ID_KEY,
)
from queuing.job_events import (
    REPLY_TO,
    job_completed,
    job_failed,
)

ENQUEUE_JOBS_LUA = (Path(__file__).parent / "lua" / "enqueue_jobs.lua").read_text()
# KEYS: the job id counter. ARGV: an id. Sets the counter to the id if it is below.
RAISE_COUNTER_LUA = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
"""

# Jobs per transaction of the batched enqueue: enough that a round trip and the created
# lines' write are shared by many jobs, few enough that the first lines show at once and
# that other clients wait little behind one transaction (Redis runs it in ~1.5 ms here).
ENQUEUE_BATCH = 500

# The length past which a batched job's description cuts an argument's repr (adding
# "..."; RQ's Job.get_call_string cuts at 75): the course's job is then described in 60
# characters, one 64-byte allocation in its hash instead of 160 (bench/README.md,
# "Memory per pending job").
DESCRIPTION_ARG_LENGTH = 30

# JSON without spaces: json.loads (RQ's JSONSerializer) reads it the same, and the hash
# stays small enough for Redis's compact encoding (README, "Redis settings").
_COMPACT = (",", ":")


class JobTemplate(NamedTuple):
    """What every job of one function and one reply stream shares."""

    func_name: str  # as the jobs name it: "queuing.jobs.tracked" (jobs.SHORT_NAMES)
    fields: list[bytes]  # the job hash's shared fields: field, value, field, value...


def require_json_queue(queue: Queue) -> None:
    """Raise ValueError unless ``queue`` serializes jobs with RQ's JSONSerializer: the
    batched enqueue writes JSON job data, and the workers read nothing else."""
    if queue.serializer is not JSONSerializer and type(queue.serializer) is not JSONSerializer:
        raise ValueError(
            f"queue {queue.name} is not a JSON queue (its serializer: "
            f"{getattr(queue.serializer, '__name__', type(queue.serializer).__name__)}); "
            "make it with jobs.json_queue(name, connection)")


def job_template(queue: Queue, func: Callable | str, reply_to: str) -> JobTemplate:
    """The hash fields of a ``func`` job whose events go to ``reply_to``, made once by RQ's
    own Job (``Queue.create_job`` and ``Job.to_dict``, as ``Queue.enqueue`` does), so the
    fields and their values are RQ's. Left out, because RQ reads the job the same without
    them and each costs memory in every pending job:

    - the fields that differ per job (``data``, ``description``, ``created_at``,
      ``enqueued_at``): :func:`enqueue_jobs` adds them (the description shorter than
      RQ's: :func:`job_description`);
    - empty fields (``started_at``, ``worker_name``...): RQ reads a missing one as empty;
    - the callbacks' timeouts when they are RQ's default: RQ reads a missing one as it.

    The function and the callbacks are named by their short names (jobs.SHORT_NAMES),
    which RQ imports as the same functions. The job's ``timeout`` stays, default or not:
    RQ's forking ``Worker`` adds 60 to it while watching a long job, and would fail on a
    missing one.
    """
    require_json_queue(queue)
    job = queue.create_job(func, meta={REPLY_TO: reply_to},
                           on_success=Callback(job_completed), on_failure=Callback(job_failed))
    fields = job.to_dict()
    fields["meta"] = json.dumps(job.meta, separators=_COMPACT)
    for per_job in ("data", "description", "created_at", "enqueued_at"):
        fields.pop(per_job, None)
    for name in ("success_callback_timeout", "failure_callback_timeout",
                 "stopped_callback_timeout"):
        if fields.get(name) == CALLBACK_TIMEOUT:
            del fields[name]
    for name in ("success_callback_name", "failure_callback_name"):
        fields[name] = jobs.short_name(fields[name])
    encode = queue.connection.get_encoder().encode
    shared = [encode(part) for name, value in fields.items() if value not in ("", b"")
              for part in (name, value)]
    return JobTemplate(jobs.short_name(job.func_name), shared)


def job_description(func_name: str, args: Sequence[Any]) -> str:
    """The ``description`` of a ``func_name(*args)`` job: RQ's form of the call
    (``Job.get_call_string``), with the function's own name instead of its dotted path
    and each argument cut at DESCRIPTION_ARG_LENGTH characters instead of 75, so the
    course's job says what it does and to whom in 60 characters:
    ``push_tracked_notification({'phoneNumber': '4153518743', ...)``. The job's
    ``func_name`` and ``args`` still hold the whole call.

    Every job needs one: RQ's log line for each job it takes shows it, coloured in a
    terminal, where a job without one crashes the worker; rq-dashboard names the job
    by it."""
    return get_call_string(func_name.rpartition(".")[2], args, {},
                           max_length=DESCRIPTION_ARG_LENGTH)


def enqueue_jobs(queue: Queue, template: JobTemplate,
                 args_per_job: Sequence[Sequence[Any]]) -> list[str]:
    """Enqueue one ``template`` job per ``args`` (its positional arguments), with new
    consecutive ids, and return the ids: the jobs ``Queue.enqueue`` would write (in the
    compact form of :func:`job_template`), in 2 round trips for the whole batch instead
    of 3 per job, and without RQ's Python work per job.

    One INCRBY takes the ids; one Lua script (lua/enqueue_jobs.lua) writes every job hash
    and pushes the ids onto the queue in one RPUSH, so a creator interrupted at any point
    (Ctrl-C) leaves each job in Redis whole and queued, or not at all. The batch's jobs
    share one timestamp (``created_at`` = ``enqueued_at``): they appear at the same
    instant to every reader.

    A Redis restart or stall does not end the creator: it prints the course's
    not-connected line, waits for Redis and tries again. Trying again never writes a job
    twice: the script marks its batch, and does nothing when the mark is there (a reply
    lost after the script ran). A retried INCRBY may skip ids, as Kue's counter could.

    In the replicated mode (``REDIS_MIN_REPLICAS``) the batch is written once the required
    replicas have it, and the id counter past its ids; otherwise replication.NotReplicated,
    naming the batch's jobs, which are on the master but not confirmed.
    """
    if not args_per_job:
        return []
    connection = queue.connection
    job_ids = through_outages(connection, jobs.reserve_job_ids, connection, len(args_per_job))
    stamp = utcformat(now()).encode()
    fields = [*template.fields, b"created_at", stamp, b"enqueued_at", stamp]
    key_prefix = queue.job_class.redis_job_namespace_prefix
    described_as = jobs.full_name(template.func_name)
    per_job = []
    for job_id, args in zip(job_ids, args_per_job, strict=True):
        # RQ's job data: [func_name, instance, args, kwargs], serialized by the queue.
        data = json.dumps([template.func_name, None, args, {}], separators=_COMPACT)
        per_job += [job_id, data, job_description(described_as, args)]
    keys = [queue.redis_queues_keys, queue.key,
            BATCH_MARKER_KEY.format(first_job_id=job_ids[0]),
            *(key_prefix + job_id for job_id in job_ids)]
    args = [BATCH_MARKER_SECONDS, len(fields), *fields, *per_job]
    script = connection.register_script(ENQUEUE_JOBS_LUA)
    try:
        through_outages(connection, _write_batch, connection, script, keys, args,
                        job_ids[-1])
    except replication.NotReplicated as error:
        raise error.for_jobs(job_ids) from None
    return job_ids


def _write_batch(connection: redis.Redis, script: Script, keys: list, args: list,
                 last_job_id: str) -> None:
    """Run the batch's script, then, in the replicated mode, wait for its replicas
    (replication.confirm, which checks the batch's marker is on the server it asks): a
    retry after an outage does both again, so a batch confirmed after a failover is on
    the new master. Before the wait, the id counter is raised to the batch's last id if
    it is below (a failover lost the INCRBY, not the retried batch): a confirmed batch's
    ids are never handed out again."""
    script(keys=keys, args=args)
    if replication.required_replicas() > 0:
        connection.eval(RAISE_COUNTER_LUA, 1, JOB_ID_KEY, last_job_id)
    replication.confirm(connection, written=keys[2:3])
