"""`Scene`: one step of a recording as it is drawn, as arrays (no GUI toolkit).

A Scene holds what every picture of one step shows: node boxes and kinds, the label lines as drawn
(cut to the box with `gradviz.core.scene.text`), each node's style from the one theme table, edge
polylines with their flow state (idle, flowing, done) and the gradient values on the flowing ones,
badges ("2 saved", "waits 1") and the current node's outline. The app's graph item and the image
exports paint it; DOT and GraphML read their labels and colours from it.

Like a plotting library's graph item it is fed arrays once (`build_scene`) and then moved step by step:
`Scene.update(state, changed)` touches only the arrays of the nodes that changed and the edges they
send along, so a step of a 100,000-node graph costs what the step changes, not the graph (with numpy
masks and gathers: a jump that changes every node runs no Python loop over them). `nodes_in` and
`segments_in` find what meets a rectangle through a grid index (`gradviz.core.scene.grid`), so a view
paints and repaints in the time of what it shows.

Drawn nodes are groups of recording nodes (`members`, one each unless the layout is rolled) and
every box has its own size (`size`), so folded rows, collapsed module uses or small proxies of a
shared parameter are new layouts and groups, not new painters: every output gets them at once.

This file holds the Scene's arrays, caches and geometry; its other parts are one file each:
`node_text` (label lines), `decorations` (badges, fold marks, outlines), `stepping` (`update`, the
flowing gradients' arrows) and `items` (the styles and records painters read).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..edges import edge_segments
from ..i18n import tr as _tr
from ..layout import NODE_H, NODE_W, Layout
from ..recording import Recording
from ..timeline import StepState
from .decorations import BADGE_H, Decorations
from .grid import BoxGrid
from .items import DONE, EDGE_STATES, FLOWING, IDLE, Badge, EdgeStyle, FlowEdge, NodeStyle, Outline, node_styles
from .node_text import LINE_STEP, MAX_LINES, TEXT_TOP, NodeText
from .stepping import Stepping
from .text import FONT_PX
from .theme import KINDS, THEMES, get_theme

__all__ = ["Scene", "build_scene", "NodeStyle", "EdgeStyle", "Badge", "FlowEdge", "Outline",
           "IDLE", "FLOWING", "DONE", "EDGE_STATES", "MAX_LINES", "LINE_STEP", "TEXT_TOP", "BADGE_H"]

_MARGIN = 60.0  # around the drawing's bounds


def _cell(size: np.ndarray) -> float:
    """A grid cell's side for boxes of these sizes: a few typical boxes across."""
    return 4.0 * float(np.median(size.max(1))) if len(size) else 512.0


