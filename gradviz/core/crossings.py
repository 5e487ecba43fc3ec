"""Edge crossings of a drawing: how many times drawn segments of different edges cross.

`count_crossings` counts the proper crossings among straight segments (a polyline edge is given as
its segments, each tagged with the edge it belongs to): two segments cross when each one's end
points lie strictly on the two sides of the other's line. Segments of the same edge never count;
segments that only touch (two edges leaving the same port, an end point on the other segment) or
that overlap along one line do not count either, so a crossing exactly through a polyline's bend
point is missed (rare in practice: the count is a lower bound only there).

The candidate pairs come from a sweep along one axis: segments sorted by their low end on that
axis, each paired with the segments that start before it ends (their extents overlap), then
filtered by the other axis's extents, then tested exactly, all in numpy, in chunks. The axis is the
one that yields fewer candidates; on a layered drawing that is the layer axis, where only the edges
between the same two layers overlap, so tens of thousands of edges take well under a second.

`bilayer_crossings` counts the crossings between two adjacent layers of a layered drawing from the
nodes' orders alone (the count a Sugiyama ordering step minimises).
"""
from __future__ import annotations

import numpy as np

__all__ = ["count_crossings", "bilayer_crossings", "straight_segments"]

CHUNK = 1 << 21  # candidate pairs tested at a time (memory: about 40 bytes each)


def _orient(ax, ay, bx, by, cx, cy) -> np.ndarray:
    """Sign of the turn a -> b -> c: +1 left, -1 right, 0 on the line."""
    return np.sign((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))


