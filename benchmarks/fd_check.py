"""Time the finite differences of `gradviz check rnn-unrolled -p T=1700`, the FD rows alone.

Run from a checkout with PYTHONPATH set to it, one torch thread::

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice -n 10 python benchmarks/fd_check.py [--T 1700] [--repeat 3]

Prints the wall and CPU seconds of each run of the finite-difference checks (recording excluded),
how many times the model re-ran for them, and the load average.
"""
from __future__ import annotations

import argparse
import os
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=1700)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import gradviz
    from gradviz.core.checks import run_checks

    runs = count_reruns()
    rec = gradviz.record("rnn-unrolled", params={"T": args.T})
    print(f"rnn-unrolled T={args.T}: {len(rec.nodes)} nodes, load {os.getloadavg()[0]:.2f}")
    for _ in range(args.repeat):
        runs.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        table = run_checks(rec, manual=False, gradcheck=False, rules=False, flow=False, accumulation=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows = [r for r in table.rows if r.kind == "finite-diff"]
        status = ", ".join(sorted({r.status for r in rows}))
        print(f"finite differences: {wall:.2f} s wall, {cpu:.2f} s CPU, {len(rows)} rows ({status}), "
              f"{len(runs)} re-runs, load {os.getloadavg()[0]:.2f}")


def count_reruns() -> list:
    """A list that gets one item per re-run of the model for finite differences."""
    runs: list = []
    try:
        from gradviz.core.fdrerun import PerturbedLoss
    except ImportError:  # (before fdrerun.py: every re-run went through leaf_first_use_order)
        from gradviz.core import fdchecks
        call = fdchecks.leaf_first_use_order

        def counted(*a, **k):
            runs.append(1)
            return call(*a, **k)

        fdchecks.leaf_first_use_order = counted
        return runs
    loss = PerturbedLoss.__call__

    def counted_call(self, *a, **k):
        runs.append(1)
        return loss(self, *a, **k)

    PerturbedLoss.__call__ = counted_call
    return runs


if __name__ == "__main__":
    main()
