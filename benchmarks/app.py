"""Desktop app benchmarks: cold start, one step on a 10,000-node graph, memory while playing.

Usage: python benchmarks/app.py [--steps 100000] [--out benchmarks/RESULTS_app.md]

Runs offscreen (QT_QPA_PLATFORM=offscreen) unless a display is set. Prints the numbers and writes
them as a Markdown table.

* cold start: a fresh Python process from launch to the first graph painted (window shown, default
  model recorded in its worker, laid out, viewport painted);
* step: `Stepper.next()` plus a synchronous repaint of the graph viewport, on an RNNCell(32, 64)
  unrolled 1,700 steps (about 11,900 nodes), over forward and backward steps, at the default zoom,
  for the graph view alone and for the whole window (events, accumulation, gradient flow follow too);
* jump: `Stepper.set_step(random step)` plus Qt's paint, the graph view alone (a slider drag);
* memory: resident set size while stepping through 100,000 steps, looping the timeline.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BIG = {"T": 1700, "inputs": 32, "hidden": 64, "batch": 1}
CPU_MS: list[float] = []  # the median CPU time of the last measured series (less sensitive to a shared machine)

_CHILD = r"""
import os, sys, time, tempfile
t0 = float(sys.argv[1])
from PySide6.QtCore import QSettings
from gradviz.qt.app import _app, build_window
app = _app()
win = build_window("repeated-layer", settings=QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.Format.IniFormat))
win.show()
while win.recording is None:
    app.processEvents()
    time.sleep(0.001)
win.graph.viewport().repaint()
print(time.time() - t0, flush=True)
win.shutdown()
"""


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cold_start(runs: int = 3) -> list[float]:
    out = []
    env = dict(os.environ, PYTHONPATH=ROOT)
    for _ in range(runs):
        t0 = time.time()
        p = subprocess.run([sys.executable, "-c", _CHILD, repr(t0)], env=env, capture_output=True, text=True,
                           timeout=120)
        if p.returncode:
            raise RuntimeError(p.stderr)
        out.append(float(p.stdout.strip().splitlines()[-1]))
    return out


def _percentiles(xs):
    xs = sorted(xs)
    return statistics.median(xs), xs[int(0.95 * (len(xs) - 1))], xs[-1]


def step_times(stepper, viewport, n: int, start: int, full_repaint: bool) -> list[float]:
    """Milliseconds per step: the step, then Qt's own paint of what changed (or a full viewport repaint)."""
    from PySide6.QtWidgets import QApplication

    stepper.set_step(start)
    viewport.repaint()
    QApplication.processEvents()
    times, cpu = [], []
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        stepper.next()
        if full_repaint:
            viewport.repaint()
        QApplication.processEvents()  # delivers the queued update: paints the dirty rectangles
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    CPU_MS.append(statistics.median(cpu))
    return times


