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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..explain import leaf_buffer_text
from ..i18n import tr as _tr
from ..labels import label_lines
from ..edges import edge_route, edge_segments
from ..layout import NODE_H, NODE_W, Layout
from ..proxies import proxy_label
from ..recording import Recording
from ..tensors import TensorData
from ..timeline import BACKWARD_DONE, COMPUTED, StepState
from .grid import BoxGrid
from .text import FONT_PX, SMALL, SMALL_FONT_PX, elide, format_shape, format_tensor, name_px, text_width
from .theme import KINDS, THEMES, blend, get_theme

__all__ = ["Scene", "build_scene", "NodeStyle", "EdgeStyle", "Badge", "FlowEdge", "Outline",
           "IDLE", "FLOWING", "DONE", "EDGE_STATES", "MAX_LINES", "LINE_STEP", "TEXT_TOP", "BADGE_H"]

IDLE, FLOWING, DONE = 0, 1, 2  # an edge's flow state: no gradient yet, one on it this step, one passed
EDGE_STATES = ("idle", "flowing", "done")
MAX_LINES = 4  # label lines drawn in a box
TEXT_TOP = 6.0  # the first line's top, below the box's top
LINE_STEP = 14.5  # from one line's top to the next
BADGE_H = 17.0  # a badge's or fold mark's height: its text (`SMALL_FONT_PX`) and 2-3 px above and below
_MARGIN = 60.0  # around the drawing's bounds
_STATUS_TEXT = ("not reached", "computed", "ran backward")


@dataclass(frozen=True)
class NodeStyle:
    """How a node of one kind at one status is drawn.

    ``shape`` is ``"rounded"`` (an op or input box), ``"double"`` (a custom Function: a box in a box) or
    ``"pill"`` (a leaf); ``coarse`` is the flat colour of the box when zoomed out past reading.
    """

    kind: str
    status: int
    fill: str
    border: str
    text: str
    border_width: float
    dashed: bool
    shape: str
    coarse: str

    @property
    def status_text(self) -> str:
        return _STATUS_TEXT[self.status]


@dataclass(frozen=True)
class EdgeStyle:
    """How an edge is drawn: colour, width in pixels (at any zoom) and whether it is dashed."""

    color: str
    width: float
    dashed: bool = False


@dataclass(frozen=True)
class Badge:
    """A small rounded tab on a node's border with a word on it (top-left at ``x, y``)."""

    x: float
    y: float
    w: float
    h: float
    text: str
    fill: str
    text_color: str
    radius: float
    px: float = SMALL_FONT_PX  # the text's pixel size


@dataclass(frozen=True)
class FlowEdge:
    """A gradient sent at this step: drawn as a thick route with an arrow head and its value on it.

    ``sender``/``receiver`` are drawn nodes; ``route`` (K, 2) runs from the sender's centre to the
    receiver's; ``head`` (3, 2) is the arrow head's triangle; ``label_box`` (x, y, w, h) the value's box.
    """

    sender: int
    receiver: int
    slot: int
    text: str
    route: np.ndarray
    head: np.ndarray
    label_box: tuple


@dataclass(frozen=True)
class Outline:
    """A highlight drawn around a node (the current step's node, the selection)."""

    group: int
    x: float
    y: float
    w: float
    h: float
    color: str
    width: float
    radius: float
    dashed: bool


def _cell(size: np.ndarray) -> float:
    """A grid cell's side for boxes of these sizes: a few typical boxes across."""
    return 4.0 * float(np.median(size.max(1))) if len(size) else 512.0


def _unique(ids: np.ndarray, n: int) -> np.ndarray:
    """The sorted distinct values of `ids` (all in ``range(n)``): a sort for a few, a mask over `n` for many."""
    if len(ids) < 256:
        return np.unique(ids)
    mask = np.zeros(n, dtype=bool)
    mask[ids] = True
    return np.flatnonzero(mask)


def _node_styles(th: dict) -> tuple:
    """The 12 node styles of a theme: index ``kind * 3 + status``."""
    out = []
    for kind in KINDS:
        fills, border = th[kind][:3], th[kind][3]
        # a node not reached yet: its border faded into the background (70/255 opaque)
        dim = blend(border, th["background"], 70 / 255)
        for status in range(3):
            reached = status >= COMPUTED
            out.append(NodeStyle(kind, status, fills[status], border if reached else dim,
                                 th["text"] if reached and kind != "input" else th["text_dim"],
                                 3.0 if kind == "custom" else 2.0, kind == "input",
                                 {"leaf": "pill", "custom": "double"}.get(kind, "rounded"),
                                 border if status else fills[0]))
    return tuple(out)


