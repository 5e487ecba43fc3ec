"""Fold a long layered drawing into rows, like a paragraph, so it fits a page instead of a strip.

A layered layout puts layer ``k`` at ``k`` layer gaps along one axis; an RNN unrolled 1,700 steps has
5,000 layers, a strip a million pixels long and a few hundred across. Folding cuts the layers into
rows of `per_row` consecutive layers in forward order (the first step top-left, the loss at the end
of the last row): left to right the rows are stacked downwards, top to bottom they become columns
side by side, left to right. Each row is as thick as its own thickest layer, so rows pack tightly.

An edge between two rows (the "fold") leaves its row at the row's end, runs along the gap between
the two rows and enters the next row at its start: a paragraph's line break, drawn (`fold_route`).
Edges are still between neighbouring layers, so no drawn edge gets longer in layers.

`choose_per_row` picks the row length whose picture is closest to a page's aspect ratio;
`fit_per_row` the one whose picture fits a box (the largest PNG, 16,384 px square) at the largest
scale: the whole of a very long chain legible in one image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Fold", "fold_positions", "choose_per_row", "fit_per_row", "fold_route", "FIT_BOX", "FOLD_ASPECT", "FOLD_MIN_LAYERS",
           "FOLD_MIN_RATIO", "ROW_GAP", "LANE_STEP"]

FOLD_ASPECT = 1.414  # width / height aimed at: a landscape page (A-series), close to a 16:10 screen
FOLD_MIN_LAYERS = 40  # fewer layers than this: never folded automatically (every built-in model at its defaults)
FOLD_MIN_RATIO = 3.0  # fold automatically only a drawing more than this many times longer than a page's shape
ROW_GAP = 90.0  # free space between two rows, where the fold's edges run
LANE_STEP = 6.0  # fold edges in one gap run side by side, this far apart
FIT_BOX = "fit"  # ``fold=FIT_BOX``: rows that fit a square box at the largest scale (`fit_per_row`)


@dataclass
class Fold:
    """How a layout was folded.

    Attributes
    ----------
    per_row : int
        Layers per row (0: not folded).
    rows : numpy.ndarray, shape (R, 4)
        Each row's band ``(x, y, w, h)``: a horizontal band (``lr``) or a vertical one (``tb``).
    row_of_layer : numpy.ndarray, shape (L,)
        The row of each layer (layer 0, the loss, is in the last row).
    """

    per_row: int
    rows: np.ndarray
    row_of_layer: np.ndarray


def _layer_extents(forward: np.ndarray, across: np.ndarray, half: np.ndarray, nlayers: int):
    """Per forward position: the lowest and highest across coordinate a node's box reaches."""
    lo = np.full(nlayers, np.inf)
    hi = np.full(nlayers, -np.inf)
    np.minimum.at(lo, forward, across - half)
    np.maximum.at(hi, forward, across + half)
    empty = ~np.isfinite(lo)
    lo[empty], hi[empty] = 0.0, 0.0
    return lo, hi


