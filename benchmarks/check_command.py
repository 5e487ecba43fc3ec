"""Time the whole `gradviz check rnn-unrolled -p T=1700` command, start-up included, interleaved between checkouts.

Run from a checkout, one torch thread::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/check_command.py [--tree DIR ...] [--repeat 3] [-- ARGS]

Each round runs the command once per ``--tree`` (a checkout, put first on ``PYTHONPATH``; default:
this one), in a fresh process with its output to /dev/null, and prints its wall seconds, CPU
seconds (user + system, from the child's resource usage) and the load average; then the best of
each tree. ARGS replace the command's arguments (default: ``check rnn-unrolled -p T=1700``).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def run_once(tree: Path, argv: list[str]) -> tuple[float, float, int]:
    """Wall and CPU seconds of one run of ``python -m gradviz.cli ARGV`` with `tree` on the path, and its exit code."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    # (run in the tree: ``python -m`` puts the working directory first on the path)
    code = subprocess.run([sys.executable, "-m", "gradviz.cli", *argv], env=env, cwd=tree, stdout=subprocess.DEVNULL,
                          stdin=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", type=Path, help="a checkout to time (repeatable; default: this one)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("argv", nargs="*", help="the command's arguments (after --)")
    args = ap.parse_args()
    trees = args.tree or [Path(__file__).resolve().parents[1]]
    argv = args.argv or ["check", "rnn-unrolled", "-p", "T=1700"]
    best: dict[Path, tuple[float, float]] = {}
    for r in range(args.repeat):
        for tree in trees:
            wall, cpu, code = run_once(tree, argv)
            print(f"round {r + 1} {tree}: {wall:.2f} s wall, {cpu:.2f} s CPU, exit {code}, "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
            w, c = best.get(tree, (wall, cpu))
            best[tree] = (min(w, wall), min(c, cpu))
    for tree, (wall, cpu) in best.items():
        print(f"best of {args.repeat} {tree}: {wall:.2f} s wall, {cpu:.2f} s CPU")


if __name__ == "__main__":
    main()
