"""Draw a recording's graph with a QPainter, offscreen: the renderer behind image exports.

`GraphPainter` lays the unrolled graph out in layers (the loss's node first, leaves last, by the
longest path from the loss) and paints it at one timeline step: node fills by kind and status, the
current node outlined, the gradients flowing at that step highlighted, labels as text (so SVG and
PDF files keep searchable text). It holds no widgets, so it paints in worker threads too.
"""
from __future__ import annotations

from collections import deque

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen, QPolygonF

from ..core.exporters import THEMES, node_style
from ..core.recording import Recording
from ..core.timeline import StepState, Stepper, Timeline

__all__ = ["GraphPainter", "layered_layout", "NODE_W", "NODE_H"]

NODE_W, NODE_H = 168.0, 46.0
LAYER_GAP, ROW_GAP, MARGIN, CAPTION_H = 64.0, 16.0, 24.0, 30.0
FONT_FAMILY = "DejaVu Sans"


def layered_layout(rec: Recording, layout: str = "lr") -> np.ndarray:
    """Centre of every node, shape (N, 2): layer by longest path from the loss, rows in id order.

    Parameters
    ----------
    rec : Recording
    layout : {"lr", "tb"}
        ``"lr"``: layers run left to right (the loss on the left); ``"tb"``: top to bottom.
    """
    n = len(rec.nodes)
    out_edges: list[list[int]] = [[] for _ in range(n)]
    indeg = np.zeros(n, dtype=np.int64)
    for s, d, _ in list(rec.edges) + list(rec.input_edges):
        out_edges[s].append(d)
        indeg[d] += 1
    depth = np.zeros(n, dtype=np.int64)
    queue = deque(int(i) for i in np.flatnonzero(indeg == 0))
    seen = 0
    while queue:
        u = queue.popleft()
        seen += 1
        for v in out_edges[u]:
            if depth[u] + 1 > depth[v]:
                depth[v] = depth[u] + 1
            indeg[v] -= 1
            if indeg[v] == 0:
                queue.append(v)
    # leaves and inputs sit one layer past the deepest op that uses them (Kahn's order already did that)
    row = np.zeros(n, dtype=np.int64)
    counts: dict[int, int] = {}
    for i in range(n):
        d = int(depth[i])
        row[i] = counts.get(d, 0)
        counts[d] = row[i] + 1
    tallest = max(counts.values()) if counts else 1
    pos = np.zeros((n, 2), dtype=np.float64)
    for i in range(n):
        d, r = int(depth[i]), int(row[i])
        # centre each layer's rows against the tallest layer
        offset = (tallest - counts[d]) / 2.0
        if layout == "tb":
            pos[i] = ((r + offset) * (NODE_W + ROW_GAP) + NODE_W / 2, d * (NODE_H + LAYER_GAP) + NODE_H / 2)
        else:
            pos[i] = (d * (NODE_W + LAYER_GAP) + NODE_W / 2, (r + offset) * (NODE_H + ROW_GAP) + NODE_H / 2)
    pos += (MARGIN, MARGIN + CAPTION_H)
    return pos


