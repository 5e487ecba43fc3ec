"""The graph view: the unrolled autograd graph, laid out, drawn and highlighted step by step.

`QtGraphView` is a QGraphicsView over one `_GraphItem` that draws every node and edge from arrays
(pyqtgraph GraphItem style: ``pos (N, 2)``, ``adj (M, 2)``, per-node style arrays). A step touches only
the per-node arrays of the nodes it changes and repaints their rectangles; painting culls to the
exposed rectangle and drops text and shapes at low zoom, so large graphs stay fast.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph.functions as pgfn
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsObject, QGraphicsScene, QGraphicsView, QStyleOptionGraphicsItem

from gradviz.core.layout import NODE_H, NODE_W, Layout, edge_route, edge_segments, layered_layout
from gradviz.core.recording import Recording
from gradviz.core.tensors import TensorData
from gradviz.core.timeline import BACKWARD_DONE, COMPUTED, Stepper, StepState

from .i18n import tr
from .theme import get_theme

__all__ = ["QtGraphView", "format_tensor", "NODE_W", "NODE_H"]

_KINDS = ("op", "custom", "leaf", "input")
SMALL = 4  # tensors with at most this many elements show their values in labels


def format_tensor(t: TensorData | None, small: int = SMALL) -> str:
    """Short text for a tensor: its values when it has at most `small` elements, else its shape."""
    if t is None:
        return "None"
    if t.value is not None and t.numel <= small:
        vals = np.asarray(t.value).reshape(-1)
        if vals.dtype.kind in "fc":
            digits = 4 if t.numel == 1 else 3  # lists must fit a node's width
            text = ", ".join(f"{float(v):.{digits}g}" for v in vals)
        else:
            text = ", ".join(str(v) for v in vals.tolist())
        return text if t.numel == 1 else f"[{text}]"
    return format_shape(t.shape)


def format_shape(shape) -> str:
    """A shape as a label shows it: ``5×3``, ``(5,)`` for a vector (a bare ``5`` reads as a value), ``scalar``."""
    shape = tuple(shape)
    if not shape:
        return "scalar"
    return f"({shape[0]},)" if len(shape) == 1 else "×".join(str(s) for s in shape)


def _clip_segments(a: np.ndarray, b: np.ndarray, x0: float, y0: float, x1: float, y1: float):
    """Clip segments a→b (arrays (M, 2)) to a rectangle (Liang–Barsky, vectorised); drop those outside."""
    d = b - a
    t0 = np.zeros(len(a))
    t1 = np.ones(len(a))
    keep = np.ones(len(a), dtype=bool)
    for p, q in ((-d[:, 0], a[:, 0] - x0), (d[:, 0], x1 - a[:, 0]), (-d[:, 1], a[:, 1] - y0), (d[:, 1], y1 - a[:, 1])):
        zero = p == 0
        keep &= ~(zero & (q < 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = q / p
        neg, pos = (p < 0) & ~zero, (p > 0) & ~zero
        t0 = np.where(neg, np.maximum(t0, r), t0)
        t1 = np.where(pos, np.minimum(t1, r), t1)
    keep &= t0 <= t1
    a2 = a[keep] + t0[keep, None] * d[keep]
    b2 = a[keep] + t1[keep, None] * d[keep]
    return a2, b2


class _GraphItem(QGraphicsObject):
    """Draws a laid-out graph from arrays; styles change per node without rebuilding anything."""

    def drawn_lines(self, g: int) -> list[str]:
        """The label lines of drawn node `g` as painted: value lines too wide for the node end in
        "…", so a cut-off value is never read as whole; the first line, the name, stays whole."""
        lines = self._view._label_lines(g)
        # a leaf's rounded ends leave less room than a box's square corners
        room = NODE_W - (NODE_H * 0.55 if _KINDS[int(self.kind[g])] == "leaf" else 10)
        metrics = self._colors["fm"]
        return lines[:1] + [metrics.elidedText(line, Qt.TextElideMode.ElideRight, room) for line in lines[1:]]

    def __init__(self, view: "QtGraphView"):
        super().__init__()
        self._view = view
        self.setFlag(QGraphicsObject.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.pos_ = np.zeros((0, 2))
        self.adj = np.zeros((0, 2), dtype=np.int64)
        self.kind = np.zeros(0, dtype=np.int8)
        self.status = np.zeros(0, dtype=np.int8)
        self.pending = np.zeros(0, dtype=np.int32)
        self.edge_done = np.zeros(0, dtype=bool)
        self.is_input_edge = np.zeros(0, dtype=bool)
        self.current = -1
        self.selected = -1
        self.phase = "start"
        self.flowing: list = []  # (group sender, group receiver, text)
        self._layout: Layout | None = None
        self._row_of: dict = {}  # (sender, receiver) -> row of adj
        self.labels: list[list[str] | None] = []
        self._rect = QRectF()
        self._colors: dict = {}
        self.full_detail = False  # exports to vector files: every label, whatever the zoom

    # -- data ---------------------------------------------------------------------------------
    def set_data(self, layout: Layout, kind: np.ndarray, is_input_edge: np.ndarray) -> None:
        """Draw `layout` (its ``pos``, ``adj`` and edge routes): rebuild every cache in one `_update`."""
        self.prepareGeometryChange()
        self._layout = layout
        self.pos_ = np.asarray(layout.pos, dtype=float).reshape(-1, 2)
        self.adj = np.asarray(layout.adj, dtype=np.int64).reshape(-1, 2)
        self.kind = np.asarray(kind, dtype=np.int8)
        n = len(self.pos_)
        self.status = np.zeros(n, dtype=np.int8)
        self.pending = np.zeros(n, dtype=np.int32)
        self.edge_done = np.zeros(len(self.adj), dtype=bool)
        self.is_input_edge = np.asarray(is_input_edge, dtype=bool)
        self.labels = [None] * n
        self.current = self.selected = -1
        self.flowing = []
        self._update()

    def _update(self) -> None:
        """Rebuild every cache from the arrays: bounds, edge boxes, colours."""
        p = self.pos_
        if len(p):
            lo, hi = p.min(0), p.max(0)
            m = 60.0
            self._rect = QRectF(lo[0] - NODE_W / 2 - m, lo[1] - NODE_H / 2 - m,
                                hi[0] - lo[0] + NODE_W + 2 * m, hi[1] - lo[1] + NODE_H + 2 * m)
        else:
            self._rect = QRectF(0, 0, 1, 1)
        # drawn segments (gradviz.core.layout.edge_segments): routed around nodes; a long edge (a
        # weight shared by every time step) as a stub at each end
        if len(self.adj):
            self._row_of = {(int(s), int(d)): row for row, (s, d) in enumerate(self.adj.tolist())}
            self._seg_a, self._seg_b, self._seg_edge = edge_segments(self._layout)
            self._ebox = np.concatenate([np.minimum(self._seg_a, self._seg_b), np.maximum(self._seg_a, self._seg_b)], axis=1)
        else:
            self._seg_a = self._seg_b = np.zeros((0, 2))
            self._seg_edge = np.zeros(0, dtype=np.int64)
            self._ebox = np.zeros((0, 4))
        self.set_theme(self._view.theme_name, update=False)
        self.update()

    def set_theme(self, name: str, update: bool = True) -> None:
        """Build the pens, brushes and fonts of theme `name`."""
        th = get_theme(name)
        c = {"theme": th}
        for k in _KINDS:
            fills = [QBrush(QColor(x)) for x in th[k][:3]]
            border = QColor(th[k][3])
            dim = QColor(border)
            dim.setAlpha(70)
            c[k] = (fills, border, dim)
        c["text"] = QColor(th["text"])
        c["text_dim"] = QColor(th["text_dim"])
        c["edge"] = QPen(QColor(th["edge"]), 1.4)
        c["edge"].setCosmetic(True)
        c["edge_done"] = QPen(QColor(th["edge_done"]), 2.0)
        c["edge_done"].setCosmetic(True)
        c["edge_input"] = QPen(QColor(th["edge_input"]), 1.2, Qt.PenStyle.DashLine)
        c["edge_input"].setCosmetic(True)
        c["flow"] = QPen(QColor(th["flow"]), 4.0)
        c["flow"].setCapStyle(Qt.PenCapStyle.RoundCap)
        c["flow_text"] = QColor(th["flow_text"])
        c["current"] = QPen(QColor(th["current"]), 4.0)
        c["selected"] = QPen(QColor(th["selected"]), 3.0, Qt.PenStyle.DashLine)
        c["badge"] = QBrush(QColor(th["badge"]))
        c["badge_text"] = QColor(th["badge_text"])
        c["wait"] = QBrush(QColor(th["wait"]))
        c["saved"] = QBrush(QColor(th["saved"]))
        c["background"] = QColor(th["background"])
        f = QFont("DejaVu Sans")
        f.setPixelSize(12)
        bold = QFont(f)
        bold.setBold(True)
        small = QFont(f)
        small.setPixelSize(10)
        c["font"], c["bold"], c["small"] = f, bold, small
        c["fm"] = QFontMetricsF(f)
        self._colors = c
        if update:
            self.update()

    # -- geometry -----------------------------------------------------------------------------
    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        return self._rect

    def node_rect(self, i: int, margin: float = 0.0) -> QRectF:
        """The rectangle node `i` covers, grown by `margin`."""
        x, y = self.pos_[i]
        return QRectF(x - NODE_W / 2 - margin, y - NODE_H / 2 - margin, NODE_W + 2 * margin, NODE_H + 2 * margin)

    def edge_rect(self, s: int, d: int) -> QRectF:
        a, b = self.pos_[s], self.pos_[d]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        # room for the gradient's text and arrow head
        return QRectF(lo[0] - 90, lo[1] - 30, hi[0] - lo[0] + 180, hi[1] - lo[1] + 60)

    def node_at(self, x: float, y: float) -> int:
        """The node under scene point (x, y), or -1."""
        if not len(self.pos_):
            return -1
        d = np.abs(self.pos_ - (x, y))
        hit = np.flatnonzero((d[:, 0] <= NODE_W / 2) & (d[:, 1] <= NODE_H / 2))
        return int(hit[0]) if len(hit) else -1

    # -- painting -----------------------------------------------------------------------------
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        if not len(self.pos_):
            return
        c = self._colors
        r = option.exposedRect if option is not None and not option.exposedRect.isEmpty() else self._rect
        lod = QStyleOptionGraphicsItem.levelOfDetailFromTransform(painter.worldTransform())
        if self.full_detail:
            lod = max(lod, 1.0)
        x0, y0, x1, y1 = r.left(), r.top(), r.right(), r.bottom()
        # edges whose box meets the exposed rectangle
        eb = self._ebox
        if len(eb):
            em = (eb[:, 2] >= x0 - NODE_W) & (eb[:, 0] <= x1 + NODE_W) & (eb[:, 3] >= y0 - NODE_H) & (eb[:, 1] <= y1 + NODE_H)
            idx = np.flatnonzero(em)
            if len(idx):
                done = self.edge_done[self._seg_edge[idx]]
                inp = self.is_input_edge[self._seg_edge[idx]]
                clip = (x0 - 20, y0 - 20, x1 + 20, y1 + 20)
                for sel, pen in ((~done & ~inp, c["edge"]), (inp, c["edge_input"]), (done & ~inp, c["edge_done"])):
                    self._draw_edges(painter, idx[sel], pen, clip)
        # nodes in the exposed rectangle
        p = self.pos_
        nm = ((p[:, 0] + NODE_W / 2 >= x0) & (p[:, 0] - NODE_W / 2 <= x1)
              & (p[:, 1] + NODE_H / 2 >= y0) & (p[:, 1] - NODE_H / 2 <= y1))
        nodes = np.flatnonzero(nm)
        self._paint_flow(painter, lod, heads=False)
        coarse = lod < 0.22 or (len(nodes) > 4000 and not self.full_detail)
        if coarse:
            self._paint_coarse(painter, nodes)
        else:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            text = lod >= 0.45
            for i in nodes.tolist():
                self._paint_node(painter, i, text)
        self._paint_flow(painter, lod, heads=True)
        if self.current >= 0:
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(c["current"])
            painter.drawRoundedRect(self.node_rect(self.current, 4), 12, 12)
        if self.selected >= 0:
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(c["selected"])
            painter.drawRoundedRect(self.node_rect(self.selected, 9), 14, 14)

    def _draw_edges(self, painter: QPainter, idx: np.ndarray, pen: QPen, clip: tuple | None = None) -> None:
        """Draw edge segments `idx` as one path, each clipped to `clip` (x0, y0, x1, y1) first."""
        if not len(idx):
            return
        a = self._seg_a[idx]
        b = self._seg_b[idx]
        if clip is not None:
            a, b = _clip_segments(a, b, *clip)
            if not len(a):
                return
        x = np.empty(2 * len(a))
        y = np.empty(2 * len(a))
        x[0::2], x[1::2] = a[:, 0], b[:, 0]
        y[0::2], y[1::2] = a[:, 1], b[:, 1]
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(pgfn.arrayToQPath(x, y, connect="pairs", finiteCheck=False))

    def _paint_coarse(self, painter: QPainter, nodes: np.ndarray) -> None:
        """Low zoom: every node a plain rectangle coloured by kind and status, no text."""
        c = self._colors
        painter.setPen(Qt.PenStyle.NoPen)
        kinds, status = self.kind[nodes], self.status[nodes]
        for k, kname in enumerate(_KINDS):
            fills, border, _dim = c[kname]
            for s in (0, 1, 2):
                sel = nodes[(kinds == k) & (status == s)]
                if not len(sel):
                    continue
                brush = QBrush(border) if s else fills[0]
                painter.setBrush(brush)
                path = QPainterPath()
                for x, y in self.pos_[sel].tolist():
                    path.addRect(x - NODE_W / 2, y - NODE_H / 2, NODE_W, NODE_H)
                painter.drawPath(path)

    def _paint_node(self, painter: QPainter, i: int, text: bool) -> None:
        c = self._colors
        kname = _KINDS[self.kind[i]]
        fills, border, dim = c[kname]
        s = int(self.status[i])
        reached = s >= COMPUTED
        rect = self.node_rect(i)
        pen = QPen(border if reached else dim, 2.0 if kname != "custom" else 3.0)
        if kname == "input":
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(fills[s])
        if kname == "leaf":
            painter.drawRoundedRect(rect, NODE_H / 2, NODE_H / 2)
        elif kname == "custom":
            painter.drawRect(rect)
            painter.drawRect(rect.adjusted(4, 4, -4, -4))
        else:
            painter.drawRoundedRect(rect, 8, 8)
        if not text:
            return
        lines = self.labels[i]
        if lines is None:
            lines = self.labels[i] = self.drawn_lines(i)
        col = c["text"] if reached and kname != "input" else c["text_dim"]
        painter.setPen(col)
        y = rect.top() + 6
        for j, line in enumerate(lines[:4]):
            painter.setFont(c["bold"] if j == 0 else c["font"])
            painter.drawText(QRectF(rect.left() + 5, y, NODE_W - 10, 15), Qt.AlignmentFlag.AlignHCenter, line)
            y += 14.5
        nsaved = self._view._saved_count(i)
        if nsaved:
            # a saved-tensor marker: a small purple tab with the count
            tab = QRectF(rect.right() - 52, rect.top() - 8, 56, 15)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(c["saved"])
            painter.drawRoundedRect(tab, 4, 4)
            painter.setPen(c["badge_text"])
            painter.setFont(c["small"])
            painter.drawText(tab, Qt.AlignmentFlag.AlignCenter, f"{nsaved} {tr('saved')}")
        if self.phase == "backward" and s != BACKWARD_DONE and kname != "input":
            # why it waits: gradients still to arrive (the engine's dependency count)
            w = int(self.pending[i])
            badge = QRectF(rect.left() - 6, rect.top() - 9, 64, 16)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(c["wait"] if w else c["badge"])
            painter.drawRoundedRect(badge, 8, 8)
            painter.setPen(c["badge_text"])
            painter.setFont(c["small"])
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, f"{tr('waits')} {w}" if w else tr("ready"))

    def _paint_flow(self, painter: QPainter, lod: float, heads: bool) -> None:
        """The gradients flowing at this step: thick arrows (under the nodes) with the value on them (over)."""
        if not self.flowing:
            return
        c = self._colors
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for s, d, text in self.flowing:
            row = self._row_of.get((s, d))
            route = list(edge_route(self._layout, row)) if row is not None else [self.pos_[s], self.pos_[d]]
            if not heads:
                painter.setPen(c["flow"])
                painter.drawPolyline(QPolygonF([QPointF(*q) for q in route]))
                continue
            # the head sits on the last leg of the route; the value halfway along it: on the middle
            # bend point, or the middle of the middle leg
            a, b = QPointF(*route[-2]), QPointF(*route[-1])
            half = len(route) // 2
            mid_a, mid_b = (route[half], route[half]) if len(route) % 2 else (route[half - 1], route[half])
            # arrow head at the receiver's border
            v = np.array([b.x() - a.x(), b.y() - a.y()])
            L = float(np.hypot(*v)) or 1.0
            u = v / L
            tcut = min(abs(NODE_W / 2 / u[0]) if u[0] else 1e9, abs(NODE_H / 2 / u[1]) if u[1] else 1e9)
            tip = np.array([b.x(), b.y()]) - u * (tcut + 2)
            nrm = np.array([-u[1], u[0]])
            head = QPolygonF([QPointF(*tip), QPointF(*(tip - u * 16 + nrm * 8)), QPointF(*(tip - u * 16 - nrm * 8))])
            painter.setBrush(QBrush(c["flow"].color()))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawPolygon(head)
            if text and lod >= 0.3:
                mid = QPointF((mid_a[0] + mid_b[0]) / 2, (mid_a[1] + mid_b[1]) / 2)
                painter.setFont(c["bold"])
                w = c["fm"].horizontalAdvance(text) + 14
                box = QRectF(mid.x() - w / 2, mid.y() - 10, w, 20)
                painter.setBrush(QBrush(c["background"]))
                painter.setPen(QPen(c["flow"].color(), 1.5))
                painter.drawRoundedRect(box, 6, 6)
                painter.setPen(c["flow_text"])
                painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)


class QtGraphView(QGraphicsView):
    """The unrolled autograd graph of a recording, highlighted at the stepper's current step.

    Parameters
    ----------
    recording : Recording or None
    stepper : Stepper, optional
        The view follows it (``step_changed``); without one the graph is drawn as at the start.
    layout : str
        ``"lr"`` (left to right) or ``"tb"`` (top to bottom).
    theme : str
        ``"light"`` or ``"dark"``.
    rolled : bool
        Fold every use of a reused module into one node.
    precomputed : Layout, optional
        A layout computed elsewhere (a worker thread), used instead of computing one.

    Signals
    -------
    node_clicked(int)
        A node was clicked (recording node id).
    node_activated(int)
        A node was double-clicked (recording node id).
    """

    node_clicked = Signal(int)
    node_activated = Signal(int)

    def __init__(self, recording: Recording | None = None, stepper: Stepper | None = None, layout: str = "lr",
                 theme: str = "light", rolled: bool = False, parent=None, precomputed: Layout | None = None):
        super().__init__(parent)
        self.theme_name = theme
        self.direction = layout
        self.rolled = rolled
        self.follow = True
        self.recording: Recording | None = None
        self.stepper: Stepper | None = None
        self.layout_: Layout | None = None
        self._press = None
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self._item = _GraphItem(self)
        self._scene.addItem(self._item)
        self.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing, True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(200, 150)
        self._apply_background()
        if recording is not None:
            self.set_recording(recording, stepper, precomputed)

    # -- model --------------------------------------------------------------------------------
    def set_recording(self, recording: Recording, stepper: Stepper | None = None,
                      precomputed: Layout | None = None) -> None:
        """Show `recording`, following `stepper` (replacing what was shown)."""
        if self.stepper is not None:
            self.stepper.step_changed.disconnect(self._on_step_changed)
        self.recording = recording
        self.stepper = stepper
        if stepper is not None:
            stepper.step_changed.connect(self._on_step_changed)
        self.set_layout(precomputed or layered_layout(recording, self.direction, self.rolled), fit=True)

    def set_layout(self, layout: Layout, fit: bool = True) -> None:
        """Draw the graph with positions from `layout` (from `gradviz.core.layout`)."""
        rec = self.recording
        self.layout_ = layout
        self.direction, self.rolled = layout.direction, layout.rolled
        kinds = {k: i for i, k in enumerate(_KINDS)}
        kind = np.array([kinds.get(rec.nodes[m[0]].kind, 0) for m in layout.members], dtype=np.int8)
        is_input = np.zeros(len(layout.adj), dtype=bool)
        is_input[layout.input_edge_rows] = True
        self._group_deps = None
        self._item.set_data(layout, kind, is_input)
        self._scene.setSceneRect(self._item.boundingRect())
        state = self.stepper.state if self.stepper is not None else None
        if state is not None:
            self._apply_state(state, None)
        else:
            self._item.status[:] = [1 if k == kinds["input"] or k == kinds["leaf"] else 0 for k in kind]
        if fit:
            self.fit()

    def relayout(self, direction: str | None = None, rolled: bool | None = None) -> None:
        """Lay the graph out again with another direction or rolled mode (computed here, synchronously)."""
        if self.recording is None:
            return
        d = self.direction if direction is None else direction
        r = self.rolled if rolled is None else rolled
        sel = self.selected_node()
        self.set_layout(layered_layout(self.recording, d, r), fit=True)
        if sel is not None:
            self.select_node(sel, center=False)

    def set_theme(self, name: str) -> None:
        """Switch to theme `name` (``"light"`` or ``"dark"``)."""
        self.theme_name = name
        self._apply_background()
        self._item.set_theme(name)

    def _apply_background(self) -> None:
        self.setBackgroundBrush(QBrush(QColor(get_theme(self.theme_name)["background"])))

    # -- stepping -----------------------------------------------------------------------------
    def _on_step_changed(self, state: StepState, changed: np.ndarray) -> None:
        self._apply_state(state, changed)

    def _apply_state(self, state: StepState, changed: np.ndarray | None) -> None:
        """Copy the state of the `changed` nodes (all when None) into the item and repaint their rectangles."""
        it, lay, rec = self._item, self.layout_, self.recording
        if lay is None:
            return
        dirty: list[QRectF] = []
        g_of = lay.group_of
        if changed is None or lay.rolled:
            groups = np.arange(len(lay)) if changed is None else np.unique(g_of[np.asarray(changed, dtype=np.int64)])
        else:
            groups = np.asarray(changed, dtype=np.int64)
        if lay.rolled:
            for g in groups.tolist():
                m = lay.members[g]
                it.status[g] = state.status[m].max()
                it.pending[g] = state.pending[m].sum()
                it.labels[g] = None
        elif changed is None:
            it.status[:] = state.status
            it.pending[:] = state.pending
            it.labels = [None] * len(lay)
        else:
            it.status[groups] = state.status[groups]
            it.pending[groups] = state.pending[groups]
            for g in groups.tolist():
                it.labels[g] = None
        # edges already traversed by a gradient: their sender ran backward
        if changed is None:
            it.edge_done[:] = False
            done_nodes = np.flatnonzero(state.status == BACKWARD_DONE)
            mask = np.zeros(len(rec.nodes), dtype=bool)
            mask[done_nodes] = True
            src = np.array([e[0] for e in rec.edges], dtype=np.int64)
            if len(src):
                it.edge_done[lay.edge_of[mask[src]]] = True
        else:
            for nid in np.asarray(changed, dtype=np.int64).tolist():
                for k in self._edges_from(nid):
                    row = lay.edge_of[k]
                    it.edge_done[row] = state.status[nid] == BACKWARD_DONE
                    dirty.append(it.edge_rect(*lay.adj[row]))
        old_current = it.current
        it.current = int(g_of[state.current]) if state.current is not None else -1
        it.phase = state.phase
        for s, d, _ in it.flowing:
            dirty.append(it.edge_rect(s, d))
        it.flowing = [(int(g_of[s]), int(g_of[d]), format_tensor(g) if g is not None else "None")
                      for s, d, _slot, g in state.flowing]
        for s, d, _ in it.flowing:
            dirty.append(it.edge_rect(s, d))
        if changed is None or len(groups) > 2000:
            it.update()
        else:
            for g in groups.tolist():
                dirty.append(it.node_rect(g, 14))
            for g in (old_current, it.current):
                if g >= 0:
                    dirty.append(it.node_rect(g, 14))
            for r in dirty:
                it.update(r)
        if self.follow and it.current >= 0 and changed is not None:
            self._keep_visible(it.current)

    def _edges_from(self, nid: int) -> list[int]:
        """Indices into ``recording.edges`` of the gradient edges node `nid` sends along."""
        if getattr(self, "_out_edge_index", None) is None or self._out_edge_rec is not self.recording:
            index: list[list[int]] = [[] for _ in self.recording.nodes]
            for k, (s, _d, _slot) in enumerate(self.recording.edges):
                index[s].append(k)
            self._out_edge_index, self._out_edge_rec = index, self.recording
        return self._out_edge_index[nid]

    def _keep_visible(self, g: int) -> None:
        r = self._item.node_rect(g, 20)
        if not self.visible_rect().contains(r):
            self.centerOn(r.center())

    # -- labels -------------------------------------------------------------------------------
    def _label_lines(self, g: int) -> list[str]:
        """Text lines of drawn node `g` at the current step."""
        rec, lay = self.recording, self.layout_
        members = lay.members[g]
        node = rec.nodes[members[0]]
        lines = node.label.split("\n")
        if len(members) > 1 and node.module:
            lines = [lines[0], f"{node.module} · {len(members)} {tr('uses')}"]
        state = self.stepper.state if self.stepper is not None else None
        status = int(self._item.status[g])
        if node.kind in ("leaf", "input"):
            t = node.tensor
            if node.kind == "leaf" and node.leaf and state is not None and node.leaf in rec.leaves:
                ls = state.leaf(node.leaf)
                if ls.arrived:
                    lines.append(f"grad {format_tensor(ls.buffer)}" +
                                 (f"  ({ls.arrived}/{ls.total})" if ls.total > 1 else ""))
                    return lines
            if t is not None:
                lines.append(format_tensor(t))
            return lines
        t = node.tensor
        if t is not None:
            shape = format_shape(t.shape)
            if status >= COMPUTED and t.value is not None and t.numel <= SMALL:
                lines.append(f"{format_tensor(t)}")
            else:
                lines.append(shape)
        if status == BACKWARD_DONE and len(members) == 1:
            ev = self._backward_event(members[0])
            if ev is not None and ev.grad_outputs and ev.grad_outputs[0] is not None:
                lines.append(f"grad {format_tensor(ev.grad_outputs[0])}")
        return lines

    def _backward_event(self, nid: int):
        if self.stepper is None:
            return None
        step = self.stepper.timeline.step_of(nid, "backward")
        if step is None:
            return None
        return self.recording.backward[self.stepper.timeline.steps[step].event]

    def _saved_count(self, g: int) -> int:
        saved = self.recording.nodes[self.layout_.members[g][0]].saved
        return sum(isinstance(v, TensorData) for v in saved.values())

    def label_of(self, node_id: int) -> list[str]:
        """The text lines drawn for recording node `node_id` at the current step."""
        return self._item.drawn_lines(int(self.layout_.group_of[node_id]))

    # -- selection and search -----------------------------------------------------------------
    def select_node(self, node_id: int | None, center: bool = True) -> None:
        """Mark recording node `node_id` as selected (None clears) and, with `center`, scroll to it."""
        it = self._item
        old = it.selected
        it.selected = -1 if node_id is None else int(self.layout_.group_of[node_id])
        for g in (old, it.selected):
            if g >= 0:
                it.update(it.node_rect(g, 16))
        if center and it.selected >= 0:
            self.centerOn(QPointF(*it.pos_[it.selected]))

    def selected_node(self) -> int | None:
        """The recording node id of the selection (the first member when rolled), or None."""
        g = self._item.selected
        return None if g < 0 else self.layout_.members[g][0]

    def find(self, text: str) -> int | None:
        """Select and show the first node whose name, leaf or module contains `text`; return its id."""
        if self.recording is None or not text.strip():
            return None
        hits = self.recording.find(text.strip())
        if not hits:
            return None
        self.select_node(hits[0].id)
        self.node_clicked.emit(hits[0].id)
        return hits[0].id

    def current_group(self) -> int:
        """The drawn node highlighted as the current step's node (-1 for none)."""
        return self._item.current

    def node_style(self, node_id: int) -> tuple[int, int]:
        """``(status, pending)`` as drawn for recording node `node_id`."""
        g = int(self.layout_.group_of[node_id])
        return int(self._item.status[g]), int(self._item.pending[g])

    def flowing_texts(self) -> list[tuple[int, int, str]]:
        """The gradient arrows drawn now: ``(sender group, receiver group, text)``."""
        return list(self._item.flowing)

    # -- view ---------------------------------------------------------------------------------
    def graph_rect(self) -> QRectF:
        """The whole graph's bounding rectangle in scene coordinates."""
        return QRectF(self._item.boundingRect())

    def visible_rect(self) -> QRectF:
        """The part of the scene the viewport shows now."""
        return self.mapToScene(self.viewport().rect()).boundingRect()

    def render_to(self, painter: QPainter, target: QRectF, source: QRectF | None = None,
                  full_detail: bool = False) -> None:
        """Paint the graph as shown (highlights, labels, flowing gradients) into `target` of `painter`.

        Parameters
        ----------
        painter : QPainter
            Any paint device: an image, a PDF, an SVG generator.
        target : QRectF
            Where to paint on the device.
        source : QRectF, optional
            The scene rectangle to paint; the whole graph by default.
        full_detail : bool
            Draw every label and shape whatever the scale (vector exports keep all text).
        """
        src = QRectF(source) if source is not None else self.graph_rect()
        painter.save()
        painter.fillRect(target, QColor(get_theme(self.theme_name)["background"]))
        self._item.full_detail = full_detail
        try:
            self._scene.render(painter, target, src, Qt.AspectRatioMode.KeepAspectRatio)
        finally:
            self._item.full_detail = False
        painter.restore()

    def fit(self) -> None:
        """Fit the graph in the window; very large graphs open at a readable zoom on the loss instead."""
        r = self.graph_rect()
        vp = self.viewport().rect()
        self._auto_fit = True  # until the user zooms or pans, a resize fits again
        if r.isEmpty() or vp.width() < 10:
            return
        self.resetTransform()
        scale = min(vp.width() / r.width(), vp.height() / r.height())
        if scale >= 0.3:
            s = min(scale * 0.97, 1.3)
            self.scale(s, s)
            self.centerOn(r.center())
        else:
            self.scale(0.5, 0.5)
            it = self._item
            g = it.current if it.current >= 0 else (int(self.layout_.group_of[self.recording.root])
                                                     if self.layout_ is not None else -1)
            self.centerOn(QPointF(*it.pos_[g]) if g >= 0 else r.center())

    def fit_all(self) -> None:
        """Show the whole graph, however small that makes it."""
        self.fitInView(self.graph_rect(), Qt.AspectRatioMode.KeepAspectRatio)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if getattr(self, "_auto_fit", False) and self.layout_ is not None:
            self.fit()

    def zoom(self, factor: float) -> None:
        """Zoom by `factor` around the view's centre."""
        self._auto_fit = False
        s = self.transform().m11() * factor
        if 0.0005 < s < 8:
            self.scale(factor, factor)

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.zoom(1.0015 ** event.angleDelta().y())

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.key() == Qt.Key.Key_F and not event.modifiers():
            self.fit()
            return
        if event.key() in (Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Up, Qt.Key.Key_Down,
                           Qt.Key.Key_Home, Qt.Key.Key_End, Qt.Key.Key_Space):
            event.ignore()  # stepping keys belong to the window's actions
            return
        super().keyPressEvent(event)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._press = event.position()
        self._auto_fit = False
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().mouseReleaseEvent(event)
        if self._press is not None and (event.position() - self._press).manhattanLength() < 5:
            nid = self.node_at_view(event.position().toPoint())
            if nid is not None:
                self.select_node(nid, center=False)
                self.node_clicked.emit(nid)
        self._press = None

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802 - Qt API
        nid = self.node_at_view(event.position().toPoint())
        if nid is not None:
            self.select_node(nid, center=False)
            self.node_activated.emit(nid)
        else:
            super().mouseDoubleClickEvent(event)

    def node_at_view(self, point) -> int | None:
        """The recording node id under viewport `point`, or None."""
        if self.layout_ is None:
            return None
        p = self.mapToScene(point)
        g = self._item.node_at(p.x(), p.y())
        return None if g < 0 else self.layout_.members[g][0]

    def node_view_pos(self, node_id: int):
        """The viewport point at the centre of recording node `node_id`."""
        g = int(self.layout_.group_of[node_id])
        return self.mapFromScene(QPointF(*self._item.pos_[g]))
