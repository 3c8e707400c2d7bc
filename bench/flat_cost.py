"""Does an extra job cost the same with 50,000 jobs as with 5,000? Ours only, in detail.

    PYTHONPATH=. .venv/bin/python bench/flat_cost.py --rounds 4     # ~1 min a round

``peers.py --flat`` gives the jobs/s and CPU per job beside BullMQ's; this bench shows
where a difference would come from. In alternating rounds (the order turned each round),
``pipeline.pipeline_phase`` (7_job_processor.py, the creator of 7_job_creator.py, every
event and registry checked) runs ``--small`` and ``--large`` jobs, each on a fresh
throwaway redis-server. Per run: jobs/s, CPU ms per job of each process, Redis commands
per job and the top ones, Redis's µs per call of each command called at least once
a job, Redis memory growth per job (what stays after the run: RQ keeps
every ended job for its result_ttl), the finished/failed registries' sizes, and jobs/s
by tenth of the run (from each job's ``ended_at``): a cost that grows with what is kept
or queued shows as tenths getting slower, whatever the neighbours do between rounds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.utils import utcparse

import pipeline
from before_after import aligned, summary
from queuing import jobs
from queuing.connection import rq_client
from queuing.local_redis import RedisServer

TENTHS = 10


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rates_by_tenth(control: redis.Redis, job_ids: list[bytes]) -> list[float]:
    """Jobs/s in each tenth of the run, the jobs ordered by when they ended."""
    pipe = control.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(f"rq:job:{job_id.decode()}", "ended_at")
    ends = sorted(utcparse(value.decode()).timestamp() for value in pipe.execute())
    size = len(ends) // TENTHS
    return [round(size / max(ends[(i + 1) * size - 1] - ends[i * size], 1e-6))
            for i in range(TENTHS)]


def one_run(count: int) -> dict[str, Any]:
    """pipeline_phase with ``count`` jobs on a fresh server, and what it left there."""
    with RedisServer() as server, open(os.devnull, "w") as out, \
            tempfile.TemporaryFile("w+") as errors:
        control = rq_client(server.url)
        before = control.info("memory")["used_memory"]
        try:
            result = pipeline.pipeline_phase(server.url, control, count, out, errors)
        except (AssertionError, RuntimeError) as error:
            errors.seek(0)
            log(errors.read()[-2000:])
            return {"jobs": count, "problems": [str(error)[:500]]}
        stats = control.info("commandstats")  # this run's, and its checks' few reads
        queue = jobs.json_queue(pipeline.QUEUE, control)
        finished, failed = FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)
        job_ids = control.zrange(finished.key, 0, -1) + control.zrange(failed.key, 0, -1)
        result.update(
            jobs=count, problems=[],
            bytes_kept_per_job=round((control.info("memory")["used_memory"] - before) / count),
            registries={"finished": finished.count, "failed": failed.count},
            keys=control.dbsize(), jobs_per_s_by_tenth=rates_by_tenth(control, job_ids),
            redis_us_per_call={name.removeprefix("cmdstat_"): stat["usec_per_call"]
                               for name, stat in stats.items() if stat["calls"] >= count})
    return result


FIGURES = [
    ("end to end, jobs/s", lambda r: r["jobs_per_s"], 0),
    ("jobs/s, first tenth of the run", lambda r: r["jobs_per_s_by_tenth"][0], 0),
    ("jobs/s, last tenth of the run", lambda r: r["jobs_per_s_by_tenth"][-1], 0),
    ("last tenth / first tenth", lambda r: r["jobs_per_s_by_tenth"][-1]
     / r["jobs_per_s_by_tenth"][0], 2),
    ("CPU ms/job, creator", lambda r: r["cpu_ms_per_job"]["creator"], 3),
    ("CPU ms/job, workers", lambda r: r["cpu_ms_per_job"]["workers"], 3),
    ("CPU ms/job, Redis", lambda r: r["cpu_ms_per_job"]["redis"], 3),
    ("CPU ms/job, all", lambda r: sum(r["cpu_ms_per_job"].values()), 3),
    ("Redis commands/job", lambda r: r["commands_per_job"], 1),
    ("Redis memory kept, B/job", lambda r: r["bytes_kept_per_job"], 0),
]


def table(runs: dict[int, list[dict]], small: int, large: int) -> str:
    """One row per figure: medians (range) at both sizes and large / small."""
    rows = [["figure", f"{small:,} jobs", f"{large:,} jobs", "large / small"]]
    for label, read, digits in FIGURES:
        found = {size: [read(r) for r in runs[size] if not r["problems"]]
                 for size in (small, large)}
        medians = [statistics.median(found[size]) if found[size] else None
                   for size in (small, large)]
        ratio = f"{medians[1] / medians[0]:.3f}" if all(medians) else "-"
        rows.append([label, summary(found[small], digits), summary(found[large], digits),
                     ratio])
    return aligned(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--large", type=int, default=50_000)
    parser.add_argument("--results", type=Path, help="write every run as a JSON line here")
    args = parser.parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    runs: dict[int, list[dict]] = {args.small: [], args.large: []}
    raw = open(args.results, "w") if args.results else None  # noqa: SIM115
    try:
        for round_number in range(1, args.rounds + 1):
            sizes = (args.small, args.large) if round_number % 2 else (args.large, args.small)
            for size in sizes:
                result = one_run(size)
                result.update(round=round_number, load_average=os.getloadavg()[0])
                runs[size].append(result)
                log(f"round {round_number} {size:>6} jobs: {result.get('jobs_per_s')} jobs/s,"
                    f" cpu {result.get('cpu_ms_per_job')}, tenths"
                    f" {result.get('jobs_per_s_by_tenth')} {result['problems'] or ''}")
                if raw:
                    raw.write(json.dumps(result) + "\n")
                    raw.flush()
    finally:
        if raw:
            raw.close()
    print(f"{started:%Y-%m-%d %H:%M} UTC, {args.rounds} rounds, load average at end"
          f" {os.getloadavg()[0]:.2f}; medians (range)")
    print(table(runs, args.small, args.large))
    return 1 if any(r["problems"] for size in runs.values() for r in size) else 0


if __name__ == "__main__":
    sys.exit(main())