class Scene(NodeText, Decorations, Stepping):
    """One step of a recording as drawn. Build it with `build_scene`; move it with `update`.

    Attributes
    ----------
    pos : numpy.ndarray, shape (G, 2)
        Centre of each drawn node (a group of recording nodes when the layout is rolled).
    size : numpy.ndarray, shape (G, 2)
        Width and height of each node's box.
    kind : numpy.ndarray of int8, shape (G,)
        Index into `KINDS`.
    status, pending : numpy.ndarray, shape (G,)
        Per drawn node at this step: 0 not reached, 1 computed, 2 ran backward; gradients still to come.
    style : numpy.ndarray of int16, shape (G,)
        Index into `styles` (``kind * 3 + status``).
    adj : numpy.ndarray, shape (M, 2)
        Drawn edges (sender, receiver), gradient direction, input edges included.
    is_input : numpy.ndarray of bool, shape (M,)
    edge_state : numpy.ndarray of int8, shape (M,)
        `IDLE`, `FLOWING` or `DONE` (input edges stay `IDLE`).
    seg_a, seg_b, seg_edge : numpy.ndarray
        Every drawn edge segment: start (S, 2), end (S, 2), edge row (S,).
    flowing : list of FlowEdge
        The gradients sent at this step.
    current : int
        The drawn node of this step (-1 for none); `selected` likewise, set by a view.
    """

    def __init__(self, recording: Recording, layout: Layout | None, theme: str = "light",
                 tr: Callable[[str], str] | None = None):
        rec = self.recording = recording
        self.layout = layout
        self.tr = tr or _tr
        n = len(rec.nodes)
        self.collapsed = False  # blocks of a module's uses drawn as one box each (gradviz.core.collapse)
        if layout is None:  # no positions: labels, styles and flow states only (DOT, GraphML)
            self.group_of = np.arange(n, dtype=np.int64)
            self.members = [[i] for i in range(n)]
            self.pos = np.zeros((n, 2))
            self.rolled = False
            adj = [(s, d) for s, d, _slot in rec.edges]
            self.edge_of = np.arange(len(rec.edges), dtype=np.int64)
            inputs = np.arange(len(rec.edges), len(rec.edges) + len(rec.input_edges))
            adj += [(op, inp) for op, inp, _pos in rec.input_edges]
            self.adj = np.asarray(adj, dtype=np.int64).reshape(-1, 2)
        else:
            self.group_of = np.asarray(layout.group_of, dtype=np.int64)
            self.members = layout.members
            self.pos = np.asarray(layout.pos, dtype=float).reshape(-1, 2)
            self.collapsed = bool(layout.titles)
            self.rolled = bool(layout.rolled) or self.collapsed  # groups of several nodes: states summed
            self.edge_of = np.asarray(layout.edge_of, dtype=np.int64)
            self.adj = np.asarray(layout.adj, dtype=np.int64).reshape(-1, 2)
            inputs = layout.input_edge_rows
        g = len(self.members)
        if self.rolled:  # each group's members as one array (CSR): a step sums them with numpy
            self._member_count = np.fromiter((len(m) for m in self.members), dtype=np.int64, count=g)
            self._member_start = np.cumsum(self._member_count) - self._member_count
            self._member_ids = np.fromiter((v for m in self.members for v in m), dtype=np.int64,
                                           count=int(self._member_count.sum()))
        if layout is not None and layout.size is not None:
            self.size = np.asarray(layout.size, dtype=float).reshape(-1, 2)
        else:
            self.size = np.tile([NODE_W, NODE_H], (g, 1)).astype(float)
        # proxies of a shared parameter (gradviz.core.proxies): each shows its true node's state
        proxy_of = layout.proxy_of if layout is not None and layout.proxy_of is not None else None
        self.proxy_of = (np.asarray(proxy_of, dtype=np.int64) if proxy_of is not None
                         else np.full(g, -1, dtype=np.int64))
        self._proxies: dict[int, np.ndarray] = {}
        for p in np.flatnonzero(self.proxy_of >= 0).tolist():
            self._proxies.setdefault(int(self.proxy_of[p]), []).append(p)
        self._proxies = {t: np.asarray(ps, dtype=np.int64) for t, ps in self._proxies.items()}
        self._has_proxy = np.zeros(g, dtype=bool)
        self._has_proxy[list(self._proxies)] = True
        self.fold = layout.fold if layout is not None else None
        kind_index = {k: i for i, k in enumerate(KINDS)}
        self.kind = np.array([kind_index.get(rec.nodes[m[0]].kind, 0) for m in self.members], dtype=np.int8)
        self.is_input = np.zeros(len(self.adj), dtype=bool)
        self.is_input[np.asarray(inputs, dtype=np.int64)] = True
        # gradient edges by sender (CSR), to update only the edges a changed node sends along
        src = np.array([e[0] for e in rec.edges], dtype=np.int64)
        self._edge_src = src
        order = np.argsort(src, kind="stable")
        self._out_edges = order
        self._out_start = np.searchsorted(src[order], np.arange(n + 1))
        self._edge_sent = np.zeros(len(src), dtype=bool)  # per recording edge: its sender ran backward
        self._row_sent = np.zeros(len(self.adj), dtype=np.int32)  # per drawn edge: how many of its edges
        self._bwd_event: dict | None = None
        self._flow_rows = np.zeros(0, dtype=np.int64)
        self.status = np.zeros(g, dtype=np.int8)
        self.pending = np.zeros(g, dtype=np.int32)
        self.style = self.kind.astype(np.int16) * 3
        self.edge_state = np.zeros(len(self.adj), dtype=np.int8)
        self.flowing: list[FlowEdge] = []
        self.current = self.selected = -1
        self.phase = "start"
        self.state: StepState | None = None
        self._lines: list = [None] * g
        self._badges: list = [None] * g
        # which cached lines and badges still hold (numpy masks: a jump forgets 100,000 in one operation)
        self._lines_ok = np.zeros(g, dtype=bool)
        self._badges_ok = np.zeros(g, dtype=bool)
        self._fold_marks: list | None = None
        self._name_px = np.full(g, FONT_PX)
        self._update()
        self.set_theme(theme)

    # -- caches ---------------------------------------------------------------------------------
    def _update(self) -> None:
        """Rebuild every geometric cache from the arrays: bounds and edge segments."""
        p, half = self.pos, self.size / 2
        if len(p) and self.layout is not None:
            lo, hi = (p - half).min(0) - _MARGIN, (p + half).max(0) + _MARGIN
            self.bounds = (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))
        else:
            self.bounds = (0.0, 0.0, 1.0, 1.0)
        if self.layout is not None and len(self.adj):
            self.seg_a, self.seg_b, self.seg_edge = edge_segments(self.layout)
        else:
            self.seg_a = self.seg_b = np.zeros((0, 2))
            self.seg_edge = np.zeros(0, dtype=np.int64)
        # each segment's bounding box, for culling to a rectangle
        self.seg_lo, self.seg_hi = np.minimum(self.seg_a, self.seg_b), np.maximum(self.seg_a, self.seg_b)
        self._node_grid: BoxGrid | None = None  # made when first asked (a view's culling, a label's place)
        self._seg_grid: BoxGrid | None = None

    def nodes_in(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """The drawn nodes (sorted) whose box meets rectangle (x0, y0)-(x1, y1): a grid lookup, so a view
        of a few dozen nodes costs a few dozen, whatever the graph's size."""
        if self._node_grid is None:
            half = self.size / 2
            self._node_grid = BoxGrid(self.pos - half, self.pos + half, _cell(self.size))
        return self._node_grid.query(x0, y0, x1, y1)

    def segments_in(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """The edge segments (sorted) whose bounding box meets rectangle (x0, y0)-(x1, y1) (a grid lookup)."""
        if self._seg_grid is None:
            self._seg_grid = BoxGrid(self.seg_lo, self.seg_hi, _cell(self.size))
        return self._seg_grid.query(x0, y0, x1, y1)

    def set_theme(self, name: str) -> None:
        """Take every colour from theme `name` (``"light"`` or ``"dark"``) of the one theme table."""
        if name not in THEMES:
            raise ValueError(f"unknown theme {name!r}: use one of {', '.join(THEMES)}")
        th = self.theme = get_theme(name)
        self.theme_name = name
        self.background = th["background"]
        self.styles = node_styles(th)
        self.edge_styles = {"idle": EdgeStyle(th["edge"], 1.4), "done": EdgeStyle(th["edge_done"], 2.0),
                            "input": EdgeStyle(th["edge_input"], 1.2, True), "flowing": EdgeStyle(th["flow"], 4.0)}
        self.flow_text = th["flow_text"]
        self._fold_marks = None
        self.invalidate_labels()

    def invalidate_labels(self, groups=None) -> None:
        """Forget the label lines and badges of `groups` (an array, a list or a slice; all when None):
        they are made again when next drawn."""
        if groups is None:
            self._lines_ok[:] = False
            self._badges_ok[:] = False
            self._fold_marks = None
        else:
            groups = groups if isinstance(groups, slice) else np.asarray(groups, dtype=np.int64)
            self._lines_ok[groups] = False
            self._badges_ok[groups] = False

    def set_translator(self, tr: Callable[..., str]) -> None:
        """Translate the words drawn ("uses", "saved", "waits", "ready") with `tr` from now on
        (``tr(text, **fields)``, like `gradviz.core.i18n.tr`: templates are filled after translation)."""
        self.tr = tr
        self._fold_marks = None
        self.invalidate_labels()

    # -- what a node shows ------------------------------------------------------------------------
    def node_style(self, g: int) -> NodeStyle:
        """The style drawn node `g` has at this step."""
        return self.styles[int(self.style[g])]

    def edge_style(self, row: int) -> EdgeStyle:
        """The style drawn edge `row` has at this step (a flowing edge is also drawn thick, on top)."""
        if self.is_input[row]:
            return self.edge_styles["input"]
        return self.edge_styles[EDGE_STATES[int(self.edge_state[row])]]

    def box(self, g: int, margin: float = 0.0) -> tuple[float, float, float, float]:
        """Drawn node `g`'s box (x, y, w, h), top-left corner first, grown by `margin`."""
        x, y = self.pos[g]
        w, h = self.size[g]
        return (float(x - w / 2 - margin), float(y - h / 2 - margin), float(w + 2 * margin), float(h + 2 * margin))

    @property
    def boxes(self) -> np.ndarray:
        """Every node's box (G, 4): x, y, w, h with (x, y) the top-left corner."""
        return np.concatenate([self.pos - self.size / 2, self.size], axis=1)

    def node_at(self, x: float, y: float) -> int:
        """The drawn node under point (x, y), or -1."""
        if not len(self.pos):
            return -1
        hit = self.nodes_in(x, y, x, y)
        return int(hit[0]) if len(hit) else -1

    def __len__(self) -> int:
        return len(self.members)


def build_scene(recording: Recording, layout: Layout | None, state: StepState | None, theme: str = "light",
                tr: Callable[[str], str] | None = None) -> Scene:
    """Describe one step of `recording` as drawn: boxes, labels, styles, edges, flow, badges.

    Parameters
    ----------
    recording : Recording
    layout : Layout or None
        Positions (`gradviz.core.layout.layered_layout`, rolled or not). None gives a scene without
        positions (labels, styles and flow states only: what DOT and GraphML need).
    state : StepState or None
        The step to show (`Timeline.state_at`); None shows the start before any op ran.
    theme : {"light", "dark"}
    tr : callable, optional
        Translates the words drawn ("uses", "saved", "waits", "ready"); the one catalogue
        (`gradviz.core.i18n.tr`, in its current language) by default.

    Returns
    -------
    Scene
    """
    scene = Scene(recording, layout, theme, tr)
    if state is not None:
        scene.update(state, None)
    else:  # before the first step: leaves and inputs exist, nothing else
        computed = np.isin(scene.kind, [KINDS.index("leaf"), KINDS.index("input")])
        scene.status[:] = computed
        scene.style[:] = scene.kind.astype(np.int16) * 3 + scene.status
    return scene
