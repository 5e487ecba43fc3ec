"""Open the real app on a model, step to the end of backward and save a screenshot of the window.

Usage: python scripts/screenshot.py OUT.png [TARGET] [--param k=v ...]

Needs a display (run under Xvfb: ``xvfb-run -s '-screen 0 1600x1000x24' python scripts/screenshot.py out.png``).
Prints one JSON line: the window and graph-area rectangles in the screenshot's pixels.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time


def main(argv: list[str]) -> int:
    out = argv[0]
    target = argv[1] if len(argv) > 1 and not argv[1].startswith("--") else "repeated-layer"
    params = [a.split("=", 1)[0] and a for a in argv[2:] if "=" in a]
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from gradviz.qt.app import _app, build_window

    app = _app()
    settings = QSettings(os.path.join(tempfile.mkdtemp(), "gradviz.ini"), QSettings.Format.IniFormat)
    t0 = time.perf_counter()
    win = build_window(target, params or None, settings=settings)
    win.resize(1500, 920)
    win.show()
    deadline = time.time() + 60
    while (win.recording is None or win.is_busy()) and time.time() < deadline:
        app.processEvents()
        time.sleep(0.005)
    if win.recording is None:
        print(json.dumps({"error": win.last_error or "timed out"}))
        return 1
    first_graph_s = time.perf_counter() - t0
    win.run_checks()
    while win.is_busy() and time.time() < deadline:
        app.processEvents()
        time.sleep(0.005)
    win.graph.fit()
    win.step_last()
    leaf = next(iter(win.recording.leaves.values())).node
    if leaf is not None:
        win.select_node(leaf)
        win.graph.fit()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    win.repaint()  # no window manager or compositor under Xvfb: make sure every dock is freshly painted
    for _ in range(10):
        app.processEvents()
        time.sleep(0.02)
    screen = win.screen()
    ratio = screen.devicePixelRatio()
    geo = win.geometry()
    pix = screen.grabWindow(0, geo.x(), geo.y(), geo.width(), geo.height())  # the window, from the screen
    pix.save(out)
    g = win.graph
    top_left = g.viewport().mapTo(win, g.viewport().rect().topLeft())
    info = {"graph": [top_left.x() * ratio, top_left.y() * ratio, g.viewport().width() * ratio,
                      g.viewport().height() * ratio],
            "window": [geo.x(), geo.y(), geo.width(), geo.height()],
            "step": win.stepper.index, "steps": len(win.timeline), "first_graph_s": round(first_graph_s, 3)}
    print(json.dumps(info))
    win.close()
    QApplication.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
