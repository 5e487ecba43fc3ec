"""The order of the nodes within each layer of a layered drawing: the crossing-reduction step.

Barycenter sweeps, down the layers then up, each node moved to the mean position of its neighbours
in the layer just swept (ties keep the current order, then the node id). A graph too large to count
its crossings often (over `COUNT_LINKS` links) gets `sweeps` such rounds and nothing else, so that
100,000 nodes still lay out in seconds. A smaller one:

* counts the crossings between adjacent layers after every round
  (`gradviz.core.crossings.bilayer_crossings`) and keeps the order with the fewest;
* goes on for up to `MAX_SWEEPS` rounds while that still falls (`PATIENCE` rounds without a new
  best end it), every other round reversing the ties (a way out of a local optimum);
* starts from a depth-first order (each node's children reached by id, reversed), which keeps a
  residual block's branches on one side of its skip edge; up to `TRANSPOSE_LINKS` links it also
  starts from the id order and from the other depth-first order, and follows every round with a
  transpose pass (two neighbours in a layer swap when that crosses fewer of their edges).

It stops as soon as an order has no crossing. Deterministic: no randomness, ties by node id.
"""
from __future__ import annotations

import numpy as np

from .crossings import bilayer_crossings

__all__ = ["order_layers", "COUNT_LINKS", "MAX_SWEEPS", "TRANSPOSE_LINKS"]

COUNT_LINKS = 30_000     # links (edges and their pieces between virtual nodes) up to which crossings are counted
TRANSPOSE_LINKS = 1_000  # ... and up to which the transpose pass and the extra starts run
MAX_SWEEPS = 24          # rounds at most when counting
PATIENCE = 2             # rounds without fewer crossings before stopping
WORK = 600_000           # links visited by the sweeps at most when counting (rounds x links)


