"""Summarise a py-spy ``--format raw`` profile (what ``pipeline.py --profile`` writes).

    .venv/bin/python bench/stacks.py /tmp/prof/processor.txt [--under 'work (workers.py']

py-spy's flame graph is for eyes; this prints the share of samples spent in each function
(inclusive, line numbers dropped) and on top of the stack (self), so a before/after
comparison is two tables of numbers.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r" \(([^()]*?)(?::\d+)?\)$")


def function(frame: str) -> str:
    """``Job.perform (rq/job.py:1478)`` -> ``Job.perform (rq/job.py)``."""
    return _LINE.sub(lambda match: f" ({match.group(1)})", frame)


def summarise(path: Path, under: str = "") -> tuple[int, Counter[str], Counter[str]]:
    """(samples, inclusive counts, self counts) of the stacks that contain ``under``."""
    total, inclusive, own = 0, Counter(), Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or under not in stack:
            continue
        frames = [function(frame) for frame in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        inclusive.update(dict.fromkeys(frames, int(count)))
    return total, inclusive, own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--under", default="work (workers.py",
                        help="keep only stacks through this frame (default: the RQ workers)")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    total, inclusive, own = summarise(args.profile, args.under)
    if not total:
        print(f"no samples under {args.under!r}", file=sys.stderr)
        return 1
    print(f"{total} samples under {args.under!r}\n\ninclusive %")
    for name, count in inclusive.most_common(args.top):
        print(f"{100 * count / total:6.1f}  {name}")
    print("\nself %")
    for name, count in own.most_common(args.top // 2):
        print(f"{100 * count / total:6.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
