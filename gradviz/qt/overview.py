"""The overview (minimap): the whole graph in a corner of the graph view, with the visible part outlined.

When the whole graph cannot be shown with legible labels, the view opens on the part around the
loss or the current step and `QtOverview` shows where that is: every node as a small box in its
state's colour (the same `Scene`, painted at a low level of detail) and a rectangle for the part in
view. Clicking or dragging in it moves the view there. Its picture is painted once per step at most
(a short timer gathers the updates of a playing timeline), the rectangle on every scroll or zoom.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QWidget

from .scene_painter import QtScenePainter, paint_scene
from .theme import get_theme

__all__ = ["QtOverview", "RasterPixels", "raster_picture"]

MAX_W, MAX_H = 360, 150  # the overview's largest size in pixels (and at most 40 % of the view's width)
MIN_H = 40  # a long, flat graph is drawn centred in a box at least this tall
RASTER_NODES = 5000  # more nodes than this: the overview's boxes are rasterised with numpy, edges left out
MARGIN = 10  # from the graph view's corner


class RasterPixels:
    """Which pixels each node covers in a picture of one size: they change with the layout, not the step,
    so a step recolours the cached pixels (one numpy assignment) instead of placing 100,000 boxes again."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self.pixel = self.node = np.zeros(0, dtype=np.int64)
        self.computed = 0  # times the pixels were placed (for tests)

    def of(self, scene, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """(flat pixel index, node index) pairs of `scene` at `width` x `height`, in painting order."""
        key = (width, height, scene.bounds)
        if self._key is None or self._key[0] is not scene or self._key[1] is not scene.pos \
                or self._key[2] is not scene.size or self._key[3] != key:
            self.pixel, self.node = _place_pixels(scene, width, height)
            self._key = (scene, scene.pos, scene.size, key)
            self.computed += 1
        return self.pixel, self.node


def _place_pixels(scene, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Every node's box as pixels (at least one) of a `width` x `height` picture of the whole graph."""
    x, y, w, h = scene.bounds
    s = min(width / w, height / h)
    ox, oy = (width - w * s) / 2, (height - h * s) / 2
    lo = np.floor((scene.pos - scene.size / 2 - (x, y)) * s + (ox, oy)).astype(np.int64)
    span = np.maximum(1, np.round(scene.size * s)).astype(np.int64)
    pixels, nodes = [], []
    for dx in range(int(span[:, 0].max()) if len(span) else 0):
        for dy in range(int(span[:, 1].max())):
            keep = np.flatnonzero((dx < span[:, 0]) & (dy < span[:, 1]))
            px = np.clip(lo[keep, 0] + dx, 0, width - 1)
            py = np.clip(lo[keep, 1] + dy, 0, height - 1)
            pixels.append(py * width + px)
            nodes.append(keep)
    if not pixels:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(pixels), np.concatenate(nodes)


def raster_picture(scene, width: int, height: int, pixels: RasterPixels | None = None) -> QImage:
    """The nodes of `scene` as boxes of a pixel or more in their state's colour, rasterised with numpy
    (no edges): a 100,000-node graph in a few milliseconds, where painting each box takes a second.
    With `pixels` (kept between calls) the boxes are placed once per layout and size, then only
    recoloured."""
    pix, node = (pixels or RasterPixels()).of(scene, width, height)
    img = np.full(height * width, QColor(scene.background).rgb() & 0xFFFFFFFF, dtype=np.uint32)
    colours = np.array([QColor(st.coarse).rgb() & 0xFFFFFFFF for st in scene.styles], dtype=np.uint32)
    img[pix] = colours[scene.style[node]]
    return QImage(img.tobytes(), width, height, 4 * width, QImage.Format.Format_RGB32).copy()


class QtOverview(QWidget):
    """A small picture of the whole graph over the bottom-right corner of `view` (a `QtGraphView`).

    Parameters
    ----------
    view : QtGraphView
        The view it shows and moves; it is the overview's parent.
    """

    def __init__(self, view):
        super().__init__(view)
        self.view = view
        self.enabled_by_user = True  # View > Overview
        self._image: QImage | None = None
        self._painter = QtScenePainter()
        self._pixels = RasterPixels()  # where each node lands in the picture (kept while the layout is)
        self._dirty = True
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(150)
        self._timer.timeout.connect(self._repaint_picture)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        view.view_changed.connect(self.follow_view)
        view.scene_changed.connect(self.scene_changed)
        self.hide()

    # -- what it shows ----------------------------------------------------------------------------
    def scene_changed(self) -> None:
        """The Scene moved to another step, theme or layout: paint the picture again soon."""
        self._dirty = True
        if self.isVisible() and not self._timer.isActive():
            self._timer.start()

    def follow_view(self) -> None:
        """Show or hide (the whole graph in view needs no overview), place, and outline the visible part."""
        want = self.enabled_by_user and self.view.scene_ is not None and not self.view.fits_legibly()
        if want:
            self._place()
            if not self.isVisible():
                self.show()
                self.raise_()
                self._dirty = True
            if self._dirty:
                self._repaint_picture()
            self.update()
        elif self.isVisible():
            self.hide()

    def _place(self) -> None:
        r = self.view.graph_rect()
        if r.isEmpty():
            return
        vp = self.view.viewport().geometry()
        k = min(min(MAX_W, 0.4 * vp.width()) / r.width(), MAX_H / r.height())
        w, h = max(40, int(r.width() * k)), max(MIN_H, int(r.height() * k))
        self.setGeometry(vp.right() - w - MARGIN, vp.bottom() - h - MARGIN, w, h)

    def _repaint_picture(self) -> None:
        scene = self.view.scene_
        if scene is None or self.width() < 2:
            return
        self._dirty = False
        if len(scene) > RASTER_NODES:
            self._image = raster_picture(scene, self.width(), self.height(), self._pixels)
        else:
            img = QImage(self.size(), QImage.Format.Format_RGB32)
            p = QPainter(img)
            try:
                paint_scene(p, scene, QRectF(0, 0, self.width(), self.height()), None, False, self._painter)
            finally:
                p.end()
            self._image = img
        self.update()

    # -- geometry: the overview's pixels <-> the scene ---------------------------------------------
    def _transform(self) -> tuple[float, float, float]:
        """(scale, x offset, y offset): overview point = offset + scale * (scene point - graph corner)."""
        r = self.view.graph_rect()
        s = min(self.width() / r.width(), self.height() / r.height())
        return s, (self.width() - r.width() * s) / 2, (self.height() - r.height() * s) / 2

    def view_box(self) -> QRectF:
        """The visible part of the graph, in the overview's pixels."""
        r, v = self.view.graph_rect(), self.view.visible_rect()
        s, ox, oy = self._transform()
        return QRectF(ox + (v.left() - r.left()) * s, oy + (v.top() - r.top()) * s, v.width() * s, v.height() * s)

    def scene_point(self, x: float, y: float) -> QPointF:
        """The scene point under overview pixel (x, y)."""
        r = self.view.graph_rect()
        s, ox, oy = self._transform()
        return QPointF(r.left() + (x - ox) / s, r.top() + (y - oy) / s)

    # -- Qt events --------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        th = get_theme(self.view.theme_name)
        p = QPainter(self)
        try:
            if self._image is not None and self._image.size() == self.size():
                p.drawImage(0, 0, self._image)
            else:
                p.fillRect(self.rect(), QColor(th["background"]))
            p.setPen(QPen(QColor(th["current"]), 2))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(self.view_box().intersected(QRectF(self.rect()).adjusted(1, 1, -1, -1)))
            p.setPen(QPen(QColor(th["text"]), 1))
            p.drawRect(QRectF(self.rect()).adjusted(0, 0, -1, -1))
        finally:
            p.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._move_to(event.position())

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._move_to(event.position())

    def _move_to(self, pos) -> None:
        self.view._auto_fit = False
        self.view.centerOn(self.scene_point(pos.x(), pos.y()))