def order_layers(by_layer: list[list[int]], layer_of: list[int], up: list[list[int]], down: list[list[int]],
                 sweeps: int) -> list[float]:
    """Order every layer's nodes to reduce edge crossings; `by_layer` is reordered in place.

    Parameters
    ----------
    by_layer : list of list of int
        The nodes of each layer, in their starting order.
    layer_of : list of int
        Each node's layer.
    up, down : list of list of int
        Each node's neighbours in lower-numbered and in higher-numbered layers.
    sweeps : int
        Rounds (a sweep down and a sweep up) for a graph too large to count its crossings; a
        smaller one runs at least this many from each start unless an order has no crossing.

    Returns
    -------
    list of float
        Each node's position within its layer.
    """
    total = len(layer_of)
    rank = [0.0] * total
    for nodes in by_layer:
        for i, v in enumerate(nodes):
            rank[v] = float(i)
    nlayers = len(by_layer)

    def sweep(layers_order, nbrs, flip=False):
        tie = -1.0 if flip else 1.0  # ties keep the current order, or reverse it (to leave a local optimum)
        for li in layers_order:
            nodes = by_layer[li]
            if len(nodes) < 2:
                continue
            keys = []
            for v in nodes:
                nb = nbrs[v]
                keys.append((sum(rank[u] for u in nb) / len(nb) if nb else rank[v], tie * rank[v], v))
            keys.sort()
            nodes[:] = [k[2] for k in keys]
            for i, v in enumerate(nodes):
                rank[v] = float(i)

    def round_(flip=False):
        sweep(range(1, nlayers), up, flip)
        sweep(range(nlayers - 2, -1, -1), down, flip)

    if sum(map(len, up)) > COUNT_LINKS:
        for _ in range(sweeps):
            round_()
        return rank
    # the links between adjacent layers, lower-numbered end first: the crossings counted
    lo = [u for v in range(total) for u in up[v] if layer_of[u] == layer_of[v] - 1]
    hi = [v for v in range(total) for u in up[v] if layer_of[u] == layer_of[v] - 1]
    if len(lo) < 2:
        for _ in range(sweeps):
            round_()
        return rank
    lo_a, hi_a = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
    gap = np.asarray(layer_of, dtype=np.int64)[lo_a]

    def crossings() -> int:
        r = np.asarray(rank)
        return bilayer_crossings(r[lo_a].astype(np.int64), r[hi_a].astype(np.int64), gap)

    transpose = len(lo) <= TRANSPOSE_LINKS
    if transpose:
        up1 = [[u for u in up[v] if layer_of[u] == layer_of[v] - 1] for v in range(total)]
        down1 = [[u for u in down[v] if layer_of[u] == layer_of[v] + 1] for v in range(total)]
    rounds = min(MAX_SWEEPS, max(sweeps, WORK // max(len(lo), 1)))
    # starts: a depth-first order (children by id, reversed); on a small graph first the id order
    # and last the other depth-first order. Each is made when its turn comes (from the order then).
    starts = [lambda: _depth_first(by_layer, layer_of, down, True)]
    if transpose:
        starts = [lambda: [list(nodes) for nodes in by_layer], starts[0],
                  lambda: _depth_first(by_layer, layer_of, down, False)]
    best, best_order = None, None
    for make_start in starts:
        start = make_start()
        for li, nodes in enumerate(start):
            by_layer[li] = list(nodes)
            for i, v in enumerate(nodes):
                rank[v] = float(i)
        here, here_order = crossings(), start
        stale = 0
        for k in range(rounds if here else 0):
            round_(flip=k % 2 == 1)
            if transpose:
                _transpose(by_layer, rank, up1, down1, k % 2 == 1)
            now = crossings()
            if now < here:
                here, here_order, stale = now, [list(nodes) for nodes in by_layer], 0
            else:
                stale += 1
            if here == 0 or (stale >= PATIENCE and k + 1 >= sweeps):
                break
        if best is None or here < best:
            best, best_order = here, here_order
        if best == 0:
            break
    for li, nodes in enumerate(best_order):
        by_layer[li] = nodes
        for i, v in enumerate(nodes):
            rank[v] = float(i)
    return rank


def _depth_first(by_layer: list[list[int]], layer_of: list[int], down: list[list[int]],
                 flip: bool) -> list[list[int]]:
    """Each layer's nodes in the order a depth-first walk down the layers first reaches them.

    The walk starts from each layer's nodes in their current order (layer 0 first) and visits a
    node's neighbours in higher-numbered layers by id (reversed with `flip`), without recursion.
    """
    seen = bytearray(len(layer_of))
    out: list[list[int]] = [[] for _ in by_layer]
    for nodes in by_layer:
        for r in (reversed(nodes) if flip else nodes):
            if seen[r]:
                continue
            seen[r] = 1
            stack = [r]
            while stack:
                v = stack.pop()
                out[layer_of[v]].append(v)
                # pushed in reverse so that the first child is visited first
                for w in (sorted(down[v]) if flip else sorted(down[v], reverse=True)):
                    if not seen[w]:
                        seen[w] = 1
                        stack.append(w)
    return out


def _transpose(by_layer: list[list[int]], rank: list[float], up1: list[list[int]], down1: list[list[int]],
               ties: bool = False) -> None:
    """Swap neighbours in a layer while that crosses fewer of their edges to the adjacent layers
    (with `ties`, also when it crosses as many, not none: a way out of a local optimum)."""

    def cost(u: int, v: int) -> tuple[int, int]:
        """Crossings among u's and v's edges with u left of v, and with v left of u."""
        left = right = 0
        for nb in (up1, down1):
            bs = [rank[b] for b in nb[v]]
            if not bs:
                continue
            for a in nb[u]:
                ra = rank[a]
                for rb in bs:
                    if ra > rb:
                        left += 1
                    elif ra < rb:
                        right += 1
        return left, right

    for nodes in by_layer:
        if len(nodes) < 2:
            continue
        improved = True
        passes = 0
        while improved and passes < 4:
            improved = False
            passes += 1
            for i in range(len(nodes) - 1):
                u, v = nodes[i], nodes[i + 1]
                left, right = cost(u, v)
                if right < left or (ties and right == left > 0):
                    nodes[i], nodes[i + 1] = v, u
                    rank[u], rank[v] = float(i + 1), float(i)
                    improved = True
