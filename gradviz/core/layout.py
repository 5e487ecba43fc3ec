"""Layered layout of a recording's graph: positions as a numpy array, no GUI toolkit.

The layout is a small Sugiyama scheme written for speed on long unrolled graphs:

1. layers by longest path from the loss (gradient direction), cycles of a rolled graph broken first;
2. input nodes (tensors that need no grad) go one layer beyond the op they feed;
3. an edge that spans a few layers (up to `MAX_ROUTED_SPAN`) gets a virtual node in every layer it
   crosses, so that it is ordered with the real nodes and routed around them instead of being drawn
   straight through them; longer edges (a weight shared by every time step) are not routed, and
   `gradviz.core.edges.edge_segments` draws them as a stub at each end;
4. crossing reduction by barycenter sweeps, down and up (`gradviz.core.ordering`: on a graph small
   enough, more rounds with a transpose pass, keeping the order with the fewest crossings);
5. coordinates: layer along the main axis, order within the layer across it (virtual nodes take
   0.6 of a slot); each virtual node becomes two bend points, at the two sides of its layer's
   band of node boxes, so a routed edge turns only in the free gaps between bands.

Every step is linear in nodes plus edges (times the number of sweeps), so 10,000 nodes lay out in a
fraction of a second. The result is deterministic: ties break by node id.

The "rolled" mode folds every use of a reused module into one node: nodes of the same module whose
name and position inside the use agree become one group.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .collapse import collapse_groups, parse_block
from .fold import (FIT_BOX, FOLD_ASPECT, FOLD_MIN_LAYERS, FOLD_MIN_RATIO, ROW_GAP, Fold, choose_per_row, fit_per_row,
                   fold_positions, fold_route)
from .ordering import order_layers
from .proxies import PROXY_CHAR_W, PROXY_H, PROXY_MAX_W, PROXY_MIN_W, plan_proxies, proxy_label
from .sandbox import gc_paused
from .recording import Recording

__all__ = ["Layout", "layered_layout", "layered_positions", "assign_layers", "roll_groups", "LAYER_GAP", "NODE_GAP", "NODE_W", "NODE_H"]

NODE_W = 150.0  # the drawn node box the spacing below is made for (the app draws this size)
NODE_H = 66.0
LAYER_GAP = 200.0
NODE_GAP = 90.0
SWEEPS = 4
MAX_ROUTED_SPAN = 8  # edges spanning more layers than this are not routed (drawn as stubs)


@dataclass
class Layout:
    """Positions of a (possibly rolled) graph.

    Attributes
    ----------
    pos : numpy.ndarray of float, shape (G, 2)
        One position per drawn node (group).
    adj : numpy.ndarray of int, shape (M, 2)
        Drawn edges ``(sender, receiver)`` between groups, gradient direction; input edges included.
    group_of : numpy.ndarray of int, shape (N,)
        For every recording node, the drawn node that shows it.
    members : list of list of int
        For every drawn node, the recording nodes it shows (one unless rolled).
    edge_of : numpy.ndarray of int, shape (len(rec.edges),)
        For every gradient edge of the recording, its row in `adj`.
    direction : str
        ``"lr"`` (loss on the right) or ``"tb"`` (loss at the bottom).
    rolled : bool
    layer : numpy.ndarray of int, shape (G,)
        Layer of each drawn node, 0 at the loss.
    input_edge_rows : numpy.ndarray of int
        Rows of `adj` that are input edges.
    bends : dict of int to numpy.ndarray
        For an edge (row of `adj`) that spans several layers, its bend points from sender to
        receiver, shape (K, 2), two per layer crossed: the edge is drawn through them, around the
        nodes in between. An edge between two rows of a folded layout runs through the gap between.
    proxy_of : numpy.ndarray of int, shape (G,)
        For a proxy of a shared parameter (`gradviz.core.proxies`), the drawn node it stands for;
        -1 for every other node. A proxy's `members` are its true node's first member.
    size : numpy.ndarray, shape (G, 2)
        Each drawn node's box, width and height (a proxy's is small).
    fold : Fold or None
        How the layers were folded into rows (`gradviz.core.fold`), None when they were not.
    titles : dict of int to tuple
        For a box that stands for a block of a module's uses (`gradviz.core.collapse`):
        ``(module, first use, last use, nodes)``; empty unless collapsed.
    """

    pos: np.ndarray
    adj: np.ndarray
    group_of: np.ndarray
    members: list
    edge_of: np.ndarray
    direction: str = "lr"
    rolled: bool = False
    layer: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    input_edge_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    bends: dict = field(default_factory=dict)
    proxy_of: np.ndarray | None = None
    size: np.ndarray | None = None
    fold: Fold | None = None
    titles: dict = field(default_factory=dict)
    collapse: int | None = None
    expanded: frozenset = frozenset()

    def __post_init__(self) -> None:
        g = len(self.pos)
        if self.proxy_of is None:
            self.proxy_of = np.full(g, -1, dtype=np.int64)
        if self.size is None:
            self.size = np.tile([NODE_W, NODE_H], (g, 1)).astype(float)

    def __len__(self) -> int:
        return len(self.pos)


def roll_groups(rec: Recording) -> np.ndarray:
    """Group id per node: every use of a reused module folded into one node.

    Nodes of a module with more than one use are keyed by (module, name, rank among the nodes of the
    same name in that use); every other node is its own group.
    """
    n = len(rec.nodes)
    key_of: dict = {}
    group = np.empty(n, dtype=np.int64)
    rank: dict = defaultdict(int)
    for node in rec.nodes:
        if node.module is not None and node.use is not None and (node.uses or 1) > 1:
            r = rank[(node.module, node.use, node.name)]
            rank[(node.module, node.use, node.name)] += 1
            key = ("m", node.module, node.name, r)
        else:
            key = ("n", node.id)
        gid = key_of.get(key)
        if gid is None:
            gid = key_of[key] = len(key_of)
        group[node.id] = gid
    return group


def _longest_path_layers(n: int, src: np.ndarray, dst: np.ndarray, roots: list[int]) -> np.ndarray:
    """Layer of each node: longest path length from a root, on the graph with back edges dropped."""
    out: list[list[int]] = [[] for _ in range(n)]
    for s, d in zip(src.tolist(), dst.tolist()):
        if s != d:
            out[s].append(d)
    # iterative DFS from the roots (then from any unvisited node) to find back edges: keep a DAG
    state = bytearray(n)  # 0 new, 1 on stack, 2 done
    keep: list[list[int]] = [[] for _ in range(n)]
    order = roots + [i for i in range(n)]
    for r in order:
        if state[r]:
            continue
        state[r] = 1
        stack = [(r, 0)]
        while stack:
            v, i = stack[-1]
            nbrs = out[v]
            if i < len(nbrs):
                stack[-1] = (v, i + 1)
                w = nbrs[i]
                if state[w] == 1:
                    continue  # back edge: dropped for layering
                keep[v].append(w)
                if state[w] == 0:
                    state[w] = 1
                    stack.append((w, 0))
            else:
                state[v] = 2
                stack.pop()
    indeg = [0] * n
    for v in range(n):
        for w in keep[v]:
            indeg[w] += 1
    layer = [0] * n
    ready = [v for v in range(n) if indeg[v] == 0]
    while ready:
        v = ready.pop()
        lv = layer[v] + 1
        for w in keep[v]:
            if layer[w] < lv:
                layer[w] = lv
            indeg[w] -= 1
            if indeg[w] == 0:
                ready.append(w)
    return np.asarray(layer, dtype=np.int64)


def assign_layers(n: int, edges: np.ndarray, roots: list[int] | None = None,
                  side: dict[int, int] | None = None) -> np.ndarray:
    """Layer of each of `n` nodes: the longest path from a root over `edges` (M, 2), cycles broken;
    a node of `side` goes one layer beyond the node it is placed beside."""
    side = side or {}
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    main = np.ones(len(edges), dtype=bool)
    if side and len(edges):
        is_side = np.zeros(n, dtype=bool)
        is_side[list(side)] = True
        main = ~(is_side[edges[:, 0]] | is_side[edges[:, 1]])
    layer = _longest_path_layers(n, edges[main, 0], edges[main, 1], roots or [0])
    for v, op in side.items():
        layer[v] = layer[op] + 1
    return layer


def layered_positions(n: int, edges: np.ndarray, roots: list[int] | None = None,
                      side: dict[int, int] | None = None, direction: str = "lr",
                      sweeps: int = SWEEPS, bends: dict | None = None, layer: np.ndarray | None = None,
                      size: np.ndarray | None = None, fold: int | str | None = None,
                      info: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lay out a graph of `n` nodes with `edges` (M, 2) ``(sender, receiver)``.

    Parameters
    ----------
    side : dict of int to int, optional
        Nodes placed one layer beyond another node (an input beside the op it feeds); they are left
        out of the longest-path layering.
    direction : str
        ``"lr"``: layer 0 on the right; ``"tb"``: layer 0 at the bottom.
    bends : dict, optional
        Filled with the bend points of every routed edge: row of `edges` -> array (K, 2), from
        sender to receiver.
    layer : numpy.ndarray, optional
        Layers already assigned (`assign_layers`), used as they are.
    size : numpy.ndarray, shape (n, 2), optional
        Each node's box; a node lower than `NODE_H` (a proxy) takes less room in its layer.
    fold : int, "auto", "fit" or None
        Fold the layers into rows of this many (`gradviz.core.fold`); ``"auto"`` folds a drawing
        much longer than a page's shape into rows that fit one, ``"fit"`` folds it into rows that fit a
        square image at the largest scale; None or 0 never folds.
    info : dict, optional
        Filled with ``"fold"``: the `Fold` made, or None.

    Returns
    -------
    pos : numpy.ndarray, shape (n, 2)
    layer : numpy.ndarray, shape (n,)
    """
    if direction not in ("lr", "tb"):
        raise ValueError(f"direction must be 'lr' or 'tb', not {direction!r}")
    side = side or {}
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if info is not None:
        info["fold"] = None
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    if layer is None:
        layer = assign_layers(n, edges, roots, side)
    layer = np.asarray(layer, dtype=np.int64)
    # virtual nodes: one per layer that a routed edge crosses, chained from its sender to its receiver
    layer_of = layer.tolist()
    chains: dict[int, list[int]] = {}
    links: list[tuple[int, int]] = []
    total = n
    for row, (s, d) in enumerate(edges.tolist()):
        ls, ld = layer_of[s], layer_of[d]
        span = abs(ld - ls)
        if span < 2 or span > MAX_ROUTED_SPAN:
            links.append((s, d))
            continue
        step = 1 if ld > ls else -1
        chain = list(range(total, total + span - 1))
        total += span - 1
        layer_of += [ls + step * (k + 1) for k in range(span - 1)]
        chains[row] = chain
        path = [s, *chain, d]
        links += list(zip(path, path[1:]))
    virtual = total - n
    # order within each layer: start by id, then barycenter sweeps against the neighbouring layers
    # (gradviz.core.ordering)
    nlayers = int(layer.max()) + 1
    by_layer: list[list[int]] = [[] for _ in range(nlayers)]
    for v in range(total):
        by_layer[layer_of[v]].append(v)
    up: list[list[int]] = [[] for _ in range(total)]    # neighbours in lower-numbered layers
    down: list[list[int]] = [[] for _ in range(total)]  # neighbours in higher-numbered layers
    for s, d in links:
        if layer_of[s] < layer_of[d]:
            up[d].append(s)
            down[s].append(d)
        elif layer_of[s] > layer_of[d]:
            up[s].append(d)
            down[d].append(s)
    order_layers(by_layer, layer_of, up, down, sweeps)
    # room a node takes across its layer: 2 a full box, 1 a small one (a proxy), 0 a virtual node
    room = [2] * n + [0] * virtual
    if size is not None:
        for v in np.flatnonzero(np.asarray(size)[:, 1] < NODE_H).tolist():
            room[v] = 1
    gap_of = {4: 1.0, 3: 0.8, 2: 0.6, 1: 0.6, 0: 0.6}  # by the two neighbours' rooms: slots between centres
    across = np.empty(total)
    for nodes in by_layer:
        # a slot per node, 0.6 of one next to a virtual node (an edge passing by needs less room)
        at = 0.0
        for i, v in enumerate(nodes):
            if i:
                u = nodes[i - 1]
                at += NODE_GAP * (gap_of[room[u] + room[v]] if room[u] and room[v] else 0.6)
            across[v] = at
        across[nodes] -= at / 2 if nodes else 0.0
    forward = nlayers - 1 - np.asarray(layer_of)
    along_step = LAYER_GAP if direction == "lr" else LAYER_GAP * 0.55
    acr = across if direction == "lr" else across * 2.2
    per_row = 0
    if fold is not None and fold != 0:
        sizes = np.zeros((total, 2))
        sizes[:n] = size if size is not None else (NODE_W, NODE_H)
        half = sizes[:, 1 if direction == "lr" else 0] / 2
        if fold == "auto":
            per_row = _auto_fold(forward, acr, half, nlayers, along_step, direction)
        elif fold == FIT_BOX:  # the whole in a square image at the largest scale (a long chain only)
            per_row = fit_per_row(forward, acr, half, nlayers, along_step, direction=direction) \
                if _auto_fold(forward, acr, half, nlayers, along_step, direction) else 0
        else:
            per_row = int(fold)
            if per_row < 1:
                raise ValueError(f"fold must be 'auto', 0 or a number of layers per row, not {fold!r}")
    folded = 0 < per_row < nlayers
    if folded:
        pos, made = fold_positions(forward, acr, half, nlayers, along_step, per_row, direction)
        row_of = made.row_of_layer[np.asarray(layer_of)]
        if info is not None:
            info["fold"] = made
    else:
        along = forward * LAYER_GAP
        pos = np.empty((total, 2))
        if direction == "lr":
            pos[:, 0], pos[:, 1] = along, across
        else:
            pos[:, 0], pos[:, 1] = across * 2.2, along * 0.55
    if bends is not None and (virtual or folded):
        # inside a layer's band of node boxes the route runs parallel to the layer axis, beside the
        # boxes; it turns only in the free gap between two bands, where there is no node to cross.
        # Between two rows of a folded drawing it runs along the gap between the rows.
        half_box = NODE_W / 2 if direction == "lr" else NODE_H / 2
        axis = 0 if direction == "lr" else 1
        lanes: dict = defaultdict(int)
        for row, (s, d) in enumerate(edges.tolist()):
            chain = chains.get(row)
            if chain is None and not (folded and row_of[s] != row_of[d]
                                      and abs(layer_of[s] - layer_of[d]) <= MAX_ROUTED_SPAN):
                continue
            stations = [s, *(chain or []), d]
            points: list = []
            prev = pos[s]
            for k in range(1, len(stations)):
                a, v = stations[k - 1], stations[k]
                if folded and row_of[a] != row_of[v]:
                    gap = min(row_of[a], row_of[v])
                    points += fold_route(pos[a], pos[v], int(row_of[a]), int(row_of[v]), made, direction,
                                         along_step, lanes[gap])
                    lanes[gap] += 1
                    prev = points[-1]
                if k == len(stations) - 1:
                    break
                entry, leave = pos[v].copy(), pos[v].copy()
                toward = 1.0 if prev[axis] > pos[v, axis] else -1.0
                entry[axis] += toward * half_box
                leave[axis] -= toward * half_box
                points += [entry, leave]
                prev = pos[v]
            if points:
                bends[row] = np.asarray(points)
    return pos[:n], layer