def _candidates(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by `lo`; for each segment (in that order) the count of later ones whose `lo` is <= its `hi`.

    Returns the order, the count per sorted segment, and the total.
    """
    order = np.argsort(lo, kind="stable")
    l, h = lo[order], hi[order]
    stop = np.searchsorted(l, h, side="right")
    count = np.maximum(stop - np.arange(len(l)) - 1, 0)
    return order, count, int(count.sum())


def count_crossings(starts, ends, owner=None, chunk: int = CHUNK) -> int:
    """Number of proper crossings between segments of different edges.

    Parameters
    ----------
    starts, ends : array_like, shape (S, 2)
        The segments' end points.
    owner : array_like of int, shape (S,), optional
        The edge each segment belongs to (segments of one edge never count against each other);
        by default every segment is its own edge.
    chunk : int
        Candidate pairs tested at a time.

    Returns
    -------
    int
        Crossing points counted pairwise: three segments through one point count three times.
    """
    a = np.asarray(starts, dtype=float).reshape(-1, 2)
    b = np.asarray(ends, dtype=float).reshape(-1, 2)
    if a.shape != b.shape:
        raise ValueError(f"starts and ends differ in shape: {a.shape} and {b.shape}")
    own = np.arange(len(a)) if owner is None else np.asarray(owner).reshape(-1)
    if len(own) != len(a):
        raise ValueError(f"owner has {len(own)} entries for {len(a)} segments")
    keep = np.any(a != b, axis=1) & np.all(np.isfinite(a) & np.isfinite(b), axis=1)
    a, b, own = a[keep], b[keep], own[keep]
    if len(a) < 2:
        return 0
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # sweep along the axis that pairs fewer segments by their extents
    sweeps = [_candidates(lo[:, ax], hi[:, ax]) for ax in (0, 1)]
    ax = 0 if sweeps[0][2] <= sweeps[1][2] else 1
    order, count, _total = sweeps[ax]
    other = 1 - ax
    a, b, own, lo, hi = a[order], b[order], own[order], lo[order], hi[order]
    first = np.cumsum(count) - count  # where each segment's pairs begin in the flat list
    found = 0
    i = 0
    n = len(a)
    while i < n:
        # take segments i..j-1, whose pairs fit in one chunk (at least one segment)
        j = int(np.searchsorted(first, first[i] + chunk, side="right"))
        j = max(j, i + 1)
        c = count[i:j]
        m = int(c.sum())
        if m:
            ii = np.repeat(np.arange(i, j), c)
            jj = ii + 1 + (np.arange(m) - np.repeat(first[i:j] - first[i], c))
            ok = (lo[jj, other] <= hi[ii, other]) & (lo[ii, other] <= hi[jj, other]) & (own[ii] != own[jj])
            ii, jj = ii[ok], jj[ok]
            p, q, r, s = a[ii], b[ii], a[jj], b[jj]
            d1 = _orient(p[:, 0], p[:, 1], q[:, 0], q[:, 1], r[:, 0], r[:, 1])
            d2 = _orient(p[:, 0], p[:, 1], q[:, 0], q[:, 1], s[:, 0], s[:, 1])
            d3 = _orient(r[:, 0], r[:, 1], s[:, 0], s[:, 1], p[:, 0], p[:, 1])
            d4 = _orient(r[:, 0], r[:, 1], s[:, 0], s[:, 1], q[:, 0], q[:, 1])
            found += int(np.count_nonzero((d1 * d2 < 0) & (d3 * d4 < 0)))
        i = j
    return found


def straight_segments(pos, adj) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every edge of `adj` (M, 2) as one straight segment between its nodes' centres `pos` (G, 2).

    Returns start points, end points and the edge row of each, as `count_crossings` takes them.
    """
    pos = np.asarray(pos, dtype=float).reshape(-1, 2)
    adj = np.asarray(adj, dtype=np.int64).reshape(-1, 2)
    return pos[adj[:, 0]], pos[adj[:, 1]], np.arange(len(adj))


def bilayer_crossings(upper, lower, gap=None) -> int:
    """Crossings between adjacent layers of a layered drawing from the nodes' orders alone.

    Parameters
    ----------
    upper, lower : array_like of int, shape (E,)
        For each edge between two adjacent layers, its end's position in the first layer and in
        the second.
    gap : array_like of int, shape (E,), optional
        Which pair of adjacent layers each edge runs between (edges of different gaps never
        cross); by default all edges run between the same two layers.

    Returns
    -------
    int
        Pairs of edges that cross: one is left of the other in one layer and right of it in the
        other (edges sharing an end never cross).
    """
    u = np.asarray(upper, dtype=np.int64).reshape(-1)
    w = np.asarray(lower, dtype=np.int64).reshape(-1)
    g = np.zeros(len(u), dtype=np.int64) if gap is None else np.asarray(gap, dtype=np.int64).reshape(-1)
    if not len(u) == len(w) == len(g):
        raise ValueError(f"upper, lower and gap have {len(u)}, {len(w)} and {len(g)} entries")
    if len(u) < 2:
        return 0
    # a crossing is a pair i, j of one gap with u_i < u_j and w_i > w_j. Sorted by (gap, u, w), it
    # is an inversion of (gap, w): equal u are sorted by w (no inversion), and an earlier gap has
    # a smaller key whatever its w.
    order = np.lexsort((w, u, g))
    key = g[order] * (int(w.max()) + 1) + w[order]
    return _inversions(np.unique(key, return_inverse=True)[1].reshape(-1))


def _inversions(v: np.ndarray) -> int:
    """Pairs i < j with v_i > v_j, for ints `v` in [0, n), by a bottom-up merge sort in numpy.

    At each level the runs of `width` are sorted; for every element of a right run, the elements
    of its left run above it are counted with one `searchsorted` over all left runs (keyed by
    the run pair they belong to), then each pair of runs is merged by one sort.
    """
    n = len(v)
    idx = np.arange(n)
    vals = v.astype(np.int64)
    total = 0
    width = 1
    while width < n:
        block = idx // (2 * width)
        right = (idx // width) % 2 == 1
        key = block * (n + 1) + vals
        left_keys = key[~right]  # sorted: runs are sorted and blocks increase
        end = np.searchsorted(left_keys, block[right] * (n + 1) + n, side="right")
        at = np.searchsorted(left_keys, key[right], side="right")
        total += int((end - at).sum())
        vals = np.sort(key) % (n + 1)
        width *= 2
    return total
