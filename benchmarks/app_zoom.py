"""Pan and zoom frame times of the graph view on a ~100,000-node graph (level of detail at work).

Usage: python benchmarks/app_zoom.py [--T 14300] [--frames 40]

Records `rnn-unrolled` with a small cell (inputs=3, hidden=4, batch=1) over T steps (about 7 nodes a
step), lays it out, opens a 1200x800 graph view offscreen at its opening zoom (legible, around the
loss) and times full repaints of the viewport (`viewport().repaint()`, what Qt does for a scroll or a
zoom):

* pan: the view scrolled by 150 px per frame, at the opening zoom;
* zoom: frames at zooms from the opening one down to the whole graph in view (Shift+F), each level
  panned a little so Qt paints afresh; far out every node is a flat box (one array-built path per
  state), text is left out below 6 px;
* overview: painting the overview's picture of the whole graph (once per step at most).

Prints a Markdown table (median and 95th percentile per row, milliseconds, CPU time too).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _stats(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs), xs[int(0.95 * (len(xs) - 1))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=14300)
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from gradviz.core import Stepper, Timeline, record
    from gradviz.core.layout import layered_layout
    from gradviz.qt.app import _app
    from gradviz.qt.graph_view import QtGraphView

    _app()
    t = time.perf_counter()
    rec = record("rnn-unrolled", params={"T": args.T, "inputs": 3, "hidden": 4, "batch": 1})
    t_rec = time.perf_counter() - t
    t = time.perf_counter()
    tl = Timeline(rec)
    lay = layered_layout(rec)
    t_lay = time.perf_counter() - t
    print(f"{rec.summary()}\nrecord {t_rec:.1f} s, timeline + layout {t_lay:.1f} s", flush=True)
    view = QtGraphView(rec, Stepper(tl), precomputed=lay)
    view.resize(1200, 800)
    view.show()
    QApplication.processEvents()
    view.fit()
    QApplication.processEvents()
    rows = []

    def frames(move, n) -> tuple[list[float], list[float]]:
        wall, cpu = [], []
        for k in range(n):
            move(k)
            t, c = time.perf_counter(), time.process_time()
            view.viewport().repaint()
            wall.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        return wall, cpu

    hbar = view.horizontalScrollBar()

    def pan(k):
        hbar.setValue(hbar.value() + (150 if (k // 10) % 2 == 0 else -150))

    legible = view.transform().m11()
    w, c = frames(pan, args.frames)
    rows.append((f"pan 150 px, opening zoom {legible:.2f} (text drawn)", w, c))
    whole = min(1200 / view.graph_rect().width(), 800 / view.graph_rect().height())
    for target in (0.5 * legible, 0.2, 0.08, 0.03, whole):
        if target < whole:
            continue
        view._auto_fit = False  # as after a user's zoom: a scroll bar that comes or goes does not fit again
        view.resetTransform()
        view.scale(target, target)
        view.centerOn(view.focus_point())
        QApplication.processEvents()
        vis = view.visible_rect()
        n_in = int(((abs(view.scene_.pos[:, 0] - vis.center().x()) < vis.width() / 2)
                    & (abs(view.scene_.pos[:, 1] - vis.center().y()) < vis.height() / 2)).sum())
        assert abs(view.transform().m11() - target) < 1e-9
        w, c = frames(pan, args.frames)
        label = "whole graph" if target == whole else f"zoom {target:.3g}"
        rows.append((f"pan, {label} ({n_in:,} nodes in view)", w, c))
    # zooming far out: each frame zooms by 1.25 in or out (the cached picture, scaled; a sharp one after a pause)
    view.resetTransform()
    view.scale(0.1, 0.1)
    view.centerOn(view.focus_point())
    view.viewport().repaint()

    def zoom(k):
        f = 1.25 if (k // 4) % 2 == 0 else 0.8
        view.scale(f, f)

    w, c = frames(zoom, args.frames)
    rows.append(("zoom by 1.25 per frame around zoom 0.1 (far picture scaled)", w, c))
    far = view._item.far
    wall, cpu = [], []
    for _ in range(5):
        t, c0 = time.perf_counter(), time.process_time()
        far._paint_picture(view.scene_, 0.1)
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    rows.append((f"far picture painted afresh at zoom 0.1 ({far.image.width()}x{far.image.height()}, after a step or"
                 " a pause in zooming)", wall, cpu))
    view.fit_all()
    QApplication.processEvents()
    ov = view.overview
    ov.enabled_by_user = True
    view.fit()
    QApplication.processEvents()
    wall, cpu = [], []
    for _ in range(max(5, args.frames // 4)):
        t, c0 = time.perf_counter(), time.process_time()
        ov._repaint_picture()
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    rows.append((f"overview picture ({ov.width()}x{ov.height()}, every node)", wall, cpu))

    print(f"\nGraph: {len(rec.nodes):,} nodes ({len(view.scene_):,} drawn), view 1200x800 offscreen\n")
    print("| frame | wall median / p95 | CPU median |")
    print("|---|---|---|")
    for name, w, c in rows:
        m, p = _stats(w)
        print(f"| {name} | {m:.1f} / {p:.1f} ms | {statistics.median(c):.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
