"""The graph view: the unrolled autograd graph, laid out, drawn and highlighted step by step.

`QtGraphView` is a QGraphicsView over one `QtGraphItem` (``graph_item.py``) that paints a `Scene`
(gradviz.core.scene): the Scene holds what a step shows as arrays (boxes, label lines, styles from the one
theme table, edge states, flowing gradients, badges) and `QtScenePainter` paints it. The view owns the
model (recording, stepper, layout, theme), follows the stepper, selects and finds nodes; moving about
(fit, zoom, mouse, keys, tooltips) is its `QtGraphNavigation` mixin (``graph_navigation.py``).

What a step or a jump costs is what is in view, not the graph: the Scene updates the arrays of the
nodes the step changes with numpy operations, then `repaint_changed` (``step_repaint.py``) repaints only
the changed nodes and edges that are in view. The Scene's grid index (`Scene.nodes_in`,
`Scene.segments_in`) finds what is in view for that and for painting, which culls to the exposed
rectangle and drops text and shapes at low zoom. The overview and the far picture place each node's
pixels once per layout and only recolour them per step.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView

from gradviz.core.collapse import block_key
from gradviz.core.layout import NODE_H, NODE_W, Layout, layered_layout
from gradviz.core.recording import Recording
from gradviz.core.scene import Scene, build_scene
from gradviz.core.scene.text import SMALL, format_shape, format_tensor
from gradviz.core.timeline import Stepper, StepState

from .graph_item import QtGraphItem
from .graph_navigation import QtGraphNavigation
from .i18n import tr
from .overview import QtOverview
from .scene_painter import paint_scene
from .step_repaint import repaint_changed
from .theme import get_theme

__all__ = ["QtGraphView", "format_tensor", "format_shape", "NODE_W", "NODE_H", "SMALL"]


class QtGraphView(QtGraphNavigation, QGraphicsView):
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
        self._item = QtGraphItem(self)
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
        self.last_repaint = repaint_changed(self._item, scene, self.visible_rect(), groups, rows, everything,
                                            old_current, old_flow)
        self.scene_changed.emit()
        if self.follow and scene.current >= 0 and changed is not None:
            self._keep_visible(scene.current)

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
