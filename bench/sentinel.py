"""The pipeline through a Sentinel URL against the same master addressed directly.

    .venv/bin/python bench/sentinel.py --rounds 5 --jobs 5000 --enqueue-jobs 50000

A throwaway rig (queuing.local_redis.SentinelRig: a master, a replica, three sentinels on
127.0.0.1) runs ``bench/pipeline.py`` in alternating rounds, with REDIS_URL the master's
own ``redis://`` URL, then the rig's ``redis+sentinel://`` one: the same Redis, the same
replication, only the way clients find the master differs. Prints each round's end-to-end
jobs/s, enqueue jobs/s and the clients' CPU per job (creator and workers: what the URL
changes), the medians, and the Sentinel URL's medians as ratios of the direct one's.

The CPU per job is the steadier figure on a shared machine: jobs/s moves with the
neighbours' load, the CPU a job costs much less.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from queuing.local_redis import SentinelRig

PIPELINE = Path(__file__).resolve().parent / "pipeline.py"


def run_pipeline(url: str, jobs: int, enqueue_jobs: int) -> dict:
    done = subprocess.run(
        [sys.executable, str(PIPELINE), "--jobs", str(jobs), "--enqueue-jobs", str(enqueue_jobs),
         "--count-jobs", "0", "--no-plain-rq"],
        env={**os.environ, "REDIS_URL": url}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pipeline.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=5000, help="end to end")
    parser.add_argument("--enqueue-jobs", type=int, default=50_000)
    args = parser.parse_args()
    figures: dict[str, dict[str, list[float]]] = {
        kind: {"end_to_end": [], "enqueue": [], "client_cpu_ms": []}
        for kind in ("direct", "sentinel")}
    # The sentinels of the tests' rig fail a master over after 1 s without an answer: a
    # loaded machine can stall it that long, and the direct URL cannot follow a failover.
    with SentinelRig(down_after_ms=60_000) as rig:
        for number in range(1, args.rounds + 1):
            urls = [("direct", f"redis://127.0.0.1:{rig.master_port()}"),
                    ("sentinel", rig.url)]
            # Each goes first in every other round: the second run of a round meets a
            # bigger append-only file and a warmer machine.
            for kind, url in urls if number % 2 else urls[::-1]:
                result = run_pipeline(url, args.jobs, args.enqueue_jobs)
                figures[kind]["end_to_end"].append(result["jobs_per_s"])
                figures[kind]["enqueue"].append(result["enqueue_per_s"])
                cpu = result["cpu_ms_per_job"]
                figures[kind]["client_cpu_ms"].append(cpu["creator"] + cpu["workers"])
                print(f"round {number} {kind:8} end to end {result['jobs_per_s']:7.0f}"
                      f" jobs/s, enqueue {result['enqueue_per_s']:7.0f} jobs/s, client CPU"
                      f" {cpu['creator'] + cpu['workers']:.3f} ms/job", flush=True)
    medians = {kind: {name: statistics.median(values) for name, values in by_name.items()}
               for kind, by_name in figures.items()}
    ratio = {name: medians["sentinel"][name] / medians["direct"][name]
             for name in ("end_to_end", "enqueue", "client_cpu_ms")}
    print(json.dumps({"medians": medians, "sentinel_over_direct": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
