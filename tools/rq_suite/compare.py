"""Counts per run and the tests whose outcome differs from the first run (RQ's own
SimpleWorker), from the JSON lines rq_suite_record writes; printed and written to --out.

    compare.py --out FILE --commit SHA --dirty N --rq VERSION MODE=RECORD:RC:SECONDS ...
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import sys


def load(path: str) -> tuple[dict[str, dict], dict]:
    tests, meta = {}, {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            entry = json.loads(line)
            if "meta" in entry:
                meta[entry["meta"]] = entry
            else:
                tests[entry["test"]] = entry
    return tests, meta


def _steady(test: str, base_runs: list, mode_runs: list, a: dict, b: dict) -> bool:
    """The difference is seen again in every re-run: the base run keeps its outcome, the
    other mode keeps its own."""
    return (all(r.get(test, {}).get("outcome") == a["outcome"] for r in base_runs)
            and all(r.get(test, {}).get("outcome") == b["outcome"] for r in mode_runs))


def main() -> int:
    parser = argparse.ArgumentParser()
    for option in ("out", "commit", "dirty", "snapshot", "rq"):
        parser.add_argument(f"--{option}", required=True)
    parser.add_argument("--differing", help="write the differing test ids to this file")
    parser.add_argument("--recheck", action="append", default=[], metavar="MODE=RECORD",
                        help="a re-run of the differing tests")
    parser.add_argument("runs", nargs="+")
    options = parser.parse_args()
    rechecks: dict[str, list[dict[str, dict]]] = collections.defaultdict(list)
    for spec in options.recheck:
        mode, path = spec.split("=", 1)
        rechecks[mode].append(load(path)[0])

    runs = []
    for spec in options.runs:
        mode, rest = spec.split("=", 1)
        path, rc, seconds = rest.rsplit(":", 2)
        tests, meta = load(path)
        runs.append((mode, tests, meta, int(rc), int(seconds)))

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    dirty = f" with {options.dirty} uncommitted change(s) under queuing/" \
        if options.dirty != "0" else ""
    out = [f"RQ {options.rq}'s test suite (its sdist's tests/, unmodified), {now}",
           f"queuing/ at commit {options.commit}{dirty} "
           f"(copied at the start; sha256 of its files {options.snapshot})", ""]
    for mode, tests, meta, rc, seconds in runs:
        counts = collections.Counter(entry["outcome"] for entry in tests.values())
        shown = ", ".join(f"{counts[k]} {k}" for k in
                          ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
                          if counts[k])
        note = {0: "", 1: " (some failed)", 124: " CUT SHORT by the run's time limit"}.get(
            rc, f" (pytest exit {rc})")
        out.append(f"{mode:10} {len(tests)} tests: {shown}; {seconds}s{note}")
        out.append(f"{'':10} SimpleWorker was {meta.get('worker', {}).get('class', '?')}")
    base_mode, base, *_ = runs[0]
    differing: dict[str, None] = {}
    for mode, tests, *_ in runs[1:]:
        diffs = []
        for test in sorted(set(base) | set(tests)):
            a = base.get(test, {"outcome": "not run", "message": ""})
            b = tests.get(test, {"outcome": "not run", "message": ""})
            if a["outcome"] != b["outcome"]:
                diffs.append((test, a, b))
        if options.differing:
            differing.update(dict.fromkeys(test for test, _a, _b in diffs))
        rechecked = bool(rechecks[base_mode] and rechecks[mode])
        steady = [d for d in diffs if not rechecked or _steady(d[0], rechecks[base_mode],
                                                                 rechecks[mode], d[1], d[2])]
        flaky = [d for d in diffs if d not in steady]
        again = f", the same in {len(rechecks[mode])} re-run(s) of each" if rechecked else ""
        out += ["", f"{len(steady)} test(s) whose outcome differs, {base_mode} -> {mode}{again}:"]
        for test, a, b in steady:
            out.append(f"  {test}: {a['outcome']} -> {b['outcome']}")
            for side in (a, b):
                if side["message"] and side["outcome"] in ("failed", "error"):
                    out.append(f"      {side['message']}")
        if flaky:
            out += ["", f"{len(flaky)} more that differed in the full run but not in every "
                    "re-run of the test alone (flaky, or it depends on the tests run before it):"]
            for test, a, b in flaky:
                seen = {m: [r.get(test, {}).get("outcome", "not run") for r in rechecks[m]]
                        for m in (base_mode, mode)}
                out.append(f"  {test}: {a['outcome']} -> {b['outcome']}; re-runs: "
                           f"{base_mode} {'/'.join(seen[base_mode])}, "
                           f"{mode} {'/'.join(seen[mode])}")
                for side in (a, b):
                    if side["message"] and side["outcome"] in ("failed", "error"):
                        out.append(f"      {side['message']}")
    if options.differing:
        with open(options.differing, "w", encoding="utf-8") as file:
            file.writelines(f"{test}\n" for test in differing)
    failed_in_base = [t for t, e in base.items() if e["outcome"] in ("failed", "error")]
    if failed_in_base:
        out += ["", f"Failing with RQ's own SimpleWorker too ({base_mode}):"]
        out += [f"  {t}: {base[t]['message']}" for t in sorted(failed_in_base)]
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    with open(options.out, "w", encoding="utf-8") as file:
        file.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