def _auto_fold(forward, across, half, nlayers: int, along_step: float, direction: str) -> int:
    """Layers per row for ``fold="auto"``: 0 (no fold) unless the drawing is a long strip."""
    if nlayers < FOLD_MIN_LAYERS:
        return 0
    length = nlayers * along_step
    thick = float((across + half).max() - (across - half).min()) + ROW_GAP
    shape = length / thick
    if max(shape / FOLD_ASPECT, FOLD_ASPECT / shape) < FOLD_MIN_RATIO:
        return 0
    return choose_per_row(forward, across, half, nlayers, along_step, FOLD_ASPECT, direction)


def _proxy_sizes(rec: Recording, nodes: list[int]) -> np.ndarray:
    """The box of a proxy of each recording node in `nodes`: its short name in bold, one line.

    The width is estimated from the name's length (the Scene's width model is above the layout; a
    name that does not fit is shrunk and cut by the Scene like any other)."""
    out = np.empty((len(nodes), 2))
    out[:, 1] = PROXY_H
    for i, v in enumerate(nodes):
        node = rec.nodes[v]
        w = PROXY_CHAR_W * len(proxy_label(node.leaf or node.name)) + 20
        out[i, 0] = min(max(w, PROXY_MIN_W), PROXY_MAX_W)
    return out


