"""Recording speed: RNNCell(32, 64), batch 8, unrolled over T steps (about 6 nodes a step).

Prints, side by side: a plain forward+backward, gradviz's record() with values and without,
timeline random access, and torchviz's make_dot on the same graph (and Graphviz dot laying it out,
with a time limit). Every tool runs with one torch thread (`torch.set_num_threads(1)`, set before
anything runs, and the output says so): on a loaded 2-core machine two threads made the plain run
30-60x slower. Besides wall-clock seconds it prints CPU seconds (`time.process_time`), which other
processes on a shared machine disturb less. Each run goes with no other recording alive, as the
plain run has none (a values recording held meanwhile made no-values runs 40-70 ms slower). Targets (issue 16): with values at most 3.5x plain,
--no-values at most 2.5x; (issue 4) with values under 2 s; state_at under 5 ms.

    .venv/bin/python benchmarks/record.py [--steps 1700] [--repeat 3] [--dot-timeout 120]
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from gradviz.core import Timeline, record  # noqa: E402


def make_build(steps: int):
    def build():
        torch.manual_seed(0)
        cell = torch.nn.RNNCell(32, 64)
        xs = torch.randn(steps, 8, 32)
        h = torch.zeros(8, 64)
        for t in range(steps):
            h = cell(xs[t], h)
        return h.pow(2).mean(), cell
    return build


def best(fn, repeat):
    """Best wall-clock seconds, median, the result, and the best CPU seconds of `repeat` runs."""
    times, cpu = [], []
    out = None
    for _ in range(repeat):
        out = None  # (each run with no earlier result alive, as the plain run has none)
        gc.collect()
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    best.cpu = min(cpu)
    return min(times), statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1700)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dot-timeout", type=float, default=120.0)
    args = ap.parse_args()
    # one torch thread for every tool compared: on a loaded 2-core machine two threads made the
    # plain run 30-60x slower, and the ratios then measured the load
    torch.set_num_threads(1)
    build = make_build(args.steps)

    def plain():
        loss, _ = build()
        loss.backward()

    t_plain, m_plain, _ = best(plain, args.repeat)
    c_plain = best.cpu
    # every kind timed with no recording alive besides the one it makes, as the plain run has none
    # (a values recording held while the no-values runs went made them 40-70 ms slower)
    t_rec, m_rec, rec = best(lambda: record(build), args.repeat)
    c_rec = best.cpu
    n, n_edges, n_backward = len(rec.nodes), len(rec.edges), len(rec.backward)
    del rec
    t_nov, m_nov, _ = best(lambda: record(build, keep_values=False), args.repeat)
    c_nov = best.cpu
    del _
    rec = record(build)  # (for the timeline's random access below)

    tl = Timeline(rec)
    import random
    rnd = random.Random(0)
    idx = [rnd.randrange(len(tl)) for _ in range(200)]
    t = time.perf_counter()
    for i in idx:
        tl.state_at(i)
    t_access = (time.perf_counter() - t) / len(idx)

    # the anchor: torchviz builds a Graphviz graph by recursing per node
    try:
        import torchviz
    except ImportError:
        torchviz = None
    t_dot_build = t_dot_layout = None
    dot_note = ""
    if torchviz is not None:
        sys.setrecursionlimit(max(100000, sys.getrecursionlimit()))
        loss, cell = build()
        t = time.perf_counter()
        g = torchviz.make_dot(loss, params=dict(cell.named_parameters()))
        t_dot_build = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "g.dot")
            with open(src, "w") as f:
                f.write(g.source)
            t = time.perf_counter()
            try:
                subprocess.run(["dot", "-Tsvg", src, "-o", os.path.join(d, "g.svg")], check=True,
                               timeout=args.dot_timeout, capture_output=True)
                t_dot_layout = time.perf_counter() - t
            except subprocess.TimeoutExpired:
                dot_note = f"dot did not finish in {args.dot_timeout:.0f} s"
            except (FileNotFoundError, subprocess.CalledProcessError) as exc:
                dot_note = f"dot failed: {exc}"

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"machine: {os.cpu_count()} cores, {cpu}; torch {torch.__version__}, {torch.get_num_threads()} torch "
          f"thread(s) for every tool; load average {os.getloadavg()[0]:.1f}")
    print(f"graph: RNNCell(32, 64), batch 8, {args.steps} steps -> {n} nodes, {n_edges} edges, "
          f"{n_backward} backward steps; best of {args.repeat}; each run with no other recording alive")
    print(f"{'what':44s} {'seconds':>9s} {'x plain':>8s}")
    rows = [("plain forward + backward", t_plain),
            ("gradviz record (values kept)", t_rec),
            ("gradviz record --no-values", t_nov)]
    cpu_rows = [("plain forward + backward, CPU", c_plain), ("gradviz record (values kept), CPU", c_rec),
                ("gradviz record --no-values, CPU", c_nov)]
    if t_dot_build is not None:
        rows.append(("torchviz make_dot (graph source only)", t_dot_build))
        rows.append(("torchviz make_dot + Graphviz dot -Tsvg", t_dot_build + t_dot_layout if t_dot_layout else None))
    for name, sec in rows:
        if sec is None:
            print(f"{name:44s} {'-':>9s} {'':>8s}  {dot_note}")
        else:
            print(f"{name:44s} {sec:9.3f} {sec / t_plain:8.2f}")
    for name, sec in cpu_rows:
        print(f"{name:44s} {sec:9.3f} {sec / c_plain:8.2f}")
    print(f"{'timeline state_at (random step, mean)':44s} {t_access * 1000:8.2f} ms")
    print()
    print(f"targets: values < 2 s: {'yes' if t_rec < 2 else 'NO'} ({t_rec:.2f} s); "
          f"values <= 3.5x: {'yes' if t_rec <= 3.5 * t_plain else 'NO'} ({t_rec / t_plain:.1f}x); "
          f"no-values <= 2.5x: {'yes' if t_nov <= 2.5 * t_plain else 'NO'} ({t_nov / t_plain:.1f}x); "
          f"state_at < 5 ms: {'yes' if t_access < 0.005 else 'NO'} ({t_access * 1000:.2f} ms)")


if __name__ == "__main__":
    main()
