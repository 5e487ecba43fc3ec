"""View jump: a slider drag in the app's graph view (`Stepper.set_step(random step)` + Qt's paint).

The same measurement as the "view jump" column of `benchmarks/scale.py --draw` (an RNNCell(8, 16)
unrolled T steps, `layered_layout` + `QtGraphView` 1200x800 offscreen + show + fit, then 20 random
jumps from `random.Random(seed)`, each timed until Qt has painted), without the recording and export
columns around it, so before/after runs can be interleaved. The recording is saved once under
``--cache`` and loaded by later runs. Prints the median and max of each set of 20 with the load.

    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/view_jump.py 14280 [--sets 3] [--profile]

Results: the "View jump" section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("T", type=int, help="RNN steps (1700: 11.9k nodes, 14280: 100k, 28570: 200k)")
    ap.add_argument("--sets", type=int, default=3, help="sets of 20 jumps")
    ap.add_argument("--profile", action="store_true", help="cProfile one set instead of timing")
    ap.add_argument("--cache", default="/tmp", help="folder for the saved recording")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    import gradviz
    from gradviz.core import Stepper, Timeline
    from gradviz.core.storage import load_recording, save_recording
    from scale import build_fn, open_view, view_jumps

    path = os.path.join(args.cache, f"gradviz-view-jump-rnn{args.T}.gradviz")
    rec = load_recording(path) if os.path.exists(path) else None
    if rec is None:
        rec = gradviz.record(build_fn("rnn-cell", args.T))
        save_recording(rec, path)
    from PySide6.QtWidgets import QApplication

    from gradviz.core.layout import layered_layout
    from gradviz.qt.app import _app
    from gradviz.qt.graph_view import QtGraphView

    _app()
    QtGraphView().deleteLater()
    QApplication.processEvents()
    stepper = Stepper(Timeline(rec))
    t = time.perf_counter()
    open_view(rec, stepper, layered_layout(rec))
    print(f"{len(rec.nodes):,} nodes; layout + first draw {time.perf_counter() - t:.2f} s", flush=True)

    def jumps(seed: int) -> list[float]:
        return view_jumps(stepper, seed)

    if args.profile:
        pr = cProfile.Profile()
        pr.enable()
        jumps(1)
        pr.disable()
        pstats.Stats(pr).sort_stats("cumulative").print_stats(30)
        return
    for k in range(args.sets):
        js = jumps(1 + k)
        print(f"view jump median {1000 * statistics.median(js):.1f} ms, max {1000 * max(js):.0f} ms "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)


if __name__ == "__main__":
    main()
