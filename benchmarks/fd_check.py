"""Time the finite differences of `gradviz check rnn-unrolled -p T=1700`, the FD rows alone.

Run from a checkout with PYTHONPATH set to it, one torch thread::

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice -n 10 python benchmarks/fd_check.py [--T 1700] [--repeat 3]

Prints the wall and CPU seconds of each run of the finite-difference checks (recording excluded),
how many times the model re-ran, and the load average before and after.
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

    rec = gradviz.record("rnn-unrolled", params={"T": args.T})
    print(f"rnn-unrolled T={args.T}: {len(rec.nodes)} nodes, load {os.getloadavg()[0]:.2f}")
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        table = run_checks(rec, manual=False, gradcheck=False, rules=False, flow=False, accumulation=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows = [r for r in table.rows if r.kind == "finite-diff"]
        status = ", ".join(sorted({r.status for r in rows}))
        print(f"finite differences: {wall:.2f} s wall, {cpu:.2f} s CPU, {len(rows)} rows ({status}), "
              f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
