"""Paint a `Scene` (gradviz.core.scene) with a QPainter: the app's graph item and every image export.

Nothing here decides a colour, a label or a state: the Scene did. This module turns it into Qt
pens, brushes and paths, culled to a rectangle and simplified at low zoom (level of detail). It
builds no widget, so exports paint onto a QImage, QSvgGenerator or QPdfWriter in any thread.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph.functions as pgfn
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen, QPolygonF

from gradviz.core.scene import Scene
from gradviz.core.scene.build import LINE_STEP, MAX_LINES, TEXT_TOP
from gradviz.core.scene.text import FONT_FAMILY, FONT_PX, SMALL_FONT_PX

__all__ = ["QtScenePainter", "paint_scene", "COARSE_LOD", "TEXT_LOD", "FLOW_TEXT_LOD", "COARSE_NODES"]

COARSE_LOD = 0.22  # below this zoom nodes are flat boxes coloured by state, edges one thin line each
HIDDEN_PX = 6.0  # text smaller than this on screen is left out (the app raises it with the system font)
TEXT_LOD = HIDDEN_PX / FONT_PX  # below this zoom boxes carry no text
FLOW_TEXT_LOD = TEXT_LOD  # below this zoom the gradient values on flowing edges are left out
COARSE_NODES = 4000  # more nodes than this in view: flat boxes (unless every detail is asked for)


def clip_segments(a: np.ndarray, b: np.ndarray, x0: float, y0: float, x1: float, y1: float):
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


def _pen(color: str, width: float, dashed: bool = False, cosmetic: bool = False) -> QPen:
    pen = QPen(QColor(color), width, Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
    pen.setCosmetic(cosmetic)
    return pen


class QtScenePainter:
    """Qt pens, brushes and fonts for a Scene's theme, and the painting of a Scene with them."""

    def __init__(self) -> None:
        self._theme: str | None = None
        self._styles: tuple = ()
        self._colors: dict = {}  # colour name -> QColor, QBrush (badges)
        self._brushes: dict = {}
        self._names: dict = {}  # pixel size -> bold font, for names shrunk to fit
        self._smalls: dict = {}  # pixel size -> badge font
        self.hidden_px = HIDDEN_PX  # text smaller than this on screen is not drawn
        self._lod = 1.0  # the zoom of the picture being painted
        f = QFont(FONT_FAMILY)
        f.setPixelSize(int(FONT_PX))
        bold = QFont(f)
        bold.setBold(True)
        small = QFont(f)
        small.setPixelSize(int(SMALL_FONT_PX))
        self.font, self.bold, self.small = f, bold, small

    def _prepare(self, scene: Scene) -> None:
        """Build the Qt objects of the scene's styles (again only when its theme changed)."""
        if self._theme == scene.theme_name and self._styles is scene.styles:
            return
        self._theme, self._styles = scene.theme_name, scene.styles
        self.node_pens = [_pen(st.border, st.border_width, st.dashed) for st in scene.styles]
        self.node_brushes = [QBrush(QColor(st.fill)) for st in scene.styles]
        self.coarse_brushes = [QBrush(QColor(st.coarse)) for st in scene.styles]
        self.text_colors = [QColor(st.text) for st in scene.styles]
        es = scene.edge_styles
        self.edge_pens = {k: _pen(s.color, s.width, s.dashed, cosmetic=k != "flowing") for k, s in es.items()}
        self.edge_pens["flowing"].setCapStyle(Qt.PenCapStyle.RoundCap)
        # far out: one-pixel solid lines in the same colours (the fast way to draw thousands of edges)
        self.coarse_edge_pens = {k: _pen(s.color, 0, False, cosmetic=True) for k, s in es.items()}
        self.flow_color = QColor(es["flowing"].color)
        self.flow_text = QColor(scene.flow_text)
        self.background = QColor(scene.background)

    # -- the whole picture ------------------------------------------------------------------------
    def paint(self, painter: QPainter, scene: Scene, rect: tuple | None = None, lod: float = 1.0,
              full_detail: bool = False) -> None:
        """Paint `scene` (scene coordinates) where it meets `rect` (x0, y0, x1, y1; everything when None).

        `lod` is the zoom (device pixels per scene unit); `full_detail` draws every label whatever the
        zoom and however many nodes (vector exports keep all their text).
        """
        if not len(scene):
            return
        self._prepare(scene)
        if full_detail:
            lod = max(lod, 1.0)
        self._lod = lod
        if rect is None:
            x, y, w, h = scene.bounds
            rect = (x, y, x + w, y + h)
        x0, y0, x1, y1 = rect
        self._paint_edges(painter, scene, x0, y0, x1, y1)
        p, half = scene.pos, scene.size / 2
        nodes = scene.nodes_in(x0, y0, x1, y1)  # a grid lookup: the cost of what is in view
        for badge in scene.fold_marks():  # where a folded drawing's rows continue (those in the rectangle)
            if badge.x <= x1 and badge.x + badge.w >= x0 and badge.y <= y1 and badge.y + badge.h >= y0:
                self._paint_badge(painter, badge)
        self._paint_flow(painter, scene, lod, heads=False)
        if lod < COARSE_LOD or (len(nodes) > COARSE_NODES and not full_detail):
            self._paint_coarse(painter, scene, nodes)
        else:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            text = FONT_PX * lod >= self.hidden_px
            boxes = np.concatenate([p[nodes] - half[nodes], scene.size[nodes]], axis=1).tolist()
            later = {scene.current, scene.selected}  # their badges go over their outlines, below
            for i, box in zip(nodes.tolist(), boxes):
                self.paint_node(painter, scene, i, text, box, badges=i not in later)
        self._paint_flow(painter, scene, lod, heads=True)
        # the selection, and the other copies of it: a shared parameter's true node and its proxies
        for outline in (scene.current_outline(), scene.selected_outline(), *scene.linked_outlines()):
            if outline is not None:
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.setPen(_pen(outline.color, outline.width, outline.dashed))
                painter.drawRoundedRect(QRectF(outline.x, outline.y, outline.w, outline.h), outline.radius,
                                        outline.radius)
        # the badges of the outlined nodes go over their outline (it hid part of "2 saved")
        if not (lod < COARSE_LOD or (len(nodes) > COARSE_NODES and not full_detail)) \
                and FONT_PX * lod >= self.hidden_px and SMALL_FONT_PX * lod >= self.hidden_px:
            shown = set(nodes.tolist())
            for g in {scene.current, scene.selected} & shown:
                for badge in scene.badges(g):
                    self._paint_badge(painter, badge)

    def _paint_edges(self, painter: QPainter, scene: Scene, x0: float, y0: float, x1: float, y1: float) -> None:
        """Edge segments whose box meets the rectangle, one path per style, clipped to it."""
        a, b = scene.seg_a, scene.seg_b
        if not len(a):
            return
        idx = scene.segments_in(x0 - 150, y0 - 66, x1 + 150, y1 + 66)
        if not len(idx):
            return
        rows = scene.seg_edge[idx]
        inp = scene.is_input[rows]
        passed = scene.edge_state[rows] != 0  # a flowing edge is also drawn as passed, under its arrow
        clip = (x0 - 20, y0 - 20, x1 + 20, y1 + 20)
        # far out, edges are hairlines: drawn without antialiasing (a third of the frame otherwise)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, self._lod >= COARSE_LOD)
        far = self._lod < COARSE_LOD
        for sel, key in ((~passed & ~inp, "idle"), (inp, "input"), (passed & ~inp, "done")):
            pen = self.coarse_edge_pens[key] if far else self.edge_pens[key]
            self._draw_segments(painter, a[idx[sel]], b[idx[sel]], pen, clip)

    @staticmethod
    def _draw_segments(painter: QPainter, a: np.ndarray, b: np.ndarray, pen: QPen, clip: tuple) -> None:
        if not len(a):
            return
        a, b = clip_segments(a, b, *clip)
        if not len(a):
            return
        x = np.empty(2 * len(a))
        y = np.empty(2 * len(a))
        x[0::2], x[1::2] = a[:, 0], b[:, 0]
        y[0::2], y[1::2] = a[:, 1], b[:, 1]
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(pgfn.arrayToQPath(x, y, connect="pairs", finiteCheck=False))

    def _paint_coarse(self, painter: QPainter, scene: Scene, nodes: np.ndarray) -> None:
        """Low zoom: every node a flat rectangle in its style's coarse colour, no text (one path per style,
        built from arrays: 100,000 boxes cost one call, not a Python loop)."""
        painter.setPen(Qt.PenStyle.NoPen)
        # axis-aligned boxes a few pixels wide: antialiasing adds nothing and costs most of the frame
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        styles = scene.style[nodes]
        for s in np.unique(styles).tolist():
            sel = nodes[styles == s]
            painter.setBrush(self.coarse_brushes[s])
            lo = scene.pos[sel] - scene.size[sel] / 2
            hi = lo + scene.size[sel]
            # four corners per box, each box a closed sub-path (fill closes it)
            x = np.stack([lo[:, 0], hi[:, 0], hi[:, 0], lo[:, 0]], axis=1).ravel()
            y = np.stack([lo[:, 1], lo[:, 1], hi[:, 1], hi[:, 1]], axis=1).ravel()
            connect = np.tile(np.array([1, 1, 1, 0], dtype=np.int32), len(sel))
            painter.drawPath(pgfn.arrayToQPath(x, y, connect=connect, finiteCheck=False))

    def paint_node(self, painter: QPainter, scene: Scene, i: int, text: bool = True, box: list | None = None,
                   badges: bool = True) -> None:
        """One node: its box in its style, then (with `text`) its label lines and (with `badges`) badges."""
        s = int(scene.style[i])
        st = scene.styles[s]
        rect = QRectF(*(box if box is not None else scene.box(i)))
        painter.setPen(self.node_pens[s])
        painter.setBrush(self.node_brushes[s])
        if st.shape == "pill":
            painter.drawRoundedRect(rect, rect.height() / 2, rect.height() / 2)
        elif st.shape == "double":
            painter.drawRect(rect)
            painter.drawRect(rect.adjusted(4, 4, -4, -4))
        else:
            painter.drawRoundedRect(rect, 8, 8)
        if not text:
            return
        painter.setPen(self.text_colors[s])
        y = rect.top() + TEXT_TOP
        lines = scene.lines(i)
        lod = getattr(self, "_lod", 1.0)
        for j, line in enumerate(lines[:MAX_LINES]):
            px = scene.name_px(i) if j == 0 else FONT_PX
            if px * lod >= self.hidden_px:  # a name shrunk past reading is left out, the rest stays
                painter.setFont(self._bold(px) if j == 0 else self.font)
                painter.drawText(QRectF(rect.left() + 5, y, rect.width() - 10, 15), Qt.AlignmentFlag.AlignHCenter,
                                 line)
            y += LINE_STEP
        if SMALL_FONT_PX * lod < self.hidden_px or not badges:
            return
        for badge in scene.badges(i):
            self._paint_badge(painter, badge)

    def _paint_badge(self, painter: QPainter, badge) -> None:
        """A small rounded tab with a word on it."""
        tab = QRectF(badge.x, badge.y, badge.w, badge.h)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self._brush(badge.fill))
        painter.drawRoundedRect(tab, badge.radius, badge.radius)
        painter.setPen(self._color(badge.text_color))
        painter.setFont(self._small(badge.px))
        painter.drawText(tab, Qt.AlignmentFlag.AlignCenter, badge.text)

    def _small(self, px: float) -> QFont:
        """The badge font at pixel size `px` (`SMALL_FONT_PX` for every badge the Scene makes)."""
        if px == SMALL_FONT_PX:
            return self.small
        f = self._smalls.get(px)
        if f is None:
            f = self._smalls[px] = QFont(self.small)
            f.setPixelSize(int(px))
        return f

    def _bold(self, px: float) -> QFont:
        """The bold font at pixel size `px` (a name shrunk to fit its box)."""
        if px == FONT_PX:
            return self.bold
        f = self._names.get(px)
        if f is None:
            f = self._names[px] = QFont(self.bold)
            f.setPixelSize(int(px))
        return f

    def _color(self, name: str) -> QColor:
        c = self._colors.get(name)
        if c is None:
            c = self._colors[name] = QColor(name)
        return c

    def _brush(self, name: str) -> QBrush:
        b = self._brushes.get(name)
        if b is None:
            b = self._brushes[name] = QBrush(QColor(name))
        return b

    def _paint_flow(self, painter: QPainter, scene: Scene, lod: float, heads: bool) -> None:
        """The gradients sent at this step: thick routes (under the nodes), heads and values (over)."""
        if not scene.flowing:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for f in scene.flowing:
            if not heads:
                painter.setPen(self.edge_pens["flowing"])
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawPolyline(QPolygonF([QPointF(x, y) for x, y in f.route.tolist()]))
                continue
            painter.setBrush(QBrush(self.flow_color))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawPolygon(QPolygonF([QPointF(x, y) for x, y in f.head.tolist()]))
            if f.text and FONT_PX * lod >= self.hidden_px:
                box = QRectF(*f.label_box)
                painter.setBrush(QBrush(self.background))
                painter.setPen(QPen(self.flow_color, 1.5))
                painter.drawRoundedRect(box, 6, 6)
                painter.setPen(self.flow_text)
                painter.setFont(self.bold)
                painter.drawText(box, Qt.AlignmentFlag.AlignCenter, f.text)


def paint_scene(painter: QPainter, scene: Scene, target: QRectF, source: QRectF | None = None,
                full_detail: bool = True, scene_painter: QtScenePainter | None = None) -> None:
    """Paint the `source` rectangle of `scene` (its bounds by default) into `target` of any paint device.

    The picture keeps its aspect ratio, centred in `target` on the scene's background, and is clipped
    to `source`. No widget is involved: safe in a worker thread on a QImage, QSvgGenerator or QPdfWriter.
    """
    src = QRectF(source) if source is not None else QRectF(*scene.bounds)
    if src.isEmpty() or target.isEmpty():
        return
    s = min(target.width() / src.width(), target.height() / src.height())
    painter.save()
    try:
        painter.fillRect(target, QColor(scene.background))
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        painter.translate(target.left() + (target.width() - src.width() * s) / 2,
                          target.top() + (target.height() - src.height() * s) / 2)
        painter.scale(s, s)
        painter.translate(-src.left(), -src.top())
        painter.setClipRect(src)
        (scene_painter or QtScenePainter()).paint(painter, scene, (src.left(), src.top(), src.right(), src.bottom()),
                                                  s, full_detail)
    finally:
        painter.restore()
