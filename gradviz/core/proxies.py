"""Proxies of a shared parameter: a small linked copy drawn next to each far use, instead of a long edge.

A weight used at every step of an unrolled RNN is one AccumulateGrad node with an edge from every
use; laid out in layers, those edges run across the whole picture. `plan_proxies` picks the edges to
redirect: for a leaf or input node with at least `PROXY_MIN_USES` users, every user whose edge would
span more than `MAX_DRAWN_SPAN` layers sends its edge to a proxy of its own, placed one layer beyond it
(beside it, like an input). The one true node stays where its closest edge puts it: one layer beyond
the use that sends its gradient last in backward (the first use in forward), where the engine adds
the contributions up. The recording, its edges and the accumulation data are unchanged: only the
drawing has extra nodes, each linked to its true node (`Layout.proxy_of`).

Thresholds: a 5-step RNN's weights (5 uses, edges spanning up to 16 layers) get proxies for the uses
more than 3 layers away, and a parameter used twice (an MLP's, a tied embedding) never does.
"""
from __future__ import annotations

import numpy as np

__all__ = ["plan_proxies", "PROXY_MIN_USES", "MAX_DRAWN_SPAN", "PROXY_H", "PROXY_MIN_W", "PROXY_MAX_W", "PROXY_CHAR_W",
           "proxy_label"]

PROXY_MIN_USES = 3  # a node with fewer users keeps all its edges
MAX_DRAWN_SPAN = 3  # layers a drawn edge to a shared node may span before its use gets a proxy
PROXY_H = 26.0  # a proxy's box: one line, the parameter's short name
PROXY_MIN_W = 56.0
PROXY_MAX_W = 110.0
PROXY_CHAR_W = 7.8  # a bold 12 px DejaVu Sans character, on average (a proxy's width from its name's length)


def proxy_label(name: str) -> str:
    """The text a proxy shows: the parameter's last name part (``cell.weight_hh`` -> ``weight_hh``)."""
    return str(name).rsplit(".", 1)[-1] or str(name)


def plan_proxies(adj: np.ndarray, layer: np.ndarray, candidate: np.ndarray,
                 side: dict[int, int]) -> tuple[list[int], np.ndarray]:
    """Edges to send to a proxy instead of their shared receiver.

    Parameters
    ----------
    adj : numpy.ndarray, shape (M, 2)
        Drawn edges (sender, receiver).
    layer : numpy.ndarray, shape (G,)
        Each drawn node's layer (0 at the loss), with every edge present.
    candidate : numpy.ndarray of bool, shape (G,)
        Nodes that may get proxies: leaves and inputs with no edge of their own out.
    side : dict of int to int
        Inputs placed beside one op: that op's edge is the one kept.

    Returns
    -------
    rows : list of int
        Rows of `adj` whose receiver becomes a new proxy node (one per row), in row order.
    home : numpy.ndarray, shape (G,)
        The layer each candidate keeps once its far edges are gone (its layer for the others).
    """
    home = np.asarray(layer, dtype=np.int64).copy()
    if not len(adj):
        return [], home
    recv = adj[:, 1]
    rows_in = np.flatnonzero(candidate[recv])
    if not len(rows_in):
        return [], home
    # users per candidate, grouped by receiver
    order = rows_in[np.argsort(recv[rows_in], kind="stable")]
    v_sorted = recv[order]
    starts = np.flatnonzero(np.r_[True, v_sorted[1:] != v_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)]
    out: list[int] = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        if b - a < PROXY_MIN_USES:
            continue
        rows = order[a:b]
        v = int(v_sorted[a])
        users = adj[rows, 0]
        ul = layer[users]
        kept = side.get(v)
        if kept is None or kept not in users:
            # the use farthest from the loss: its gradient arrives last, when the sum is complete
            kept = int(users[np.lexsort((users, -ul))[0]])
        at = int(layer[kept]) + 1
        far = (at - ul > MAX_DRAWN_SPAN) & (users != kept)
        if far.any():
            out += rows[far].tolist()
            home[v] = at
    out.sort()
    return out, home
