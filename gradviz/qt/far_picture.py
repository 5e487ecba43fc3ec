"""The graph seen from far: one picture of the whole Scene, reused while the view pans and zooms.

Below `COARSE_LOD` every node is a flat box and every edge a hairline, and a view can hold the whole
graph (100,000 nodes and more). Painting that afresh for every frame of a pan or a zoom costs far
more than a frame, so `FarPicture` paints the whole Scene once into an image at the view's zoom and
the view draws that image, scaled, until something changes:

* panning draws the same image (a copy of pixels);
* zooming draws it scaled at once, and paints it again at the new zoom after a short pause (a fresh
  picture right away when the zoom moved by more than 2x, where the scaled one would be too coarse);
* a step, a theme or a selection marks it stale: it is painted again once the changes pause for
  `REFRESH_MS` (a playing timeline updates the far view when it stops).
"""
from __future__ import annotations

from PySide6.QtCore import QRectF, QTimer
from PySide6.QtGui import QImage, QPainter

from gradviz.core.scene import Scene

from .overview import RasterPixels, raster_picture
from .scene_painter import QtScenePainter, paint_scene

__all__ = ["FarPicture", "MAX_SIDE", "REFRESH_MS", "RASTER_PX"]

MAX_SIDE = 2048  # the picture's longest side in pixels (a larger graph is drawn at a lower zoom, then scaled)
RASTER_PX = 4  # boxes narrower than this in the picture are rasterised with numpy (edges left out)
REFRESH_MS = 250  # a stale picture is painted again after this pause in stepping or zooming


class FarPicture:
    """A cached image of a whole `Scene` at one zoom; `update` is called to repaint the view.

    Parameters
    ----------
    scene_painter : QtScenePainter
        The painter of the view (same pens, brushes and text rule).
    update : callable
        Repaints the view (the graph item's ``update``) when a fresh picture is ready.
    """

    def __init__(self, scene_painter: QtScenePainter, update):
        self._painter = scene_painter
        self._pixels = RasterPixels()  # where each node lands in a rasterised picture (kept per layout and size)
        self._update = update
        self.image: QImage | None = None
        self.lod = 0.0  # the zoom the image was painted at
        self.stale = False
        self._wanted = 0.0
        self._scene: Scene | None = None
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._refresh)
        self.paints = 0  # pictures painted (for tests and benchmarks)
        self.active = False  # the view drew from far at its last paint (else a stale picture is dropped)

    def invalidate(self) -> None:
        """What the Scene shows changed: paint the picture again soon."""
        if self.image is not None:
            self.stale = True
            self._timer.start()  # (re)started: while steps keep coming, the picture waits for a pause

    def forget(self) -> None:
        """Another Scene: drop the picture."""
        self.image, self.stale = None, False
        self._timer.stop()

    def draw(self, painter: QPainter, scene: Scene, lod: float) -> None:
        """Draw the whole graph far out at zoom `lod` (scene coordinates, `painter`'s transform)."""
        self._scene, self._wanted, self.active = scene, lod, True
        if self.image is None or not (0.5 <= lod / self.lod <= 2.0):
            self._paint_picture(scene, lod)
        elif abs(lod / self.lod - 1) > 0.02 and not self._timer.isActive():
            self._timer.start()  # zoomed a little: the scaled picture now, a sharp one after a pause
        x, y, w, h = scene.bounds
        painter.drawImage(QRectF(x, y, w, h), self.image)

    def _paint_picture(self, scene: Scene, lod: float) -> None:
        x, y, w, h = scene.bounds
        k = min(lod, MAX_SIDE / max(w, h))
        iw, ih = max(1, int(w * k)), max(1, int(h * k))
        if len(scene) and float(scene.size[:, 0].max()) * k < RASTER_PX:
            img = raster_picture(scene, iw, ih, self._pixels)  # boxes of a pixel or two: rasterised, no edges
        else:
            img = QImage(iw, ih, QImage.Format.Format_RGB32)
            p = QPainter(img)
            try:
                paint_scene(p, scene, QRectF(0, 0, img.width(), img.height()), None, False, self._painter)
            finally:
                p.end()
        self.image, self.lod, self.stale = img, lod, False
        self.paints += 1

    def _refresh(self) -> None:
        if not self.active:  # zoomed back in: no picture to keep up to date (a new one when needed)
            self.image, self.stale = None, False
            return
        if self._scene is not None and self.image is not None and (self.stale or self._wanted != self.lod):
            self._paint_picture(self._scene, self._wanted)
            self._update()
