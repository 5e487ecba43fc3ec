"""`BoxGrid`: which boxes meet a rectangle, in time proportional to the answer, not to all the boxes.

A view of a 200,000-node graph shows a few dozen nodes; finding them by testing every box costs a
few milliseconds per paint and per step. The grid cuts the plane into square cells and lists, per
cell, the boxes that meet it (a CSR: one sorted array of box indices and each cell's start in it),
so a rectangle's boxes are the lists of the cells it covers, tested exactly. Boxes that span many
cells (a long edge segment, a large collapsed block) are kept in one short list every query tests.
Built once per layout with numpy (no Python loop over the boxes).
"""
from __future__ import annotations

import numpy as np

__all__ = ["BoxGrid"]

MAX_SPAN = 16  # a box covering more cells than this is tested by every query instead of listed per cell


class BoxGrid:
    """Axis-aligned boxes ``lo`` (N, 2) .. ``hi`` (N, 2), indexed by a uniform grid of `cell`-sized squares.

    Parameters
    ----------
    lo, hi : numpy.ndarray, shape (N, 2)
        Each box's smallest and largest corner.
    cell : float
        The side of a grid cell in the boxes' units.
    """

    def __init__(self, lo: np.ndarray, hi: np.ndarray, cell: float = 512.0):
        self.lo, self.hi = np.asarray(lo, dtype=float).reshape(-1, 2), np.asarray(hi, dtype=float).reshape(-1, 2)
        n = len(self.lo)
        self.cell = float(cell)
        self.origin = self.lo.min(0) if n else np.zeros(2)
        top = self.hi.max(0) if n else np.zeros(2)
        self.cols, self.rows = (np.floor((top - self.origin) / self.cell).astype(np.int64) + 1).tolist()
        c0 = self._cells(self.lo)
        c1 = self._cells(self.hi)
        span = c1 - c0 + 1
        count = span[:, 0] * span[:, 1]
        big = count > MAX_SPAN
        self.big = np.flatnonzero(big)  # boxes every query tests
        small = np.flatnonzero(~big)
        # every (cell, box) pair of the small boxes: box k repeated once per cell it covers
        k = np.repeat(small, count[small])
        first = np.repeat(np.cumsum(count[small]) - count[small], count[small])
        j = np.arange(len(k)) - first  # the pair's rank among its box's cells
        w = span[k, 0]
        cx, cy = c0[k, 0] + j % w, c0[k, 1] + j // w
        cid = cy * self.cols + cx
        order = np.argsort(cid, kind="stable")  # by cell; `k` ascends, so each cell's boxes stay in index order
        self.items = k[order]
        self.start = np.searchsorted(cid[order], np.arange(self.cols * self.rows + 1))

    def _cells(self, p: np.ndarray) -> np.ndarray:
        c = np.floor((p - self.origin) / self.cell).astype(np.int64)
        return np.clip(c, 0, [self.cols - 1, self.rows - 1])

    def query(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """The indices (sorted) of the boxes that meet rectangle (x0, y0)-(x1, y1), edges included."""
        if not len(self.lo) or x1 < x0 or y1 < y0:
            return np.zeros(0, dtype=np.int64)
        (cx0, cy0), (cx1, cy1) = self._cells(np.array([[x0, y0], [x1, y1]], dtype=float)).tolist()
        if (cx1 - cx0 + 1) * (cy1 - cy0 + 1) * 4 > self.cols * self.rows:
            cand = np.arange(len(self.lo))  # most of the plane: testing every box is as cheap
        else:
            # each row of cells is one run of cell ids, so one slice of the CSR
            parts = [self.items[self.start[cy * self.cols + cx0]:self.start[cy * self.cols + cx1 + 1]]
                     for cy in range(cy0, cy1 + 1)]
            cand = np.unique(np.concatenate(parts + [self.big]))
        lo, hi = self.lo[cand], self.hi[cand]
        keep = (hi[:, 0] >= x0) & (lo[:, 0] <= x1) & (hi[:, 1] >= y0) & (lo[:, 1] <= y1)
        return cand[keep]
