"""Any bench, run in two trees in turn: the working tree and a git revision, the same run.

For a change that must not move the figures (a refactor), or to measure one that should. Each
round runs the bench once in each tree (alternating, so a noisy machine is noisy for both), then
every figure the bench prints is paired by where it stands (its line with the numbers taken out,
and its place on that line) and shown as the median of each tree and their ratio (working tree /
base: above 1 is more of it in the working tree; for times, slower).

    .venv/bin/python bench/trees.py --base 846649d --rounds 3 --match lines_per_s -- \\
        bench/import.py --lines 20000
    .venv/bin/python bench/trees.py --base HEAD~3 --match 'median page' -- \\
        bench/diffs.py --items 50000 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


Key = tuple[str, int, int]  # a line without its numbers, which such line, the place on it


def figures(output: str, match: re.Pattern[str]) -> dict[Key, float]:
    """Every number of the lines `match` finds, by where it stands."""
    found: dict[Key, float] = {}
    lines: dict[str, int] = {}
    for line in output.splitlines():
        if not match.search(line):
            continue
        shape = NUMBER.sub("#", line.strip())
        lines[shape] = lines.get(shape, 0) + 1
        for place, number in enumerate(NUMBER.findall(line)):
            found[shape, lines[shape], place] = float(number.replace(",", ""))
    return found


def run(tree: Path, command: list[str]) -> str:
    """The bench's output, run with the tree's own code (its directory first on the path)."""
    done = subprocess.run([sys.executable, *command], cwd=tree, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(tree)), check=False)
    if done.returncode != 0:
        raise SystemExit(f"{command} failed in {tree}:\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--match", default=".", help="only the figures of lines this matches")
    parser.add_argument("command", nargs="+", help="the bench and its arguments, after --")
    args = parser.parse_args()
    match = re.compile(args.match)

    with tempfile.TemporaryDirectory(prefix="termsync-bench-trees-") as directory:
        base = Path(directory) / "base"
        base.mkdir()
        archive = subprocess.run(["git", "archive", args.base], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        trees = {"base": base, "work": ROOT}
        seen: dict[str, list[dict[Key, float]]] = {"base": [], "work": []}
        for turn in range(args.rounds):
            for name, tree in trees.items():
                seen[name].append(figures(run(tree, args.command), match))
            print(f"round {turn + 1} of {args.rounds} done", file=sys.stderr, flush=True)

    print(f"{args.base} (base) against the working tree, {args.rounds} rounds, medians:")
    for key in seen["work"][0]:
        base_values = [found[key] for found in seen["base"] if key in found]
        work_values = [found[key] for found in seen["work"] if key in found]
        if len(base_values) < args.rounds or len(work_values) < args.rounds:
            continue
        before, after = statistics.median(base_values), statistics.median(work_values)
        ratio = f"{after / before:6.3f}" if before else "     -"
        shape, line, place = key
        print(f"  {ratio}  {before:>12,.2f} -> {after:>12,.2f}   number {place + 1} of line "
              f"{line} like {shape[:60]}")


if __name__ == "__main__":
    main()