class Scene:
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
        self.styles = _node_styles(th)
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

    # -- stepping -------------------------------------------------------------------------------
    def update(self, state: StepState, changed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """Show `state`: copy the `changed` recording nodes' state (every node when None) into the arrays.

        Returns
        -------
        groups : numpy.ndarray
            Drawn nodes whose look changed (their boxes, labels or badges).
        rows : numpy.ndarray
            Drawn edges whose flow state changed.
        everything : bool
            True when the whole drawing changed (a first state, or the phase changed: every waiting
            node's badge), so a view repaints all of it.
        """
        everything = changed is None or state.phase != self.phase
        g_of, rec = self.group_of, self.recording
        if changed is None:
            groups = np.flatnonzero(self.proxy_of < 0)
            ids = np.arange(len(rec.nodes))
        else:
            ids = np.asarray(changed, dtype=np.int64)
            groups = _unique(g_of[ids], len(self.members)) if self.rolled else ids
        if self.rolled and len(groups):
            # every member of each changed group, gathered group after group (a CSR of the members)
            starts, counts = self._member_start[groups], self._member_count[groups]
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            ms = self._member_ids[np.repeat(starts, counts) + offsets]
            first = np.cumsum(counts) - counts
            self.status[groups] = np.maximum.reduceat(state.status[ms], first)
            self.pending[groups] = np.add.reduceat(state.pending[ms], first)
        elif not self.rolled:
            self.status[groups] = state.status[groups]
            self.pending[groups] = state.pending[groups]
        linked = groups[self._has_proxy[groups]]
        if len(linked):  # a proxy shows its true node's state
            proxies = np.concatenate([self._proxies[int(t)] for t in linked.tolist()])
            self.status[proxies] = self.status[self.proxy_of[proxies]]
            self.pending[proxies] = self.pending[self.proxy_of[proxies]]
            groups = np.concatenate([groups, proxies])
        self.style[groups] = self.kind[groups].astype(np.int16) * 3 + np.minimum(self.status[groups], 2)
        # forgotten lines and badges are made again when drawn (the phase changed: every node's badges)
        self.invalidate_labels(slice(None) if everything else groups)
        # edges a gradient has passed along: their sender ran backward (counted per drawn edge, as one
        # drawn edge of a rolled graph stands for several)
        counts = self._out_start[ids + 1] - self._out_start[ids]
        if counts.sum():
            starts = np.repeat(self._out_start[ids], counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            ks = self._out_edges[starts + offsets]
            sent = state.status[self._edge_src[ks]] == BACKWARD_DONE
            delta = sent.astype(np.int32) - self._edge_sent[ks]
            self._edge_sent[ks] = sent
            rows = self.edge_of[ks]
            np.add.at(self._row_sent, rows, delta)
        else:
            rows = np.zeros(0, dtype=np.int64)
        old_flow = self._flow_rows
        self.state, self.phase = state, state.phase
        self.current = int(g_of[state.current]) if state.current is not None else -1
        # a gradient inside one drawn box (a collapsed block's own edges) is not drawn as an arrow
        inside = [self.collapsed and g_of[s] == g_of[d] for s, d, _slot, _g in state.flowing]
        self.flowing = [self._flow_edge(s, d, slot, grad)
                        for (s, d, slot, grad), skip in zip(state.flowing, inside) if not skip]
        self._flow_rows = np.asarray([self.edge_of[self._edge_index(s, d, slot)]
                                      for (s, d, slot, _), skip in zip(state.flowing, inside) if not skip],
                                     dtype=np.int64)
        rows = _unique(np.concatenate([rows, old_flow, self._flow_rows]), len(self.adj))
        self.edge_state[rows] = np.where(self._row_sent[rows] > 0, DONE, IDLE)
        self.edge_state[self._flow_rows] = FLOWING
        return groups, rows, everything

    def _edge_index(self, s: int, d: int, slot: int) -> int:
        """Index into ``recording.edges`` of the gradient edge (s, d, slot)."""
        edges = self.recording.edges
        for k in self._out_edges[self._out_start[s]:self._out_start[s + 1]].tolist():
            if edges[k][1] == d and edges[k][2] == slot:
                return k
        raise KeyError((s, d, slot))

    def _flow_edge(self, s: int, d: int, slot: int, grad) -> FlowEdge:
        """The arrow of the gradient sent from recording node s to d: route, head and value box."""
        gs, gd = int(self.group_of[s]), int(self.group_of[d])
        text = format_tensor(grad) if grad is not None else "None"
        if self.layout is not None:
            row = int(self.edge_of[self._edge_index(s, d, slot)])
            gs, gd = (int(v) for v in self.adj[row])  # the receiver drawn may be a proxy of d's node
            route = edge_route(self.layout, row)
        else:
            route = np.asarray([self.pos[gs], self.pos[gd]], dtype=float)
        a, b = route[-2], route[-1]
        v = b - a
        length = float(np.hypot(*v)) or 1.0
        u = v / length
        w, h = self.size[gd]
        # the head's tip on the receiver's border, 16 px long and 16 wide
        cut = min(abs(w / 2 / u[0]) if u[0] else 1e9, abs(h / 2 / u[1]) if u[1] else 1e9)
        tip = b - u * (cut + 2)
        nrm = np.array([-u[1], u[0]])
        head = np.asarray([tip, tip - u * 16 + nrm * 8, tip - u * 16 - nrm * 8])
        # the value halfway along: on the middle bend point, or the middle of the middle leg
        half = len(route) // 2
        mid = route[half] if len(route) % 2 else (route[half - 1] + route[half]) / 2
        bw = text_width(text, FONT_PX, bold=True) + 14
        box = self._free_label_box(float(mid[0]), float(mid[1]), float(bw), 20.0)
        return FlowEdge(gs, gd, int(slot), text, route, head, box)

    def _free_label_box(self, cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
        """A `w` x `h` box for a gradient's value centred at (cx, cy), moved up or down by whole lines
        (at most six) to the nearest place where it covers no node's box: a value wider than the gap
        between two layers sits above or below the nodes it would hide, never on their borders."""
        p, half = self.pos, self.size / 2
        reach = 6 * (h + 4) + h / 2 + 2
        near = self.nodes_in(cx - w / 2 - 2, cy - reach, cx + w / 2 + 2, cy + reach)
        lo, hi = p[near] - half[near] - 2, p[near] + half[near] + 2  # 2 px clear of every border
        for k in (0, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6, 6):
            x, y = cx - w / 2, cy - h / 2 + k * (h + 4)
            if not np.any((lo[:, 0] < x + w) & (x < hi[:, 0]) & (lo[:, 1] < y + h) & (y < hi[:, 1])):
                return (x, y, w, h)
        return (cx - w / 2, cy - h / 2, w, h)

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

    def text_room(self, g: int) -> float:
        """Width a label line of node `g` may take: a leaf's rounded ends leave less than a box's corners."""
        w, h = self.size[g]
        return float(w - (h * 0.55 if KINDS[int(self.kind[g])] == "leaf" else 10))

    def lines(self, g: int) -> list[str]:
        """The label lines of drawn node `g` exactly as drawn (at most `MAX_LINES`): the first line, the
        name, bold, in a smaller font when it is too wide for the box (`name_px`), cut only if even
        that does not fit; value lines too wide for the box end in "…", so a cut value never reads as
        whole."""
        cached = self._lines[g]
        if cached is None or not self._lines_ok[g]:
            raw = self._raw_lines(g)
            room = self.text_room(g)
            px = self._name_px[g] = name_px(raw[0], room)
            cached = self._lines[g] = ([elide(raw[0], room, px, bold=True)]
                                       + [elide(line, room, FONT_PX) for line in raw[1:MAX_LINES]])
            self._lines_ok[g] = True
        return cached

    def name_px(self, g: int) -> float:
        """The pixel size of drawn node `g`'s first line (the name): `FONT_PX` unless it had to shrink."""
        self.lines(g)
        return self._name_px[g]

    def _raw_lines(self, g: int) -> list[str]:
        """The text of drawn node `g` at this step, before cutting to the box."""
        rec, tr = self.recording, self.tr
        members = self.members[g]
        node = rec.nodes[members[0]]
        if self.proxy_of[g] >= 0:  # a proxy: the shared parameter's short name, nothing else
            return [proxy_label(node.leaf or node.name)]
        title = self.layout.titles.get(g) if self.layout is not None else None
        if title is not None:  # a block of a module's uses drawn as one box
            module, first, last, count = title
            uses = f"{tr('use')} {first}" if first == last else f"{tr('uses')} {first}–{last}"
            return [module, uses, f"{count} × {tr('node')}"]
        lines = label_lines(rec, node)
        if len(members) > 1 and node.module:
            lines = [lines[0], f"{node.module} · {len(members)} {tr('uses')}"]
        state = self.state
        status = int(self.status[g])
        t = node.tensor
        if node.kind in ("leaf", "input"):
            if node.kind == "leaf" and node.leaf and state is not None and state._timeline is not None \
                    and node.leaf in rec.leaves:
                ls = state.leaf(node.leaf)
                if ls.accumulated and ls.grad is not None:
                    # AccumulateGrad has run: .grad is set
                    lines.append(tr("grad {value}", value=format_tensor(ls.grad)))
                    return lines
                if ls.arrived:
                    # before AccumulateGrad runs, what has arrived waits in the engine's input buffer
                    lines.extend(leaf_buffer_text(ls.arrived, ls.total, ls.buffer))
                    return lines
            if t is not None:
                lines.append(format_tensor(t))
            return lines
        if t is not None:
            if status >= COMPUTED and t.value is not None and t.numel <= SMALL:
                lines.append(format_tensor(t))
            else:
                lines.append(format_shape(t.shape))
        if status == BACKWARD_DONE and len(members) == 1:
            ev = self._backward_event(members[0])
            if ev is not None and ev.grad_outputs and ev.grad_outputs[0] is not None:
                lines.append(tr("grad {value}", value=format_tensor(ev.grad_outputs[0])))
        return lines

    def _backward_event(self, nid: int):
        """The first backward run of recording node `nid`, or None."""
        if self._bwd_event is None:
            first: dict = {}
            for ev in self.recording.backward:
                first.setdefault(ev.node, ev)
            self._bwd_event = first
        return self._bwd_event.get(nid)

    def saved_count(self, g: int) -> int:
        """Tensors saved for backward by drawn node `g` (its first member)."""
        saved = self.recording.nodes[self.members[g][0]].saved
        return sum(isinstance(v, TensorData) for v in saved.values())

    def badges(self, g: int) -> list[Badge]:
        """The badges on drawn node `g` at this step: tensors it saved; in backward, why it waits."""
        cached = self._badges[g]
        if cached is None or not self._badges_ok[g]:
            cached = self._badges[g] = self._make_badges(g)
            self._badges_ok[g] = True
        return cached

    def _make_badges(self, g: int) -> list[Badge]:
        th, tr = self.theme, self.tr
        x, y, w, h = self.box(g)
        out = []
        if self.proxy_of[g] >= 0:  # the true node carries the badges
            return out
        nsaved = self.saved_count(g)
        if nsaved:  # on the top border, its right end 4 px past the box's
            text = f"{nsaved} {tr('saved')}"
            bw = text_width(text, SMALL_FONT_PX) + 10
            out.append(Badge(x + w + 4 - bw, y - 9, bw, BADGE_H, text, th["saved"], th["badge_text"], 4))
        kind = KINDS[int(self.kind[g])]
        if self.phase == "backward" and int(self.status[g]) != BACKWARD_DONE and kind != "input":
            # gradients still to arrive (the engine's dependency count); on the top border, from its left end
            wait = int(self.pending[g])
            text = f"{tr('waits')} {wait}" if wait else tr("ready")
            bw = text_width(text, SMALL_FONT_PX) + 14
            out.append(Badge(x - 6, y - 10, bw, BADGE_H, text, th["wait"] if wait else th["badge"],
                             th["badge_text"], 8))
        return out

    def current_outline(self) -> Outline | None:
        """The outline around this step's node, or None."""
        if self.current < 0:
            return None
        x, y, w, h = self.box(self.current, 4)
        return Outline(self.current, x, y, w, h, self.theme["current"], 4.0, 12.0, False)

    def selected_outline(self) -> Outline | None:
        """The outline around the node a view selected, or None."""
        if self.selected < 0:
            return None
        x, y, w, h = self.box(self.selected, 9)
        return Outline(self.selected, x, y, w, h, self.theme["selected"], 3.0, 14.0, True)

    def fold_marks(self) -> list[Badge]:
        """A tab at the start of every row (column, top to bottom) of a folded layout but the first
        ("↪ row 2"): the drawing
        continues there from the end of the row before, like the next line of a paragraph."""
        fold = self.fold
        if fold is None or len(fold.rows) < 2:
            return []
        if self._fold_marks is not None:  # made once per theme and language
            return self._fold_marks
        th, tr = self.theme, self.tr
        out = []
        for k, (x, y, _w, _h) in enumerate(fold.rows.tolist()[1:], start=2):
            text = f"↪ {tr('row' if self.layout.direction == 'lr' else 'column')} {k}"
            w = text_width(text, SMALL_FONT_PX) + 12
            out.append(Badge(x, y - BADGE_H - 3, w, BADGE_H, text, th["edge_done"], th["background"], 4))
        self._fold_marks = out
        return out

    def linked(self, g: int) -> list[int]:
        """Drawn node `g`'s true node and every proxy of it (just `g` for a node without proxies)."""
        if g < 0:
            return []
        true = int(self.proxy_of[g]) if self.proxy_of[g] >= 0 else g
        return [true] + self._proxies.get(true, np.zeros(0, dtype=np.int64)).tolist()

    def linked_outlines(self) -> list[Outline]:
        """Outlines around the other drawn copies of the selected node: its true node and its proxies."""
        if self.selected < 0:
            return []
        out = []
        for g in self.linked(self.selected):
            if g != self.selected:
                x, y, w, h = self.box(g, 5)
                out.append(Outline(g, x, y, w, h, self.theme["selected"], 2.0, 10.0, True))
        return out

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
