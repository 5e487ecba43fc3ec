"""The graph's one `QGraphicsObject`: it paints the view's `Scene` and keeps no drawing state of its own.

`QtGraphItem` hands the Scene's arrays to `QtScenePainter` (culled to the exposed rectangle, text and shapes
dropped at low zoom) and, far out, to the `FarPicture` (the whole graph painted once per change, then
panned and scaled). Its properties give the Scene's arrays under the names the view's tests and callers read.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QGraphicsObject, QGraphicsView, QStyleOptionGraphicsItem

from gradviz.core.scene import IDLE, Scene

from .far_picture import FarPicture
from .legible import hidden_px
from .scene_painter import COARSE_LOD, QtScenePainter

__all__ = ["QtGraphItem"]


class QtGraphItem(QGraphicsObject):
    """Paints the view's `Scene`; its arrays change per step without rebuilding anything."""

    def __init__(self, view: QGraphicsView):
        super().__init__()
        self._view = view
        self.setFlag(QGraphicsObject.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.scene_: Scene | None = None
        self.painter_ = QtScenePainter()
        self.painter_.hidden_px = hidden_px()  # text too small to read is left out (scales with the system font)
        self._rect = QRectF(0, 0, 1, 1)
        self.full_detail = False  # exports to vector files: every label, whatever the zoom
        self.far = FarPicture(self.painter_, self.update)  # the whole graph far out, painted once per change

    def set_scene(self, scene: Scene) -> None:
        """Paint `scene` from now on."""
        self.prepareGeometryChange()
        self.scene_ = scene
        self.far.forget()
        self._rect = QRectF(*scene.bounds)
        self.update()

    # the Scene's arrays, under the names the view's tests and callers read
    @property
    def pos_(self) -> np.ndarray:
        return self.scene_.pos if self.scene_ is not None else np.zeros((0, 2))

    @property
    def status(self) -> np.ndarray:
        return self.scene_.status

    @property
    def pending(self) -> np.ndarray:
        return self.scene_.pending

    @property
    def edge_done(self) -> np.ndarray:
        """Per drawn edge: a gradient passed along it (flowing now or before)."""
        return self.scene_.edge_state != IDLE

    @property
    def current(self) -> int:
        return self.scene_.current if self.scene_ is not None else -1

    @property
    def selected(self) -> int:
        return self.scene_.selected if self.scene_ is not None else -1

    @selected.setter
    def selected(self, g: int) -> None:
        self.scene_.selected = g

    @property
    def flowing(self) -> list:
        """``(sender, receiver, text)`` of each gradient drawn flowing."""
        return [(f.sender, f.receiver, f.text) for f in self.scene_.flowing] if self.scene_ is not None else []

    @property
    def labels(self) -> list:
        """The Scene's label cache: each drawn node's lines once made, None until then."""
        if self.scene_ is None:
            return []
        return [line if ok else None for line, ok in zip(self.scene_._lines, self.scene_._lines_ok.tolist())]

    @labels.setter
    def labels(self, _value) -> None:
        """Assigning (anything) makes every label again: the language changed."""
        if self.scene_ is not None:
            self.scene_.invalidate_labels()

    def drawn_lines(self, g: int) -> list[str]:
        """The label lines of drawn node `g` as painted (the Scene's)."""
        return self.scene_.lines(g)

    # -- geometry -----------------------------------------------------------------------------
    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        return self._rect

    def node_rect(self, i: int, margin: float = 0.0) -> QRectF:
        """The rectangle node `i` covers, grown by `margin`."""
        return QRectF(*self.scene_.box(i, margin))

    def edge_rect(self, s: int, d: int) -> QRectF:
        a, b = self.scene_.pos[s], self.scene_.pos[d]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        # room for the gradient's text and arrow head
        return QRectF(lo[0] - 90, lo[1] - 30, hi[0] - lo[0] + 180, hi[1] - lo[1] + 60)

    def node_at(self, x: float, y: float) -> int:
        """The node under scene point (x, y), or -1."""
        return self.scene_.node_at(x, y) if self.scene_ is not None else -1

    # -- painting -----------------------------------------------------------------------------
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        if self.scene_ is None:
            return
        r = option.exposedRect if option is not None and not option.exposedRect.isEmpty() else self._rect
        lod = QStyleOptionGraphicsItem.levelOfDetailFromTransform(painter.worldTransform())
        if lod < COARSE_LOD and not self.full_detail and widget is not None:
            self.far.draw(painter, self.scene_, lod)  # far out: one cached picture, panned and scaled
            return
        self.far.active = False
        self.painter_.paint(painter, self.scene_, (r.left(), r.top(), r.right(), r.bottom()), lod, self.full_detail)
