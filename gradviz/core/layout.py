"""Layered layout of a recording's graph: positions as a numpy array, no GUI toolkit.

The layout is a small Sugiyama scheme written for speed on long unrolled graphs:

1. layers by longest path from the loss (gradient direction), cycles of a rolled graph broken first;
2. input nodes (tensors that need no grad) go one layer beyond the op they feed;
3. crossing reduction by barycenter sweeps, down and up, a fixed number of times;
4. coordinates: layer along the main axis, order within the layer across it.

Every step is linear in nodes plus edges (times the number of sweeps), so 10,000 nodes lay out in a
fraction of a second. The result is deterministic: ties break by node id.

The "rolled" mode folds every use of a reused module into one node: nodes of the same module whose
name and position inside the use agree become one group.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .recording import Recording

__all__ = ["Layout", "layered_layout", "layered_positions", "roll_groups", "LAYER_GAP", "NODE_GAP"]

LAYER_GAP = 200.0
NODE_GAP = 90.0
SWEEPS = 4


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


def layered_positions(n: int, edges: np.ndarray, roots: list[int] | None = None,
                      side: dict[int, int] | None = None, direction: str = "lr",
                      sweeps: int = SWEEPS) -> tuple[np.ndarray, np.ndarray]:
    """Lay out a graph of `n` nodes with `edges` (M, 2) ``(sender, receiver)``.

    Parameters
    ----------
    side : dict of int to int, optional
        Nodes placed one layer beyond another node (an input beside the op it feeds); they are left
        out of the longest-path layering.
    direction : str
        ``"lr"``: layer 0 on the right; ``"tb"``: layer 0 at the bottom.

    Returns
    -------
    pos : numpy.ndarray, shape (n, 2)
    layer : numpy.ndarray, shape (n,)
    """
    if direction not in ("lr", "tb"):
        raise ValueError(f"direction must be 'lr' or 'tb', not {direction!r}")
    side = side or {}
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    main = np.ones(len(edges), dtype=bool)
    if side and len(edges):
        is_side = np.zeros(n, dtype=bool)
        is_side[list(side)] = True
        main = ~(is_side[edges[:, 0]] | is_side[edges[:, 1]])
    layer = _longest_path_layers(n, edges[main, 0], edges[main, 1], roots or [0])
    for v, op in side.items():
        layer[v] = layer[op] + 1
    # order within each layer: start by id, then barycenter sweeps against the neighbouring layers
    nlayers = int(layer.max()) + 1
    by_layer: list[list[int]] = [[] for _ in range(nlayers)]
    for v in range(n):
        by_layer[layer[v]].append(v)
    up: list[list[int]] = [[] for _ in range(n)]    # neighbours in lower-numbered layers
    down: list[list[int]] = [[] for _ in range(n)]  # neighbours in higher-numbered layers
    for s, d in edges.tolist():
        if layer[s] < layer[d]:
            up[d].append(s)
            down[s].append(d)
        elif layer[s] > layer[d]:
            up[s].append(d)
            down[d].append(s)
    rank = [0.0] * n
    for nodes in by_layer:
        for i, v in enumerate(nodes):
            rank[v] = float(i)

    def sweep(layers_order, nbrs):
        for li in layers_order:
            nodes = by_layer[li]
            if len(nodes) < 2:
                continue
            keys = []
            for v in nodes:
                nb = nbrs[v]
                keys.append((sum(rank[u] for u in nb) / len(nb) if nb else rank[v], rank[v], v))
            keys.sort()
            nodes[:] = [k[2] for k in keys]
            for i, v in enumerate(nodes):
                rank[v] = float(i)

    for _ in range(sweeps):
        sweep(range(1, nlayers), up)
        sweep(range(nlayers - 2, -1, -1), down)
    across = np.empty(n)
    for nodes in by_layer:
        c = (len(nodes) - 1) / 2.0
        for i, v in enumerate(nodes):
            across[v] = (i - c) * NODE_GAP
    along = (nlayers - 1 - layer) * LAYER_GAP
    pos = np.empty((n, 2))
    if direction == "lr":
        pos[:, 0], pos[:, 1] = along, across
    else:
        pos[:, 0], pos[:, 1] = across * 2.2, along * 0.55
    return pos, layer


def layered_layout(rec: Recording, direction: str = "lr", rolled: bool = False) -> Layout:
    """Lay out a recording's graph (gradient edges and input edges).

    Parameters
    ----------
    rec : Recording
    direction : str
        ``"lr"`` (forward left to right, loss on the right) or ``"tb"`` (loss at the bottom).
    rolled : bool
        Fold every use of a reused module into one node.

    Returns
    -------
    Layout
    """
    n = len(rec.nodes)
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
    pos, layer = layered_positions(g, adj_arr, [root], side, direction)
    return Layout(pos, adj_arr, group_of, members, edge_of, direction, rolled, layer,
                  np.asarray(input_rows, dtype=np.int64))