def _row_bands(lo: np.ndarray, hi: np.ndarray, per_row: int):
    """Each row's lowest and highest across coordinate for rows of `per_row` layers."""
    n = len(lo)
    rows = -(-n // per_row)
    pad = rows * per_row - n
    lo_r = np.r_[lo, np.full(pad, np.inf)].reshape(rows, per_row).min(1)
    hi_r = np.r_[hi, np.full(pad, -np.inf)].reshape(rows, per_row).max(1)
    return lo_r, hi_r


def choose_per_row(forward: np.ndarray, across: np.ndarray, half: np.ndarray, nlayers: int, along_step: float,
                   aspect: float = FOLD_ASPECT, direction: str = "lr") -> int:
    """The row length (in layers) whose folded picture is closest to `aspect` (width / height).

    Parameters
    ----------
    forward : numpy.ndarray of int
        Forward position of each node (0 for the layer farthest from the loss).
    across, half : numpy.ndarray
        Each node's coordinate across the layers and its box's half extent that way.
    nlayers : int
    along_step : float
        Distance between two layers along the layer axis.
    """
    lo, hi = _layer_extents(forward, across, half, nlayers)

    def ratio(per_row: int) -> float:
        lo_r, hi_r = _row_bands(lo, hi, per_row)
        thick = float((hi_r - lo_r).sum() + ROW_GAP * (len(lo_r) - 1))
        length = per_row * along_step
        return length / thick if direction == "lr" else thick / length

    # the ratio grows with the row length in lr (shrinks in tb): bisect on it
    a, b = 1, nlayers
    want_up = direction == "lr"
    while b - a > 1:
        m = (a + b) // 2
        if (ratio(m) < aspect) == want_up:
            a = m
        else:
            b = m
    return min((a, b), key=lambda r: abs(np.log(ratio(r) / aspect)))


def _picture(lo: np.ndarray, hi: np.ndarray, per_row: int, along_step: float, direction: str):
    """The folded picture's (width, height) for rows of `per_row` layers."""
    lo_r, hi_r = _row_bands(lo, hi, per_row)
    thick = float((hi_r - lo_r).sum() + ROW_GAP * (len(lo_r) - 1))
    length = (per_row + 1) * along_step  # the band of a row: half a layer gap beyond each end
    return (length, thick) if direction == "lr" else (thick, length)


def fit_per_row(forward: np.ndarray, across: np.ndarray, half: np.ndarray, nlayers: int, along_step: float,
                box: tuple[float, float] = (1.0, 1.0), direction: str = "lr") -> int:
    """The row length (in layers) whose folded picture fits a `box` (width, height) at the largest scale.

    The picture's scale in the box is ``min(box_w / W, box_h / H)``: W grows with the row length and H
    shrinks, so the best row length is where the two meet; it is found by bisection, and the row
    lengths next to it are compared (rows come in whole numbers, so the meeting point is a step).
    """
    lo, hi = _layer_extents(forward, across, half, nlayers)

    def slack(per_row: int) -> float:
        w, h = _picture(lo, hi, per_row, along_step, direction)
        return w / box[0] - h / box[1]  # grows with the row length in lr, shrinks in tb

    grows = direction == "lr"
    a, b = 1, nlayers
    while b - a > 1:
        m = (a + b) // 2
        if (slack(m) < 0) == grows:
            a = m
        else:
            b = m

    def need(per_row: int) -> float:  # the largest of the two sides, in box units: smaller fits at a larger scale
        w, h = _picture(lo, hi, per_row, along_step, direction)
        return max(w / box[0], h / box[1])

    near = range(max(1, a - 3), min(nlayers, b + 3) + 1)
    return min(near, key=need)


def fold_positions(forward: np.ndarray, across: np.ndarray, half: np.ndarray, nlayers: int, along_step: float,
                   per_row: int, direction: str = "lr") -> tuple[np.ndarray, Fold]:
    """Positions of a layered drawing folded into rows of `per_row` layers.

    Returns
    -------
    pos : numpy.ndarray, shape (len(forward), 2)
    fold : Fold
    """
    lo, hi = _layer_extents(forward, across, half, nlayers)
    lo_r, hi_r = _row_bands(lo, hi, per_row)
    thick = hi_r - lo_r
    offset = np.r_[0.0, np.cumsum(thick + ROW_GAP)[:-1]]
    row = forward // per_row
    col = forward % per_row
    a = offset[row] + (across - lo_r[row])  # across, stacked row after row
    b = col * along_step  # along, restarting at every row
    pos = np.empty((len(forward), 2))
    length = (per_row - 1) * along_step
    if direction == "lr":
        pos[:, 0], pos[:, 1] = b, a
        bands = np.stack([np.full(len(thick), -along_step / 2), offset, np.full(len(thick), length + along_step),
                          thick], axis=1)
    else:
        pos[:, 0], pos[:, 1] = a, b
        bands = np.stack([offset, np.full(len(thick), -along_step / 2), thick,
                          np.full(len(thick), length + along_step)], axis=1)
    row_of_layer = (nlayers - 1 - np.arange(nlayers)) // per_row
    return pos, Fold(per_row, bands, row_of_layer)


def fold_route(p: np.ndarray, q: np.ndarray, row_p: int, row_q: int, fold: Fold, direction: str,
               along_step: float, lane: int = 0) -> list[np.ndarray]:
    """Bend points of an edge from `p` (in row `row_p`) to `q` (in another row), through the gap between.

    Out of the end of `p`'s row, along the gap next to it, into the start of `q`'s row (or the other
    way round for an edge against the reading order); `lane` shifts it in the gap so that several
    fold edges run side by side.
    """
    axis = 0 if direction == "lr" else 1
    other = 1 - axis
    bands = fold.rows
    start = float(bands[0, axis])  # before the first layer of every row
    end = start + float(bands[0, 2 + axis])  # after the last one
    lower = min(row_p, row_q)
    # the gap after the earlier row of the two, offset by the lane
    gap = float(bands[lower, other] + bands[lower, 2 + other]) + ROW_GAP / 2 + (lane % 8 - 3.5) * LANE_STEP
    out_at, in_at = (start, end) if row_p > row_q else (end, start)
    pts = []
    for along, acr in ((out_at, p[other]), (out_at, gap), (in_at, gap), (in_at, q[other])):
        pt = np.empty(2)
        pt[axis], pt[other] = along, acr
        pts.append(pt)
    return pts