def jump_times(stepper, n: int, seed: int = 0) -> list[float]:
    """Milliseconds per jump to a random step (a slider drag): the state, the view's update, Qt's paint."""
    import random

    from PySide6.QtWidgets import QApplication

    rng = random.Random(seed)
    times, cpu = [], []
    for _ in range(n):
        i = rng.randrange(len(stepper))
        t, c = time.perf_counter(), time.process_time()
        stepper.set_step(i)
        QApplication.processEvents()
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    CPU_MS.append(statistics.median(cpu))
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100_000, help="steps to play for the memory check")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "RESULTS_app.md"))
    ap.add_argument("--cold-runs", type=int, default=3, help="fresh processes timed to the first graph painted")
    args = ap.parse_args(argv)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from gradviz.core import Stepper, Timeline, record
    from gradviz.core.layout import layered_layout
    from gradviz.qt.app import QtMainWindow, _app
    from gradviz.qt.graph_view import QtGraphView

    rows = []
    cs = cold_start(args.cold_runs)
    print(f"cold start to first graph painted: {', '.join(f'{x:.2f}' for x in cs)} s (median {statistics.median(cs):.2f})", flush=True)
    rows.append(("cold start → first graph painted (repeated-layer)", f"{statistics.median(cs):.2f} s",
                 f"runs: {', '.join(f'{x:.2f}' for x in cs)}", "< 3 s"))

    app = _app()
    t = time.perf_counter()
    rec = record("rnn-unrolled", params=BIG)
    t_rec = time.perf_counter() - t
    t = time.perf_counter()
    tl = Timeline(rec)
    t_tl = time.perf_counter() - t
    t = time.perf_counter()
    lay = layered_layout(rec)
    t_lay = time.perf_counter() - t
    print(f"{rec.summary()}\nrecord {t_rec:.2f} s, timeline {t_tl:.2f} s, layout {t_lay:.3f} s", flush=True)
    rows.append((f"layout, {len(rec.nodes):,} nodes", f"{t_lay * 1000:.0f} ms", "layered_layout, left to right", "< 1 s"))

    stepper = Stepper(tl)
    view = QtGraphView(rec, stepper, precomputed=lay)
    view.resize(1200, 800)
    view.show()
    QApplication.processEvents()
    view.fit()
    fwd_start, bwd_start = 1, tl.phase_start("backward")
    n = 1000
    for full in (False, True):
        for name, start in (("forward", fwd_start), ("backward", bwd_start)):
            ts = step_times(stepper, view.viewport(), n, start, full)
            med, p95, mx = _percentiles(ts)
            how = "full viewport repaint" if full else "Qt paints the changed rectangles"
            print(f"graph view step ({name}, {how}): median {med:.2f} ms, p95 {p95:.2f} ms, max {mx:.2f} ms, CPU median {CPU_MS[-1]:.2f} ms", flush=True)
            rows.append((f"one step, graph view, {name}, {how}", f"{med:.2f} ms median",
                         f"p95 {p95:.2f} ms, max {mx:.2f} ms over {n} steps; CPU {CPU_MS[-1]:.2f} ms median", "< 16 ms"))
    ts = jump_times(stepper, 200)
    med, p95, mx = _percentiles(ts)
    print(f"graph view jump to a random step: median {med:.2f} ms, p95 {p95:.2f} ms, max {mx:.2f} ms, CPU median {CPU_MS[-1]:.2f} ms", flush=True)
    rows.append(("jump to a random step, graph view (slider drag)", f"{med:.2f} ms median",
                 f"p95 {p95:.2f} ms, max {mx:.2f} ms over 200 jumps; CPU {CPU_MS[-1]:.2f} ms median", "< 50 ms"))
    view.close()

    import tempfile

    win = QtMainWindow(settings=QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.Format.IniFormat))
    win.resize(1500, 920)
    win.show()
    QApplication.processEvents()
    win.set_recording(rec, tl, lay)
    QApplication.processEvents()
    for name, start in (("forward", fwd_start), ("backward", bwd_start)):
        w_times = step_times(win.stepper, win.graph.viewport(), n, start, False)
        med, p95, mx = _percentiles(w_times)
        print(f"whole window step ({name}): median {med:.2f} ms, p95 {p95:.2f} ms, max {mx:.2f} ms, CPU median {CPU_MS[-1]:.2f} ms", flush=True)
        rows.append((f"one step, whole window (graph, transport, events, accumulation, flow), {name}",
                     f"{med:.2f} ms median", f"p95 {p95:.2f} ms, max {mx:.2f} ms over {n} steps; CPU {CPU_MS[-1]:.2f} ms median", "< 16 ms"))

    # memory while playing: loop the timeline, let Qt paint as it would while playing
    win.stepper.first()
    QApplication.processEvents()
    marks = {}
    rss0 = rss_mb()
    t = time.perf_counter()
    last = len(win.timeline) - 1
    for i in range(1, args.steps + 1):
        if win.stepper.index >= last:
            win.stepper.first()
        else:
            win.stepper.next()
        if i % 10 == 0:  # a fast play timer: Qt coalesces the updates of several steps into one paint
            QApplication.processEvents()
        if i in (1000, args.steps // 10, args.steps // 2, args.steps):
            marks[i] = rss_mb()
    elapsed = time.perf_counter() - t
    print(f"memory while playing {args.steps:,} steps: start {rss0:.0f} MiB, "
          + ", ".join(f"after {k:,}: {v:.0f} MiB" for k, v in sorted(marks.items()))
          + f" ({elapsed:.0f} s, {args.steps / elapsed:.0f} steps/s)")
    growth = marks[args.steps] - marks[min(marks)]
    rows.append((f"RSS while playing {args.steps:,} steps (looping {len(win.timeline):,}-step timeline)",
                 f"{growth:+.1f} MiB after the first 1,000 steps",
                 ", ".join(f"{k:,}: {v:.0f} MiB" for k, v in sorted(marks.items())) + f"; start {rss0:.0f} MiB",
                 "flat"))
    win.shutdown()
    win.close()

    lines = ["# Desktop app benchmarks", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
             f"{platform.python_version()}, Qt platform `{os.environ.get('QT_QPA_PLATFORM')}`, load average "
             f"{os.getloadavg()[0]:.1f} at the end (other jobs share the machine). "
             f"Command: `python benchmarks/app.py`.", "",
             f"Big graph: `rnn-unrolled` {BIG} — {rec.summary()}.", "",
             "| what | result | detail | target |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", "A step touches only the nodes it changes (per-node status/pending arrays) and repaints their "
              "rectangles; painting culls to the exposed rectangle and drops text at low zoom.", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
