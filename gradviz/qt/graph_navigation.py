"""Moving about the graph view: fit, zoom, pan, click, double-click, keys and tooltips.

`QtGraphNavigation` is a mixin of `QtGraphView` (before `QGraphicsView` in its bases, so its Qt event
handlers are the view's). It fits the graph at a legible zoom (the whole graph when every label is legible
so, else around the current step's node with the overview to reach the rest), keeps fitting on resize
until the user zooms or pans, zooms with the wheel between half the whole graph and 8x, turns a click
into ``node_clicked`` and a double-click into ``node_activated`` (or opens a collapsed block), leaves the
stepping keys to the window, and shows a node's whole label as its tooltip.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtWidgets import QToolTip

from .legible import legible_scale

__all__ = ["QtGraphNavigation"]


class QtGraphNavigation:
    """Fit, zoom, mouse, keys and tooltips of `QtGraphView`."""

    def fit(self) -> None:
        """Fit the graph at a legible zoom (Ctrl+0, F): the whole graph when every label is legible so,
        else the part around the current step's node (the loss before the first step) at the smallest
        legible zoom, with the overview to reach the rest."""
        r = self.graph_rect()
        vp = self.viewport().rect()
        self._auto_fit = True  # until the user zooms or pans, a resize fits again
        if r.isEmpty() or vp.width() < 10 or self.scene_ is None:
            return
        self.resetTransform()
        whole = min(vp.width() / r.width(), vp.height() / r.height()) * 0.97
        legible = legible_scale(self.scene_)
        if whole >= legible:
            s = min(whole, max(legible, 1.3))
            self.scale(s, s)
            self.centerOn(r.center())
        else:
            self.scale(legible, legible)
            self.centerOn(self.focus_point())
        self.view_changed.emit()

    def focus_point(self) -> QPointF:
        """Where a legible view of a large graph centres: the current step's node, else the loss."""
        it = self._item
        g = it.current
        if g < 0 and self.layout_ is not None and self.recording is not None:
            g = int(self.layout_.group_of[self.recording.root])
        return QPointF(*it.pos_[g]) if g >= 0 else self.graph_rect().center()

    def fits_legibly(self) -> bool:
        """Whether the whole graph is in view (no overview needed)."""
        return self.visible_rect().adjusted(-1, -1, 1, 1).contains(self.graph_rect().adjusted(60, 60, -60, -60))

    def fit_all(self) -> None:
        """Show the whole graph, however small that makes it (nodes become shapes)."""
        self._auto_fit = False
        self.fitInView(self.graph_rect(), Qt.AspectRatioMode.KeepAspectRatio)
        self.view_changed.emit()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if getattr(self, "_auto_fit", False) and self.layout_ is not None:
            self.fit()
        self.view_changed.emit()

    def scrollContentsBy(self, dx: int, dy: int) -> None:  # noqa: N802 - Qt API
        super().scrollContentsBy(dx, dy)
        self.view_changed.emit()

    def zoom(self, factor: float) -> None:
        """Zoom by `factor` (around the mouse when it is over the graph, else the view's centre)."""
        self._auto_fit = False
        s = self.transform().m11() * factor
        r, vp = self.graph_rect(), self.viewport().rect()
        whole = min(vp.width() / max(r.width(), 1.0), vp.height() / max(r.height(), 1.0))
        # no further out than half the whole graph, no further in than 8x
        if (factor < 1 and s < min(0.5 * whole, 1.0)) or (factor > 1 and s > 8):
            return
        self.scale(factor, factor)
        self.view_changed.emit()

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
        p = self.mapToScene(event.position().toPoint())
        if self.expand_block(self._item.node_at(p.x(), p.y())):  # a collapsed block of module uses opens
            return
        nid = self.node_at_view(event.position().toPoint())
        if nid is not None:
            self.select_node(nid, center=False)
            self.node_activated.emit(nid)
        else:
            super().mouseDoubleClickEvent(event)

    def tooltip_at(self, point) -> str:
        """The whole label of the node under viewport `point` (its lines uncut), or ""."""
        if self.layout_ is None or self.scene_ is None:
            return ""
        p = self.mapToScene(point)
        g = self._item.node_at(p.x(), p.y())
        # the Scene's lines before they are cut to the box: what an elided or shrunk name really says
        return "" if g < 0 else "\n".join(self.scene_._raw_lines(g))

    def viewportEvent(self, event) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.ToolTip:
            text = self.tooltip_at(event.pos())
            if text:
                QToolTip.showText(event.globalPos(), text, self.viewport())
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().viewportEvent(event)

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
