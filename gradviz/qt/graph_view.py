"""The graph view: the unrolled autograd graph, laid out, drawn and highlighted step by step.

`QtGraphView` is a QGraphicsView over one `_GraphItem` that paints a `Scene` (gradviz.core.scene):
the Scene holds what a step shows as arrays (boxes, label lines, styles from the one theme table,
edge states, flowing gradients, badges) and `QtScenePainter` paints it.

What a step or a jump costs is what is in view, not the graph: the Scene updates the arrays of the
nodes the step changes with numpy operations (a jump across a 200,000-node graph changes most of
them: masks, no Python loop, no sort), then the view repaints only the changed nodes and edges that
are in view -- a rectangle each while they are few (`FULL_REPAINT`), else the visible part at once;
changes off screen get no rectangle at all (Qt paints them when they scroll in). The Scene's grid
index (`Scene.nodes_in`, `Scene.segments_in`) finds what is in view for that and for painting, which
culls to the exposed rectangle and drops text and shapes at low zoom. The overview and the far
picture place each node's pixels once per layout and only recolour them per step.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter
from PySide6.QtWidgets import QGraphicsObject, QGraphicsScene, QGraphicsView, QStyleOptionGraphicsItem, QToolTip

from gradviz.core.collapse import block_key
from gradviz.core.layout import NODE_H, NODE_W, Layout, layered_layout
from gradviz.core.recording import Recording
from gradviz.core.scene import IDLE, Scene, build_scene
from gradviz.core.scene.text import SMALL, format_shape, format_tensor
from gradviz.core.timeline import Stepper, StepState

from .i18n import tr
from .legible import hidden_px, legible_scale
from .overview import QtOverview
from .far_picture import FarPicture
from .scene_painter import COARSE_LOD, QtScenePainter, paint_scene
from .theme import get_theme

__all__ = ["QtGraphView", "format_tensor", "format_shape", "NODE_W", "NODE_H", "SMALL"]

FULL_REPAINT = 300  # more changed nodes or edges in view than this: repaint the visible part, not each rectangle


class _GraphItem(QGraphicsObject):
    """Paints the view's `Scene`; its arrays change per step without rebuilding anything."""

    def __init__(self, view: "QtGraphView"):
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
    view_changed()
        The visible part of the graph moved or was zoomed (the overview follows it).
    scene_changed()
        What the graph shows changed: another step, theme or layout.
    """

    node_clicked = Signal(int)
    node_activated = Signal(int)
    view_changed = Signal()
    scene_changed = Signal()

    def __init__(self, recording: Recording | None = None, stepper: Stepper | None = None, layout: str = "lr",
                 theme: str = "light", rolled: bool = False, parent=None, precomputed: Layout | None = None):
        super().__init__(parent)
        self.theme_name = theme
        self.direction = layout
        self.rolled = rolled
        self.collapse: int | None = None  # module uses per box when collapsed (gradviz.core.collapse)
        self.expanded: frozenset = frozenset()  # collapsed blocks opened in place
        self.follow = True
        self.recording: Recording | None = None
        self.stepper: Stepper | None = None
        self.layout_: Layout | None = None
        self.scene_: Scene | None = None  # what the graph shows at the current step
        self._press = None
        # the last step's repaint: (changed nodes in view, changed edges in view, whole view at once)
        self.last_repaint: tuple = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), False)
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
        self.overview = QtOverview(self)  # the whole graph in a corner when it does not fit legibly
        self.scene_changed.connect(self._item.far.invalidate)
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
        self.expanded = frozenset()
        self.set_layout(precomputed or layered_layout(recording, self.direction, self.rolled,
                                                      collapse=self.collapse), fit=True)

    def set_layout(self, layout: Layout, fit: bool = True) -> None:
        """Draw the graph with positions from `layout` (from `gradviz.core.layout`)."""
        rec = self.recording
        self.layout_ = layout
        self.direction, self.rolled = layout.direction, layout.rolled
        self.collapse, self.expanded = layout.collapse, layout.expanded
        state = self.stepper.state if self.stepper is not None else None
        self.scene_ = build_scene(rec, layout, state, self.theme_name, tr)
        self._item.set_scene(self.scene_)
        self._scene.setSceneRect(self._item.boundingRect())
        self.scene_changed.emit()
        if fit:
            self.fit()

    def relayout(self, direction: str | None = None, rolled: bool | None = None, fit: bool = True) -> None:
        """Lay the graph out again with another direction or rolled mode (computed here, synchronously),
        collapsed as `collapse` and `expanded` say."""
        if self.recording is None:
            return
        d = self.direction if direction is None else direction
        r = self.rolled if rolled is None else rolled
        sel = self.selected_node()
        self.set_layout(layered_layout(self.recording, d, r, collapse=self.collapse, expanded=self.expanded), fit=fit)
        if sel is not None:
            self.select_node(sel, center=False)

    def expand_block(self, g: int) -> bool:
        """Open collapsed box `g` in place: its module uses drawn node by node, the view kept on them.

        Returns False when `g` is not a collapsed box."""
        lay = self.layout_
        title = lay.titles.get(g) if lay is not None else None
        if title is None or not lay.collapse:
            return False
        first = lay.members[g][0]
        before = self.mapFromScene(QPointF(*self._item.pos_[g]))
        self.expanded = self.expanded | {block_key(title, lay.collapse)}
        self.relayout(fit=False)
        # the first of its nodes where the box was on the screen: the picture opens where you clicked
        after = self.mapFromScene(QPointF(*self._item.pos_[int(self.layout_.group_of[first])]))
        shift = self.mapToScene(after) - self.mapToScene(before)
        self.centerOn(self.mapToScene(self.viewport().rect().center()) + shift)
        return True

    def set_theme(self, name: str) -> None:
        """Switch to theme `name` (``"light"`` or ``"dark"``)."""
        self.theme_name = name
        self._apply_background()
        if self.scene_ is not None:
            self.scene_.set_theme(name)
            self._item.update()
            self.scene_changed.emit()

    def _apply_background(self) -> None:
        self.setBackgroundBrush(QBrush(QColor(get_theme(self.theme_name)["background"])))

    # -- stepping -----------------------------------------------------------------------------
    def _on_step_changed(self, state: StepState, changed: np.ndarray) -> None:
        self._apply_state(state, changed)

    def _apply_state(self, state: StepState, changed: np.ndarray | None) -> None:
        """Move the Scene to `state` (only the `changed` nodes' arrays) and repaint what changed in view."""
        scene = self.scene_
        if scene is None:
            return
        old_current, old_flow = scene.current, scene.flowing
        groups, rows, everything = scene.update(state, changed)
        self._repaint_visible(groups, rows, everything, old_current, old_flow)
        self.scene_changed.emit()
        if self.follow and scene.current >= 0 and changed is not None:
            self._keep_visible(scene.current)

    def _repaint_visible(self, groups: np.ndarray, rows: np.ndarray, everything: bool, old_current: int,
                         old_flow: list) -> None:
        """Repaint the changed nodes (`groups`) and edges (`rows`) that are in view: a rectangle each while
        they are few, else the visible part at once. Those out of view get no rectangle (Qt paints them
        when they scroll in); a jump's many changes are matched against what the Scene's grid finds in
        view, so its cost is the view's, not the graph's. `last_repaint` keeps what was chosen."""
        it, scene = self._item, self.scene_
        vis = self.visible_rect()
        if everything:  # every node's look changed: the part in view, at once
            self.last_repaint = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), True)
            it.update(vis.adjusted(-20, -20, 20, 20))
            return
        x0, y0, x1, y1 = vis.left() - 100, vis.top() - 40, vis.right() + 100, vis.bottom() + 40
        groups = np.concatenate([groups, [g for g in (old_current, scene.current) if g >= 0]]).astype(np.int64)
        if len(groups) + len(rows) <= FULL_REPAINT:  # a few: test each
            p, half = scene.pos[groups], scene.size[groups] / 2
            groups = groups[(p[:, 0] + half[:, 0] >= x0) & (p[:, 0] - half[:, 0] <= x1)
                            & (p[:, 1] + half[:, 1] >= y0) & (p[:, 1] - half[:, 1] <= y1)]
            # an edge is in view when the rectangle between its two nodes is
            a, b = scene.pos[scene.adj[rows, 0]], scene.pos[scene.adj[rows, 1]]
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            rows = rows[(hi[:, 0] >= x0) & (lo[:, 0] <= x1) & (hi[:, 1] >= y0) & (lo[:, 1] <= y1)]
        else:  # many (a jump): what is in view (the Scene's grid), kept where it changed
            changed = np.zeros(len(scene), dtype=bool)
            changed[groups] = True
            shown = scene.nodes_in(x0, y0, x1, y1)
            groups = shown[changed[shown]]
            changed = np.zeros(len(scene.adj), dtype=bool)
            changed[rows] = True
            shown = np.unique(scene.seg_edge[scene.segments_in(x0, y0, x1, y1)])
            rows = shown[changed[shown]]
        full = len(groups) + len(rows) > FULL_REPAINT
        self.last_repaint = (groups, rows, full)
        if full:
            it.update(vis.adjusted(-20, -20, 20, 20))  # the part in view: cheaper than a rectangle per item
            return
        for g in np.unique(groups).tolist():
            it.update(it.node_rect(g, 14))
        for s, d in scene.adj[rows].tolist():
            it.update(it.edge_rect(s, d))
        for f in old_flow:
            it.update(QRectF(*f.label_box).adjusted(-4, -4, 4, 4))

    def _keep_visible(self, g: int) -> None:
        """Scroll so node `g` is in view, with the values it sends this step when they fit too."""
        r = self._item.node_rect(g, 20)
        vis = self.visible_rect()
        for f in self.scene_.flowing if self.scene_ is not None else ():
            grown = r.united(QRectF(*f.label_box).adjusted(-10, -10, 10, 10))
            if grown.width() <= vis.width() and grown.height() <= vis.height():
                r = grown
        if not vis.contains(r):
            self.centerOn(r.center())

    # -- labels -------------------------------------------------------------------------------
    def label_of(self, node_id: int) -> list[str]:
        """The text lines drawn for recording node `node_id` at the current step."""
        return self.scene_.lines(int(self.layout_.group_of[node_id]))

    # -- selection and search -----------------------------------------------------------------
    def select_node(self, node_id: int | None, center: bool = True) -> None:
        """Mark recording node `node_id` as selected (None clears) and, with `center`, scroll to it."""
        it = self._item
        old = it.selected
        it.selected = -1 if node_id is None else int(self.layout_.group_of[node_id])
        it.far.invalidate()
        # the selection and its other copies (a shared parameter's true node and proxies) are outlined
        for g in self.scene_.linked(old) + self.scene_.linked(it.selected):
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
        if self.scene_ is None:
            painter.fillRect(target, QColor(get_theme(self.theme_name)["background"]))
            return
        paint_scene(painter, self.scene_, target, source if source is not None else self.graph_rect(), full_detail,
                    self._item.painter_)


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