def layered_layout(rec: Recording, direction: str = "lr", rolled: bool = False, proxies: bool = True,
                   fold: int | str | None = "auto", collapse: int | str | None = None,
                   expanded=()) -> Layout:
    """Lay out a recording's graph (gradient edges and input edges).

    Parameters
    ----------
    rec : Recording
    direction : str
        ``"lr"`` (forward left to right, loss on the right) or ``"tb"`` (loss at the bottom).
    rolled : bool
        Fold every use of a reused module into one node.
    proxies : bool
        Draw a small linked proxy of a shared parameter next to each far use (`gradviz.core.proxies`).
    fold : int, "auto", "fit" or None
        Wrap the layers into rows (`gradviz.core.fold`): ``"auto"`` when the drawing is a long strip,
        ``"fit"`` the same strip into rows that fit a square image (the whole legible in one PNG), a
        number of layers per row, or None / 0 for one long row.
    collapse : int, "use" or None
        Draw each module use (``"use"``), or each block of that many consecutive uses, as one box
        (`gradviz.core.collapse`); not with `rolled`.
    expanded : iterable of tuple
        Blocks (`gradviz.core.collapse.block_key`) drawn node by node although collapsing.

    Returns
    -------
    Layout
    """
    n = len(rec.nodes)
    titles: dict = {}
    block = None
    if collapse is not None and not rolled:
        block = parse_block(collapse)
        group_of, titles = collapse_groups(rec, block, expanded)
    else:
        group_of = roll_groups(rec) if rolled else np.arange(n, dtype=np.int64)
    g = int(group_of.max()) + 1 if n else 0
    members: list[list[int]] = [[] for _ in range(g)]
    for v in range(n):
        members[group_of[v]].append(v)
    rows: dict[tuple[int, int], int] = {}
    adj: list[tuple[int, int]] = []
    edge_of = np.empty(len(rec.edges), dtype=np.int64)
    for k, (s, d, _slot) in enumerate(rec.edges):
        key = (int(group_of[s]), int(group_of[d]))
        row = rows.get(key)
        if row is None:
            row = rows[key] = len(adj)
            adj.append(key)
        edge_of[k] = row
    side: dict[int, int] = {}
    input_rows = []
    for op, inp, _pos in rec.input_edges:
        key = (int(group_of[op]), int(group_of[inp]))
        if key not in rows:
            rows[key] = len(adj)
            adj.append(key)
            input_rows.append(rows[key])
        side.setdefault(key[1], key[0])
    adj_arr = np.asarray(adj, dtype=np.int64).reshape(-1, 2)
    root = int(group_of[rec.root]) if n else 0
    bends: dict = {}
    proxy_of = np.full(g, -1, dtype=np.int64)
    size = np.tile([NODE_W, NODE_H], (g, 1)).astype(float)
    info: dict = {}
    with gc_paused():
        layer = assign_layers(g, adj_arr, [root], side) if g else None
        if proxies and g and len(adj_arr):
            kind = np.array([rec.nodes[m[0]].kind for m in members])
            sends = np.zeros(g, dtype=bool)
            sends[adj_arr[:, 0]] = True
            candidate = np.isin(kind, ("leaf", "input")) & ~sends
            redirect, home = plan_proxies(adj_arr, layer, candidate, side)
            if redirect:
                redirect = np.asarray(redirect, dtype=np.int64)
                true, users = adj_arr[redirect, 1].copy(), adj_arr[redirect, 0]
                new = g + np.arange(len(redirect))
                adj_arr[redirect, 1] = new
                side.update(zip(new.tolist(), users.tolist()))
                members += [[members[t][0]] for t in true.tolist()]
                layer = np.r_[home, layer[users] + 1]
                proxy_of = np.r_[proxy_of, true]
                size = np.r_[size, _proxy_sizes(rec, [members[t][0] for t in true.tolist()])]
                g += len(redirect)
        pos, layer = layered_positions(g, adj_arr, [root], side, direction, bends=bends, layer=layer, size=size,
                                       fold=fold, info=info)
    return Layout(pos, adj_arr, group_of, members, edge_of, direction, rolled, layer,
                  np.asarray(input_rows, dtype=np.int64), bends, proxy_of, size, info.get("fold"), titles,
                  block, frozenset(expanded) if block else frozenset())
