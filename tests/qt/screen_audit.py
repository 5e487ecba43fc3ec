"""Audit the real window from geometry: legible graph labels, no text cut off or overlapping, one theme.

Run as a script under a real X server (the xvfb tests do): it opens one window and, for each window
size, model, theme and language, measures what is on screen and prints one JSON line per problem
found, then ``{"done": N}`` with the number of views audited.

    python tests/qt/screen_audit.py [--sizes 1600x1000,1280x800] [--targets a,b] [--shots DIR]

Every rule is measured, not looked at:

* graph labels: every node in view draws its smallest font (the Scene's size for its name, value
  lines and badges, times the view's scale) at `legible_px()` or more; the loss (or current node)
  is in view; each drawn line fits its box (Qt's font metrics), badges hold their text, and no
  two boxes, nor a badge and another box, overlap;
* widgets: a one-line label's text fits its width (or ends in "…" and has the whole text as its
  tooltip); a wrapped label has the height its text needs; button, combo-box, dock-title and
  header texts fit; list rows and table cells fit their column or carry a tooltip (a list that
  scrolls sideways cuts rows without saying so: it is a problem); sibling widgets do not overlap
  and stay inside their parent; plot titles and axis labels fit their plot and tick labels do not
  run into each other;
* each view is audited as it opens and again at the end of backward with a leaf selected (the
  Accumulation dock in front); the graph rules apply to the opening view;
* theme: in a screenshot of the window, the dominant colour of every panel, button, list, table,
  plot and bar is dark in the dark theme and light in the light one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TARGETS = ["sum-xy-plus-z", "linear-function", "repeated-layer", "rnn-unrolled", "mlp"]
NET20 = ROOT / "tests" / "qt" / "data" / "net20.py"


def _problems_graph(win) -> list[str]:
    import numpy as np
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QFont, QFontMetricsF

    from gradviz.core.scene.build import LINE_STEP, MAX_LINES, TEXT_TOP
    from gradviz.core.scene.text import FONT_FAMILY, FONT_PX, SMALL_FONT_PX
    from gradviz.qt.legible import legible_px

    out = []
    view = win.graph
    scene, vis, s = view.scene_, view.visible_rect(), view.transform().m11()
    boxes = scene.boxes
    inview = np.flatnonzero((boxes[:, 0] + boxes[:, 2] >= vis.left()) & (boxes[:, 0] <= vis.right())
                            & (boxes[:, 1] + boxes[:, 3] >= vis.top()) & (boxes[:, 1] <= vis.bottom()))
    if not len(inview):
        return ["graph: no node in view"]
    focus = view.focus_point()
    if not vis.contains(focus):
        out.append("graph: the loss / current node is not in view")
    need = legible_px()

    def metrics(px, bold):
        f = QFont(FONT_FAMILY)
        f.setPixelSize(int(px))
        f.setBold(bold)
        return QFontMetricsF(f)

    plain = metrics(FONT_PX, False)
    small = metrics(SMALL_FONT_PX, False)
    for g in inview.tolist():
        lines = scene.lines(g)
        x, y, w, h = scene.box(g)
        sizes = [scene.name_px(g)] + [FONT_PX] * (len(lines) - 1) + [SMALL_FONT_PX] * len(scene.badges(g))
        if min(sizes) * s < need - 1e-6:
            out.append(f"graph: node {g} text {min(sizes) * s:.1f} px on screen < {need:.1f}")
        for j, line in enumerate(lines[:MAX_LINES]):
            fm = metrics(scene.name_px(g), True) if j == 0 else plain
            if fm.horizontalAdvance(line) > w - 10 + 0.5:
                out.append(f"graph: node {g} line {line!r} wider than its box")
        if TEXT_TOP + LINE_STEP * min(len(lines), MAX_LINES) > h + 1:
            out.append(f"graph: node {g} lines taller than its box")
        for b in scene.badges(g):
            if small.horizontalAdvance(b.text) > b.w - 2:
                out.append(f"graph: node {g} badge {b.text!r} wider than its tab")
            tab = QRectF(b.x, b.y, b.w, b.h)
            for o in inview.tolist():
                if o != g and tab.intersects(QRectF(*scene.box(o))):
                    out.append(f"graph: node {g} badge {b.text!r} overlaps node {o}")
    # boxes against boxes
    b = boxes[inview]
    lo, hi = b[:, :2], b[:, :2] + b[:, 2:]
    ov = ((lo[:, None, 0] < hi[None, :, 0]) & (lo[None, :, 0] < hi[:, None, 0])
          & (lo[:, None, 1] < hi[None, :, 1]) & (lo[None, :, 1] < hi[:, None, 1]))
    np.fill_diagonal(ov, False)
    for i, j in zip(*np.nonzero(np.triu(ov))):
        out.append(f"graph: nodes {inview[i]} and {inview[j]} overlap")
    return out


def _clean(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")


def _problems_widgets(win) -> list[str]:
    from PySide6.QtCore import QRect, Qt
    from PySide6.QtWidgets import (QAbstractButton, QAbstractItemView, QAbstractSpinBox, QComboBox, QDockWidget,
                                   QLabel, QLineEdit, QListView, QScrollArea, QSlider, QTableView, QTabBar, QToolButton,
                                   QWidget)

    out = []

    def name(w):
        dock = w
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        where = f"[{dock.windowTitle()}] " if dock is not None else ""
        return where + f"{type(w).__name__}({w.objectName() or (w.text()[:30] if hasattr(w, 'text') and callable(w.text) and isinstance(w.text(), str) else '')})"

    def shown(w):
        return w.isVisibleTo(win) and w.window() is win and w.width() > 0 and not w.visibleRegion().isEmpty()

    widgets = [w for w in win.findChildren(QWidget) if shown(w)]
    for w in widgets:
        if isinstance(w, QLabel) and w.text() and w.pixmap().isNull() and w.textFormat() != Qt.TextFormat.RichText \
                and not w.text().lstrip().startswith("<"):
            cr = w.contentsRect()
            fm = w.fontMetrics()
            text = w.shown() if hasattr(w, "shown") else w.text()  # an eliding label: what it draws
            if w.wordWrap():
                if w.heightForWidth(w.width()) > w.height() + 2:
                    out.append(f"widget: {name(w)} wrapped text needs {w.heightForWidth(w.width())} px, has {w.height()}")
            else:
                widest = max(fm.horizontalAdvance(line) for line in text.splitlines() or [""])
                if widest > cr.width() + 1:
                    out.append(f"widget: {name(w)} text {text[:40]!r} is {widest} px wide in {cr.width()}")
                if text.endswith("…") and not w.toolTip():
                    out.append(f"widget: {name(w)} elided without a tooltip")
        elif isinstance(w, QAbstractButton) and not isinstance(w.parentWidget(), QTabBar) and w.text() \
                and not (isinstance(w, QToolButton) and w.toolButtonStyle() == Qt.ToolButtonStyle.ToolButtonIconOnly):
            fm = w.fontMetrics()
            need = fm.horizontalAdvance(_clean(w.text())) + (w.iconSize().width() + 4 if not w.icon().isNull() else 0)
            if need + 6 > w.width():
                out.append(f"widget: {name(w)} text needs {need + 6} px, has {w.width()}")
        elif isinstance(w, QComboBox) and w.currentText():
            need = w.fontMetrics().horizontalAdvance(w.currentText()) + 28
            if need > w.width():
                out.append(f"widget: {name(w)} {w.currentText()!r} needs {need} px, has {w.width()}")
        elif isinstance(w, QDockWidget) and not w.isFloating():
            bar = w.titleBarWidget()
            title_w = w.width() - 50  # the float and close buttons
            if bar is None and w.fontMetrics().horizontalAdvance(w.windowTitle()) > title_w and w.windowTitle():
                tabbed = any(isinstance(t, QTabBar) and t.isVisible() for t in win.findChildren(QTabBar))
                if not tabbed:
                    out.append(f"widget: dock title {w.windowTitle()!r} wider than its dock")
        if isinstance(w, QTableView):
            hh = w.horizontalHeader()
            model = w.model()
            fm = hh.fontMetrics()
            for c in range(model.columnCount()):
                if hh.isSectionHidden(c):
                    continue
                text = str(model.headerData(c, Qt.Orientation.Horizontal) or "")
                if text and fm.horizontalAdvance(text) + 8 > hh.sectionSize(c):
                    out.append(f"widget: {name(w)} header {text!r} ({fm.horizontalAdvance(text)} px) wider than"
                               f" its column ({hh.sectionSize(c)} px)")
            cfm = w.fontMetrics()
            for r in range(min(model.rowCount(), 60)):
                for c in range(model.columnCount()):
                    idx = model.index(r, c)
                    text = str(model.data(idx) or "")
                    span = sum(w.columnWidth(c + k) for k in range(max(1, w.columnSpan(r, c))))
                    # Qt elides a cell whose text is wider than the column less its two 3-px margins
                    if text and cfm.horizontalAdvance(text) + 6 > span and not model.data(
                            idx, Qt.ItemDataRole.ToolTipRole):
                        out.append(f"widget: {name(w)} cell {text[:30]!r} cut without a tooltip")
        if isinstance(w, QListView):
            model, fm, vw = w.model(), w.fontMetrics(), w.viewport().width()
            wide = [r for r in range(min(model.rowCount(), 400))
                    if fm.horizontalAdvance(str(model.data(model.index(r, 0)) or "")) + 6 > vw]
            if wide and w.horizontalScrollBarPolicy() != Qt.ScrollBarPolicy.ScrollBarAlwaysOff:
                out.append(f"widget: {name(w)} scrolls sideways: {len(wide)} rows cut without an ellipsis")
            if wide and not all(model.data(model.index(r, 0), Qt.ItemDataRole.ToolTipRole) for r in wide):
                out.append(f"widget: {name(w)} rows elided without a tooltip")
    for w in widgets:
        if isinstance(w, QScrollArea) and w.horizontalScrollBar().isVisible() and w.widgetResizable():
            out.append(f"widget: {name(w)} scrolls sideways: its form is wider than the dock")
    # siblings: no overlap, inside their parent
    texty = (QLabel, QAbstractButton, QComboBox, QLineEdit, QAbstractSpinBox, QSlider)
    by_parent: dict = {}
    for w in widgets:
        if isinstance(w, texty) and not isinstance(w.parentWidget(), (QTabBar, QAbstractItemView, QComboBox,
                                                                        QAbstractSpinBox, QScrollArea)) \
                and type(w).__name__ not in ("QDockWidgetTitleButton",):
            by_parent.setdefault(w.parentWidget(), []).append(w)
    for parent, kids in by_parent.items():
        inner = QRect(0, 0, parent.width(), parent.height())
        for i, a in enumerate(kids):
            if not inner.adjusted(-1, -1, 1, 1).contains(a.geometry()):
                out.append(f"widget: {name(a)} leaves its parent {name(parent)}")
            for b in kids[i + 1:]:
                if a.geometry().adjusted(1, 1, -1, -1).intersects(b.geometry().adjusted(1, 1, -1, -1)):
                    out.append(f"widget: {name(a)} overlaps {name(b)}")
    return out


def _problems_plots(win) -> list[str]:
    import pyqtgraph as pg
    from PySide6.QtCore import QPointF

    out = []
    for w in win.findChildren(pg.PlotWidget):
        if not w.isVisibleTo(win) or w.width() < 10 or w.visibleRegion().isEmpty():
            continue  # not on screen (a dock tab behind another, say)
        item = w.getPlotItem()
        title = item.titleLabel
        if title.isVisible() and title.text and title.item.boundingRect().width() > w.width() - 4:
            out.append(f"plot: title {title.text[:40]!r} wider than its plot")
        for side in ("bottom", "left"):
            ax = item.getAxis(side)
            if not ax.isVisible():
                continue
            length = ax.width() if side == "bottom" else ax.height()
            from PySide6.QtGui import QFontMetrics as _FM

            if ax.label.isVisible() and ax.labelText and _FM(ax.label.font()).horizontalAdvance(ax.labelText) > length:
                out.append(f"plot: {side} axis label {ax.labelText!r} longer than its axis")
        ax = item.getAxis("bottom")
        levels = getattr(ax, "_tickLevels", None)
        if levels:
            fm = w.fontMetrics() if ax.style.get("tickFont") is None else None
            from PySide6.QtGui import QFontMetrics

            fm = QFontMetrics(ax.style["tickFont"]) if ax.style.get("tickFont") is not None else QFontMetrics(ax.font())
            ticks = sorted(levels[0])
            lo, hi = item.vb.viewRange()[0]
            ticks = [(v, t) for v, t in ticks if lo <= v <= hi]
            px = [item.vb.mapViewToScene(QPointF(v, 0)).x() for v, _ in ticks]
            for (a, (va, ta)), (b, (vb_, tb)) in zip(zip(px, ticks), zip(px[1:], ticks[1:])):
                if b - a < (fm.horizontalAdvance(ta) + fm.horizontalAdvance(tb)) / 2 + 2:
                    out.append(f"plot: ticks {ta!r} and {tb!r} run into each other")
                    break
    return out


def _problems_theme(win, theme: str) -> list[str]:
    import numpy as np
    import pyqtgraph as pg
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import (QAbstractButton, QAbstractScrollArea, QComboBox, QHeaderView, QLineEdit,
                                   QMenuBar, QStatusBar, QTabBar, QWidget)

    img = win.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    arr = np.frombuffer(img.constBits(), dtype=np.uint32, count=img.width() * img.height()).reshape(
        img.height(), img.width())
    ratio = img.width() / max(1, win.width())
    out = []
    kinds = (QAbstractButton, QComboBox, QLineEdit, QHeaderView, QMenuBar, QStatusBar, QTabBar, pg.PlotWidget)
    for w in win.findChildren(QWidget):
        if not w.isVisibleTo(win) or w.width() < 12 or w.height() < 12:
            continue
        target = w.viewport() if isinstance(w, QAbstractScrollArea) and not isinstance(w, pg.PlotWidget) else w
        if not isinstance(w, kinds + (QAbstractScrollArea,)) or type(w).__name__ == "QDockWidgetTitleButton":
            continue
        if isinstance(w, QLineEdit) and w.hasSelectedText():
            continue  # the selection's highlight, not a background
        seen = target.visibleRegion().boundingRect()  # the part on screen (a scrolled form clips its fields)
        if seen.width() < 8 or seen.height() < 8:
            continue
        top_left = target.mapTo(win, seen.topLeft())
        x0, y0 = int(top_left.x() * ratio), int(top_left.y() * ratio)
        x1, y1 = int((top_left.x() + seen.width()) * ratio), int((top_left.y() + seen.height()) * ratio)
        patch = arr[max(0, y0):max(0, y1), max(0, x0):max(0, x1)].ravel() & 0xFFFFFF
        if not len(patch):
            continue
        values, counts = np.unique(patch, return_counts=True)
        if counts.max() < 0.3 * len(patch):
            continue  # no clear background (a heat map, say)
        c = int(values[counts.argmax()])
        r, g, b = (c >> 16) & 255, (c >> 8) & 255, c & 255
        if max(r, g, b) - min(r, g, b) > 60:
            continue  # a saturated colour is data (a heat map, a pass/fail row), not a background
        lum = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255
        if (theme == "dark") != (lum < 0.5):
            out.append(f"theme: {type(w).__name__}({w.objectName()}) has a {'light' if lum >= 0.5 else 'dark'}"
                       f" background #{c:06x} in the {theme} theme")
    return out


def audit(win, theme: str) -> list[str]:
    """Every problem found in `win` as it is now."""
    return _problems_graph(win) + _problems_widgets(win) + _problems_plots(win) + _problems_theme(win, theme)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1600x1000,1280x800")
    ap.add_argument("--targets", default=",".join(TARGETS + [str(NET20)]))
    ap.add_argument("--themes", default="light,dark")
    ap.add_argument("--languages", default="en,zh")
    ap.add_argument("--shots", default="", help="save a screenshot of each view into this folder")
    args = ap.parse_args(argv)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from gradviz.core.session import Session
    from gradviz.qt.app import QtMainWindow, _app

    app = _app()
    settings = QSettings(os.path.join(tempfile.mkdtemp(), "audit.ini"), QSettings.Format.IniFormat)
    settings.setValue("language", "en")
    win = QtMainWindow(Session(), settings=settings)
    win.show()

    def settle(busy=True, rounds=8):
        deadline = time.time() + 300
        while busy and win.is_busy() and time.time() < deadline:
            app.processEvents()
            time.sleep(0.01)
        for _ in range(rounds):
            app.processEvents()
            time.sleep(0.01)

    n = 0
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        win.resize(w, h)
        settle(False)
        for target in args.targets.split(","):
            win.set_theme("light")
            win.set_language("en")
            win.open_target(target, {})
            settle()
            if win.recording is None or win.last_error:
                print(json.dumps({"problem": f"{target}: did not open: {win.last_error}"}), flush=True)
                continue
            for theme in args.themes.split(","):
                win.set_theme(theme)
                for lang in args.languages.split(","):
                    win.set_language(lang)
                    settle(False)
                    where = f"{size} {Path(target).name} {theme} {lang}"
                    for p in audit(win, theme):
                        print(json.dumps({"problem": f"{where}: {p}"}, ensure_ascii=False), flush=True)
                    if args.shots:
                        win.grab().save(os.path.join(args.shots, where.replace(" ", "_") + ".png"))
                    n += 1
            # the end of backward with a leaf picked: the Accumulation dock in front, every panel filled
            win.step_last()
            win.select_node(next(iter(win.recording.leaves.values())).node)
            for theme in args.themes.split(","):
                win.set_theme(theme)
                for lang in args.languages.split(","):
                    win.set_language(lang)
                    settle(False)
                    where = f"{size} {Path(target).name} {theme} {lang} end"
                    for p in _problems_widgets(win) + _problems_plots(win) + _problems_theme(win, theme):
                        print(json.dumps({"problem": f"{where}: {p}"}, ensure_ascii=False), flush=True)
                    if args.shots:
                        win.grab().save(os.path.join(args.shots, where.replace(" ", "_") + ".png"))
                    # the Inspector in front, on the loss at the end of backward (values, gradients, tables)
                    win.docks["inspector"].raise_()
                    win.inspector.show_node(win.recording, win.recording.root, win.stepper.state, win.timeline)
                    settle(False, 4)
                    for p in _problems_widgets(win):
                        print(json.dumps({"problem": f"{where} inspector: {p}"}, ensure_ascii=False), flush=True)
                    win.select_node(None)
                    win.select_node(next(iter(win.recording.leaves.values())).node)
                    n += 1
    win.close()
    QApplication.processEvents()
    print(json.dumps({"done": n}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
