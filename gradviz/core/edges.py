"""How a layout's edges are drawn: routes around the nodes, segments for painting, spans in layers.

`edge_route` gives the polyline of one edge (out of its sender's side, through its bend points, into
its receiver's side), `edge_segments` every drawn segment at once (an edge too long to route drawn
as a stub at each end), `edge_spans` how many layers each edge spans. Inside a layer's band of node
boxes a route runs along the layer axis, so it turns only in the free gaps between bands.
"""
from __future__ import annotations

import numpy as np

from .layout import LAYER_GAP, NODE_H, NODE_W, Layout

__all__ = ["edge_route", "edge_segments", "edge_spans"]


def _axis(direction: str) -> tuple[int, float, float]:
    """The layer axis (0: x, 1: y), a node box's half extent along it, and the free gap between two
    layers' bands of boxes."""
    if direction == "lr":
        return 0, NODE_W / 2, LAYER_GAP - NODE_W
    return 1, NODE_H / 2, LAYER_GAP * 0.55 - NODE_H


def edge_route(lay: Layout, row: int) -> np.ndarray:
    """The points edge `row` of `lay` is drawn through, from sender to receiver, shape (K, 2).

    Out of the sender's side, through the bend points of a routed edge, into the receiver's
    side: inside a layer's band of node boxes the route runs along the layer axis, so it turns
    only in the free gaps between bands and never crosses a node box there.
    """
    axis, half, _gap = _axis(lay.direction)
    s, d = lay.adj[row]
    a, b = lay.pos[s], lay.pos[d]
    half_a = half_b = half  # the band's edge: a smaller box (a proxy) is reached straight along the axis
    bends = lay.bends.get(row)
    first = bends[0] if bends is not None and len(bends) else b
    last = bends[-1] if bends is not None and len(bends) else a
    points = [a]
    if first[axis] != a[axis]:
        out = a.copy()
        out[axis] += half_a if first[axis] > a[axis] else -half_a
        points.append(out)
    if bends is not None:
        points += list(bends)
    if last[axis] != b[axis]:
        into = b.copy()
        into[axis] += half_b if last[axis] > b[axis] else -half_b
        points.append(into)
    points.append(b)
    return np.asarray(points, dtype=float)


def edge_segments(lay: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every drawn segment of `lay`'s edges: start points (S, 2), end points (S, 2), edge rows (S,).

    Edges follow `edge_route`, from port to port (the legs to the nodes' centres are under the
    nodes' boxes). An edge across more layers than are routed (a weight shared by
    every time step) is drawn as a stub at each end, inside the gap next to its node: a straight
    line would cross the nodes between, and thousands of them across the view would slow every
    repaint.
    """
    adj = lay.adj
    if not len(adj):
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    axis, half, gap = _axis(lay.direction)
    p = lay.pos
    a, b = p[adj[:, 0]], p[adj[:, 1]]
    routed = np.zeros(len(adj), dtype=bool)
    routed[list(lay.bends)] = True
    d = b - a
    long_ = (np.abs(lay.layer[adj[:, 0]] - lay.layer[adj[:, 1]]) >= 2) & ~routed
    # ports: where an edge leaves its sender's box and enters its receiver's, along the layer axis
    sgn = np.sign(d[:, axis])
    pa, pb = a.copy(), b.copy()
    pa[:, axis] += sgn * half
    pb[:, axis] -= sgn * half
    rows = np.arange(len(adj))
    starts, ends, owner = [], [], []
    # (the legs from a node's centre to its port lie under the node's own box: not drawn)
    plain = ~long_ & ~routed
    starts.append(pa[plain])
    ends.append(pb[plain])
    owner.append(rows[plain])
    if long_.any():
        # stubs: out of each end's box, then most of the gap towards the other end
        w = pb[long_] - pa[long_]
        w = w / np.maximum(np.hypot(w[:, 0], w[:, 1]), 1e-9)[:, None]
        reach = 0.8 * gap / np.maximum(np.abs(w[:, axis]), 1e-9)
        if lay.fold is not None:  # ends in other rows: a steep stub would run across rows, keep it short
            reach = np.minimum(reach, 2 * gap)
        tip_a = pa[long_] + w * reach[:, None]
        tip_b = pb[long_] - w * reach[:, None]
        for u, v in ((pa[long_], tip_a), (tip_b, pb[long_])):
            starts.append(u)
            ends.append(v)
            owner.append(rows[long_])
    for row in np.flatnonzero(routed).tolist():
        route = edge_route(lay, row)[1:-1]  # port to port
        starts.append(route[:-1])
        ends.append(route[1:])
        owner.append(np.full(len(route) - 1, row, dtype=np.int64))
    # a box smaller than the band (a proxy): the leg from the band's edge to its own border
    own = lay.size[:, axis] / 2
    for end, port in ((0, pa), (1, pb)):
        short = np.flatnonzero(own[adj[:, end]] < half - 0.5)
        if len(short):
            centre = p[adj[short, end]]
            border = centre.copy()
            border[:, axis] += np.sign(port[short, axis] - centre[:, axis]) * own[adj[short, end]]
            starts.append(border)
            ends.append(port[short])
            owner.append(rows[short])
    return np.concatenate(starts), np.concatenate(ends), np.concatenate(owner)


def edge_spans(lay: Layout) -> np.ndarray:
    """How many layers each drawn edge spans, one per row of `adj` (a proxy is one layer from its use)."""
    if not len(lay.adj):
        return np.zeros(0, dtype=np.int64)
    return np.abs(lay.layer[lay.adj[:, 0]] - lay.layer[lay.adj[:, 1]])
