"""Before and after: the same benches on two revisions, in alternating rounds, one table.

    .venv/bin/python bench/before_after.py BEFORE_REV [AFTER_REV]     # AFTER_REV: HEAD

Each revision is cloned from this repository's committed history into a temporary folder
(``git clone -q REPO DIR && git -C DIR checkout -q REV``: uncommitted edits are in neither).
Then, ``--rounds`` times: the before tree's ``bench/pipeline.py`` and HTTP bench
(``bench/http_load.py``, named ``bench/http.py`` before the rename), then the after tree's.
Every run uses the same interpreter (``--python``, default this repository's
``.venv/bin/python``), starts in its clone, with ``PYTHONPATH`` set to that clone and
``REDIS_URL`` unset, so that each bench starts its own throwaway redis-server and imports
its own tree's code:

- a tree with a ``queuing/`` package (the redesign): the clone's ``queuing`` comes before
  the venv's installed copy; checked before the first round;
- a flat tree (``py-modules = []``, before the redesign): its benches put its root first on
  ``sys.path`` themselves and import its flat modules (``jobs``, ``stock``...); checked
  that none of its Python files imports ``queuing``, so the installed package never runs.

The last lines are a table of medians (with the range) per figure and the ratio
after / before. Every run's JSON line is written to ``--results`` (default: a new folder
under /tmp, named at the start). The HTTP bench needs ``wrk`` (``--no-http`` to skip it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PYTHON = REPO / ".venv" / "bin" / "python"
HTTP_BENCHES = ("bench/http_load.py", "bench/http.py")  # after the rename, before it
RUN_TIMEOUT = 600.0

# (label, bench, how to read the figure from its JSON line, digits shown)
FIGURES: list[tuple[str, str, Callable[[dict], float], int]] = [
    ("end to end, jobs/s", "pipeline", lambda r: r["jobs_per_s"], 0),
    ("plain RQ in the same run, jobs/s", "pipeline", lambda r: r["plain_rq_jobs_per_s"], 0),
    ("ratio to plain RQ", "pipeline", lambda r: r["ratio_to_plain_rq"], 2),
    ("enqueue only, jobs/s", "pipeline", lambda r: r["enqueue_per_s"], 0),
    ("CPU ms per job, workers", "pipeline", lambda r: r["cpu_ms_per_job"]["workers"], 3),
    ("round trips per job", "pipeline", lambda r: r["round_trips_per_job"], 2),
    ("GET /list_products/1, req/s", "http", lambda r: r["stock"]["list_products"]["req_per_s"], 0),
    ("GET /list_products/1, p99 ms", "http", lambda r: r["stock"]["list_products"]["p99_ms"], 1),
    ("GET /available_seats, req/s", "http",
     lambda r: r["seats"]["available_seats"]["req_per_s"], 0),
    ("GET /available_seats, p99 ms", "http", lambda r: r["seats"]["available_seats"]["p99_ms"], 1),
]


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


class Tree:
    """One revision, cloned; its benches and the environment they run in."""

    def __init__(self, label: str, rev: str, folder: Path, python: str) -> None:
        self.label, self.python = label, python
        self.commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
        self.rev = rev
        self.root = folder / label
        subprocess.run(["git", "clone", "-q", str(REPO), str(self.root)], check=True)
        subprocess.run(["git", "-C", str(self.root), "checkout", "-q", self.commit], check=True)
        self.http = next((self.root / name for name in HTTP_BENCHES
                          if (self.root / name).exists()), None)
        self.env = {name: value for name, value in os.environ.items()
                    if name not in ("REDIS_URL", "PYTHONPATH", "PYTHONHOME")}
        self.env["PYTHONPATH"] = str(self.root)
        self.packaged = (self.root / "queuing" / "__init__.py").exists()

    def check_imports(self) -> str:
        """Fail unless this tree's benches will run this tree's code; say what was checked."""
        if self.packaged:
            where = subprocess.run(
                [self.python, "-c", "import queuing; print(queuing.__file__)"],
                cwd=self.root, env=self.env, capture_output=True, text=True, check=True,
            ).stdout.strip()
            if not Path(where).resolve().is_relative_to(self.root.resolve()):
                raise SystemExit(f"{self.label}: queuing imports from {where}, not the clone")
            return f"queuing from {where}"
        users = subprocess.run(
            ["git", "-C", str(self.root), "grep", "-lE", r"^\s*(from|import) queuing\b",
             "--", "*.py"], capture_output=True, text=True).stdout.split()
        if users:
            raise SystemExit(f"{self.label}: a flat tree whose files import queuing: {users}")
        where = subprocess.run(  # its benches' own module, found where they will find it
            [self.python, "-c", "import importlib.util as u;"
             " print(u.find_spec('local_redis').origin)"],
            cwd=self.root, env=self.env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        if not Path(where).resolve().is_relative_to(self.root.resolve()):
            raise SystemExit(f"{self.label}: local_redis found at {where}, not in the clone")
        return f"flat modules, no file imports queuing; local_redis from {where}"

    def run(self, bench: Path, args: list[str], results: Path, name: str) -> dict | None:
        """One bench run; its last stdout line as JSON, or None if it failed."""
        started = time.monotonic()
        log_path = results / f"{name}.log"
        with open(log_path, "w") as errors:
            try:
                done = subprocess.run([self.python, str(bench), *args], cwd=self.root,
                                      env=self.env, stdout=subprocess.PIPE, stderr=errors,
                                      text=True, timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"  {name}: timed out after {RUN_TIMEOUT:.0f} s (log: {log_path})")
                return None
        lines = done.stdout.strip().splitlines()
        took = time.monotonic() - started
        try:
            result = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            result = None
        if done.returncode != 0:  # the HTTP bench's exit 1 (oversold) still has its line
            log(f"  {name}: exit {done.returncode}, {took:.0f} s; log: {log_path}")
            log("    " + log_path.read_text()[-1500:].replace("\n", "\n    "))
        if not isinstance(result, dict):
            return None
        result["_seconds"] = round(took, 1)
        (results / f"{name}.jsonl").write_text(json.dumps(result) + "\n")
        return result


def figure(result: dict, read: Callable[[dict], float]) -> float | None:
    try:
        value = read(result)
    except (KeyError, TypeError):
        return None
    return None if value is None else float(value)


def summary(values: list[float], digits: int) -> str:
    """Median (min-max), or "-" for none."""
    if not values:
        return "-"
    text = f"{statistics.median(values):,.{digits}f}"
    if len(values) > 1:
        text += f" ({min(values):,.{digits}f}-{max(values):,.{digits}f})"
    return text


def aligned(rows: list[list[str]]) -> str:
    """``rows`` as text columns: the first row a header, ruled below; the first column
    to the left, the figures to the right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                       for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def table(trees: list[Tree], runs: dict[tuple[str, str], list[dict]]) -> str:
    before, after = trees
    header = ["figure", f"before {before.commit[:7]}", f"after {after.commit[:7]}",
              "after / before"]
    rows = [header]
    for label, bench, read, digits in FIGURES:
        sides = [[v for r in runs[(tree.label, bench)]
                  if (v := figure(r, read)) is not None] for tree in trees]
        if not any(sides):
            continue
        ratio = (f"{statistics.median(sides[1]) / statistics.median(sides[0]):.2f}"
                 if all(sides) and statistics.median(sides[0]) else "-")
        rows.append([label, summary(sides[0], digits), summary(sides[1], digits), ratio])
    for bench in ("pipeline", "http"):
        counts = [len(runs[(tree.label, bench)]) for tree in trees]
        if any(counts):
            rows.append([f"{bench} runs that passed", *map(str, counts), ""])
    http_ok = [all(r["stock"]["reserve_product"]["ok"] and r["seats"]["reserve_seat"]["ok"]
                   for r in runs[(tree.label, "http")]) for tree in trees]
    if any(runs[(tree.label, "http")] for tree in trees):
        rows.append(["reservation runs, 0 oversold", *("yes" if ok else "NO" for ok in http_ok),
                     ""])
    return aligned(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before_rev")
    parser.add_argument("after_rev", nargs="?", default="HEAD")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds; each runs both benches on both trees (~1.6-2.5 min)")
    parser.add_argument("--python", default=str(DEFAULT_PYTHON),
                        help="the interpreter of every run (default: the repo's .venv)")
    parser.add_argument("--pipeline-args", default="--jobs 5000 --count-jobs 1000",
                        help="arguments of each pipeline.py run (one string)")
    parser.add_argument("--http-args", default="", help="arguments of each HTTP bench run")
    parser.add_argument("--no-http", action="store_true", help="the pipeline bench only")
    parser.add_argument("--results", type=Path,
                        help="folder for every run's JSON line and log (default: new, /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the clones")
    args = parser.parse_args(argv)
    if not args.no_http and not shutil.which("wrk"):
        log("wrk not found: the HTTP bench needs it (sudo apt-get update && sudo apt-get "
            "install -y wrk; macOS: brew install wrk), or pass --no-http")
        return 2
    results = args.results or Path(tempfile.mkdtemp(prefix="before-after-"))
    results.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="before-after-trees-"))
    benches = ["pipeline"] + ([] if args.no_http else ["http"])
    runs: dict[tuple[str, str], list[dict]] = {
        (side, bench): [] for side in ("before", "after") for bench in ("pipeline", "http")}
    started = time.monotonic()
    try:
        trees = [Tree("before", args.before_rev, folder, args.python),
                 Tree("after", args.after_rev, folder, args.python)]
        for tree in trees:
            log(f"{tree.label}: {tree.rev} = {tree.commit[:10]}, {tree.check_imports()};"
                f" HTTP bench: {tree.http and tree.http.relative_to(tree.root)}")
            if "http" in benches and tree.http is None:
                raise SystemExit(f"{tree.label}: no HTTP bench ({' or '.join(HTTP_BENCHES)})")
        log(f"results: {results}; load average {os.getloadavg()}")
        for round_number in range(1, args.rounds + 1):
            round_started = time.monotonic()
            for tree in trees:
                for bench in benches:
                    path = (tree.root / "bench" / "pipeline.py" if bench == "pipeline"
                            else tree.http)
                    extra = (args.pipeline_args if bench == "pipeline" else args.http_args)
                    name = f"{tree.label}-{bench}-{round_number}"
                    result = tree.run(path, extra.split(), results, name)
                    if result is not None:
                        runs[(tree.label, bench)].append(result)
                        shown = [f"{label.split(',')[0]}={value:g}" for label, b, read, _ in
                                 FIGURES if b == bench and "p99" not in label
                                 and (value := figure(result, read)) is not None][:2]
                        log(f"  {name}: {result['_seconds']} s, {', '.join(shown)}")
            log(f"round {round_number}/{args.rounds}: {time.monotonic() - round_started:.0f} s,"
                f" load average {os.getloadavg()}")
    finally:
        if args.keep:
            log(f"clones kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    elapsed = time.monotonic() - started
    print(f"before {args.before_rev} ({trees[0].commit[:7]}), after {args.after_rev}"
          f" ({trees[1].commit[:7]}); {args.rounds} rounds in {elapsed / 60:.1f} min;"
          f" medians (range); raw lines in {results}")
    print(table(trees, runs))
    failed = any(len(runs[(tree.label, bench)]) < args.rounds
                 for tree in trees for bench in benches)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
