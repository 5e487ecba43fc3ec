"""Open the real app on a model, step to the end of backward and save a screenshot of the window.

Usage: python scripts/screenshot.py OUT.png [TARGET] [k=v ...] [--size=1600x1000] [--theme=light|dark]
       [--lang=en|zh] [--at=end|start|backward] [--select=LEAF|none]

The window fills a 1600x1000 screen by default; ``--at`` is the step shown (the end of backward by
default; ``backward`` is its first step) and ``--select`` the leaf selected (the first by default:
its accumulation is shown).

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
    opts = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
    params = [a for a in argv[2:] if "=" in a and not a.startswith("--")]
    width, height = (int(v) for v in opts.get("size", "1600x1000").split("x"))
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from gradviz.qt.app import _app, build_window

    app = _app()
    settings = QSettings(os.path.join(tempfile.mkdtemp(), "gradviz.ini"), QSettings.Format.IniFormat)
    settings.setValue("theme", opts.get("theme", "light"))
    settings.setValue("language", opts.get("lang", "en"))
    t0 = time.perf_counter()
    win = build_window(target, params or None, settings=settings)
    win.resize(width, height)
    win.move(0, 0)
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
    at = opts.get("at", "end")
    if at == "end":
        win.step_last()
    elif at == "backward":
        win.jump_backward()
    pick = opts.get("select", "")
    leaves = win.recording.leaves
    leaf = (leaves[pick].node if pick in leaves else None) if pick else next(iter(leaves.values())).node
    if leaf is not None and pick != "none":
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