class GraphPainter:
    """Paint one recording's graph at a step, as the app shows it.

    Parameters
    ----------
    recording : Recording
    stepper : Stepper, optional
        Where the step comes from (default: a stepper at the last step).
    layout : {"lr", "tb"}
    theme : {"light", "dark"}
    """

    def __init__(self, recording: Recording, stepper: Stepper | None = None, layout: str = "lr",
                 theme: str = "light"):
        self.rec = recording
        self.layout = layout
        self.theme = theme
        self.colors = THEMES[theme]
        self.stepper = stepper if stepper is not None else Stepper(Timeline(recording), len(Timeline(recording)) - 1)
        self.pos = layered_layout(recording, layout)
        if len(self.pos):
            w = self.pos[:, 0].max() + NODE_W / 2 + MARGIN
            h = self.pos[:, 1].max() + NODE_H / 2 + MARGIN
        else:
            w, h = 2 * MARGIN + NODE_W, 2 * MARGIN + CAPTION_H
        self.font = QFont(FONT_FAMILY, 9)
        self.font.setPixelSize(12)
        self.small = QFont(FONT_FAMILY, 7)
        self.small.setPixelSize(10)
        self.caption_font = QFont(FONT_FAMILY, 10)
        self.caption_font.setPixelSize(14)
        self.caption_font.setBold(True)
        # wide enough for the caption (up to a limit; longer captions are elided)
        need = QFontMetricsF(self.caption_font).horizontalAdvance(self.caption(self.stepper.state)) + 2 * MARGIN + 8
        self._rect = QRectF(0, 0, float(max(w, min(need, 1200.0))), float(h))
        self._labels: list[list[str]] | None = None

    def graph_rect(self) -> QRectF:
        """The whole drawing in scene units (pixels at 100 %)."""
        return QRectF(self._rect)

    def visible_rect(self) -> QRectF:
        """The whole drawing: an offscreen painter has no viewport."""
        return self.graph_rect()

    def caption(self, state: StepState) -> str:
        tl = self.stepper.timeline
        return f"{self.rec.target}  ·  step {state.step.index}/{len(tl) - 1}  ·  {state.step.describe(self.rec)}"

    def _elided_labels(self) -> list[list[str]]:
        if self._labels is None:
            fm, fms = QFontMetricsF(self.font), QFontMetricsF(self.small)
            width = NODE_W - 10
            self._labels = []
            for n in self.rec.nodes:
                lines = n.label.split("\n")
                first = fm.elidedText(lines[0], Qt.TextElideMode.ElideRight, width)
                rest = [fms.elidedText(x, Qt.TextElideMode.ElideRight, width) for x in lines[1:2]]
                self._labels.append([first] + rest)
        return self._labels

    def render_to(self, painter: QPainter, target: QRectF, source: QRectF | None = None,
                  state: StepState | None = None) -> None:
        """Paint the part `source` of the drawing (default: all of it) into `target`, aspect kept.

        Parameters
        ----------
        painter : QPainter
            An active painter on any device (QImage, QSvgGenerator, QPdfWriter, a widget).
        target : QRectF
            Where to paint, in the painter's coordinates.
        source : QRectF, optional
            Which part of `graph_rect` to show.
        state : StepState, optional
            The step to show (default: the stepper's current step).
        """
        source = QRectF(self._rect) if source is None else QRectF(source)
        state = self.stepper.state if state is None else state
        c = self.colors
        k = min(target.width() / max(source.width(), 1e-9), target.height() / max(source.height(), 1e-9))
        painter.save()
        painter.setClipRect(target)
        painter.fillRect(target, QColor(c["background"]))
        painter.translate(target.x() + (target.width() - source.width() * k) / 2,
                          target.y() + (target.height() - source.height() * k) / 2)
        painter.scale(k, k)
        painter.translate(-source.x(), -source.y())
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)

        pos = self.pos
        view = source.adjusted(-NODE_W, -NODE_H, NODE_W, NODE_H)
        x0, y0, x1, y1 = view.left(), view.top(), view.right(), view.bottom()
        inside = (pos[:, 0] >= x0) & (pos[:, 0] <= x1) & (pos[:, 1] >= y0) & (pos[:, 1] <= y1) if len(pos) else []
        flowing = {(s, d, slot) for s, d, slot, _ in state.flowing}
        lr = self.layout != "tb"

        def anchors(s: int, d: int) -> tuple[QPointF, QPointF]:
            (sx, sy), (dx, dy) = pos[s], pos[d]
            if lr:
                return QPointF(sx + NODE_W / 2, sy), QPointF(dx - NODE_W / 2, dy)
            return QPointF(sx, sy + NODE_H / 2), QPointF(dx, dy - NODE_H / 2)

        def edge_path(a: QPointF, b: QPointF) -> QPainterPath:
            path = QPainterPath(a)
            if lr:
                mid = (a.x() + b.x()) / 2
                path.cubicTo(QPointF(mid, a.y()), QPointF(mid, b.y()), b)
            else:
                mid = (a.y() + b.y()) / 2
                path.cubicTo(QPointF(a.x(), mid), QPointF(b.x(), mid), b)
            return path

        def arrow(b: QPointF, color: QColor) -> None:
            size = 6.0
            if lr:
                poly = QPolygonF([b, QPointF(b.x() - size, b.y() - size / 2), QPointF(b.x() - size, b.y() + size / 2)])
            else:
                poly = QPolygonF([b, QPointF(b.x() - size / 2, b.y() - size), QPointF(b.x() + size / 2, b.y() - size)])
            painter.setBrush(QBrush(color))
            painter.drawPolygon(poly)
            painter.setBrush(Qt.BrushStyle.NoBrush)

        fanout = np.zeros(len(pos), dtype=np.int64)
        for s, _, _ in self.rec.edges:
            fanout[s] += 1
        edge_pen = QPen(QColor(c["edge"]), 1.2)
        input_pen = QPen(QColor(c["input_edge"]), 1.0, Qt.PenStyle.DashLine)
        hot_pen = QPen(QColor(c["flow"]), 3.0)
        painter.setFont(self.small)
        hot_edges = []
        for kind, edges in (("grad", self.rec.edges), ("input", self.rec.input_edges)):
            for s, d, slot in edges:
                if not (inside[s] or inside[d]) and not QRectF(QPointF(*pos[s]), QPointF(*pos[d])).normalized().intersects(view):
                    continue
                if kind == "grad" and (s, d, slot) in flowing:
                    hot_edges.append((s, d, slot))
                    continue
                a, b = anchors(s, d)
                pen = edge_pen if kind == "grad" else input_pen
                painter.setPen(pen)
                painter.drawPath(edge_path(a, b))
                if kind == "grad":
                    arrow(b, pen.color())
                    if fanout[s] > 1:
                        painter.setPen(QColor(c["text"]))
                        painter.drawText(self._slot_point(a, b), str(slot))
        for s, d, slot in hot_edges:
            a, b = anchors(s, d)
            painter.setPen(hot_pen)
            painter.drawPath(edge_path(a, b))
            arrow(b, hot_pen.color())
            painter.setPen(QColor(c["flow"]))
            painter.drawText(self._slot_point(a, b), str(slot))

        styles = node_style(self.rec, state, c)
        labels = self._elided_labels()
        text_pen = QPen(QColor(c["text"]))
        outline = QPen(QColor(c["outline"]), 1.0)
        current_pen = QPen(QColor(c["current"]), 3.5)
        for i in np.flatnonzero(inside):
            st = styles[i]
            x, y = pos[i]
            box = QRectF(x - NODE_W / 2, y - NODE_H / 2, NODE_W, NODE_H)
            painter.setPen(current_pen if st["current"] else outline)
            painter.setBrush(QBrush(QColor(st["fill"])))
            kind = st["kind"]
            if kind in ("leaf", "input"):
                painter.drawRoundedRect(box, NODE_H / 2, NODE_H / 2)
            elif kind == "custom":
                painter.drawRect(box)
                painter.drawRect(box.adjusted(3, 3, -3, -3))
            else:
                painter.drawRoundedRect(box, 6, 6)
            painter.setPen(text_pen)
            lines = labels[i]
            if len(lines) == 1:
                painter.setFont(self.font)
                painter.drawText(box, Qt.AlignmentFlag.AlignCenter, lines[0])
            else:
                painter.setFont(self.font)
                painter.drawText(QRectF(box.x(), box.y() + 4, box.width(), NODE_H / 2 - 2),
                                 Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, lines[0])
                painter.setFont(self.small)
                painter.drawText(QRectF(box.x(), box.y() + NODE_H / 2, box.width(), NODE_H / 2 - 4),
                                 Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, lines[1])
        painter.setBrush(Qt.BrushStyle.NoBrush)
        if source.top() <= CAPTION_H + MARGIN:
            painter.setFont(self.caption_font)
            painter.setPen(text_pen)
            box = QRectF(MARGIN, MARGIN / 2, self._rect.width() - 2 * MARGIN, CAPTION_H)
            text = QFontMetricsF(self.caption_font).elidedText(self.caption(state), Qt.TextElideMode.ElideRight,
                                                                box.width())
            painter.drawText(box, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, text)
        painter.restore()

    def _slot_point(self, a: QPointF, b: QPointF) -> QPointF:
        line = QLineF(a, b)
        p = line.pointAt(min(0.25, 24 / max(line.length(), 1e-9)))
        return QPointF(p.x() + 2, p.y() - 3) if self.layout != "tb" else QPointF(p.x() + 4, p.y() + 2)
