"""The crossing counter against closed forms and a brute-force reference."""
from __future__ import annotations

from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradviz.core.crossings import bilayer_crossings, count_crossings, straight_segments


def brute_force(starts, ends, owner) -> int:
    """Every pair tested one by one, in exact integer arithmetic."""

    def orient(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return (v > 0) - (v < 0)

    segs = [(tuple(p), tuple(q), o) for p, q, o in zip(starts, ends, owner) if tuple(p) != tuple(q)]
    found = 0
    for i in range(len(segs)):
        p, q, o = segs[i]
        for j in range(i + 1, len(segs)):
            r, s, o2 = segs[j]
            if o == o2:
                continue
            if orient(p, q, r) * orient(p, q, s) < 0 and orient(r, s, p) * orient(r, s, q) < 0:
                found += 1
    return found


def complete_bipartite(n: int, across: float = 1.0):
    """K_{n,n} between two layers (y = 0 and y = 1), nodes in order, straight edges."""
    pos = np.array([(i * across, 0.0) for i in range(n)] + [(i * across, 1.0) for i in range(n)])
    adj = np.array([(i, n + j) for i in range(n) for j in range(n)])
    return pos, adj


@pytest.mark.parametrize("n", [1, 2, 3, 5, 12])
def test_complete_bipartite_in_order_has_n_choose_2_squared_crossings(n):
    pos, adj = complete_bipartite(n)
    assert count_crossings(*straight_segments(pos, adj)) == comb(n, 2) ** 2


def test_complete_bipartite_small_chunks_count_the_same():
    pos, adj = complete_bipartite(9, across=3.5)
    assert count_crossings(*straight_segments(pos, adj), chunk=7) == comb(9, 2) ** 2


def test_complete_bipartite_from_the_orders_alone():
    n = 7
    upper = np.repeat(np.arange(n), n)
    lower = np.tile(np.arange(n), n)
    assert bilayer_crossings(upper, lower) == comb(n, 2) ** 2
    # the same gap twice, as two gaps: twice the crossings, none between the gaps
    gap = np.r_[np.zeros(n * n), np.ones(n * n)].astype(int)
    assert bilayer_crossings(np.r_[upper, upper], np.r_[lower, lower], gap) == 2 * comb(n, 2) ** 2


def test_a_chain_is_planar():
    # a zigzag chain: consecutive edges share ends, none cross
    pos = np.array([(i, (i % 2) * 5.0) for i in range(200)])
    adj = np.array([(i, i + 1) for i in range(199)])
    assert count_crossings(*straight_segments(pos, adj)) == 0


def test_an_x_crosses_once_and_segments_of_one_edge_never_count():
    starts = [(0, 0), (0, 2)]
    ends = [(2, 2), (2, 0)]
    assert count_crossings(starts, ends) == 1
    assert count_crossings(starts, ends, owner=[4, 4]) == 0


def test_touching_and_overlapping_segments_do_not_cross():
    # an end on the other segment, a shared end, and a collinear overlap
    assert count_crossings([(0, 0), (1, 0)], [(2, 0), (1, 5)]) == 0
    assert count_crossings([(0, 0), (0, 0)], [(2, 2), (2, -2)]) == 0
    assert count_crossings([(0, 0), (1, 0)], [(3, 0), (4, 0)]) == 0


def test_a_polyline_crossing_a_line_twice_counts_twice():
    # a V under a horizontal line crossing both arms
    starts = [(0, 0), (1, -1), (-1, -0.5)]
    ends = [(1, -1), (2, 0), (3, -0.5)]
    assert count_crossings(starts, ends, owner=[0, 0, 1]) == 2


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        count_crossings([(0, 0)], [(1, 1), (2, 2)])
    with pytest.raises(ValueError):
        count_crossings([(0, 0), (1, 1)], [(1, 1), (2, 2)], owner=[0])
    with pytest.raises(ValueError):
        bilayer_crossings([0, 1], [1])


coord = st.integers(-6, 6)
segment = st.tuples(coord, coord, coord, coord, st.integers(0, 5))


@settings(max_examples=150, deadline=None)
@given(st.lists(segment, max_size=40), st.integers(1, 50))
def test_random_segments_match_brute_force(segs, chunk):
    # a small grid forces shared ends, collinear overlaps and vertical / horizontal segments
    starts = [(x0, y0) for x0, y0, _, _, _ in segs]
    ends = [(x1, y1) for _, _, x1, y1, _ in segs]
    owner = [o for *_, o in segs]
    assert count_crossings(starts, ends, owner, chunk=chunk) == brute_force(starts, ends, owner)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 2)), max_size=40))
def test_bilayer_orders_match_drawn_segments(edges):
    # the edges of gap g drawn from y = 2g to y = 2g + 1: distinct gaps never meet, so the drawn
    # straight segments cross exactly as the orders say
    edges = sorted(set(edges))
    starts = [(u, 2 * g) for u, _, g in edges]
    ends = [(w, 2 * g + 1) for _, w, g in edges]
    upper = [u for u, _, _ in edges]
    lower = [w for _, w, _ in edges]
    gap = [g for *_, g in edges]
    assert bilayer_crossings(upper, lower, gap) == brute_force(starts, ends, range(len(edges)))


def test_twenty_thousand_edges_count_like_the_layers_say():
    # a random layered graph, 40 layers of 500 nodes, 20,000 straight edges between adjacent layers
    rng = np.random.default_rng(0)
    layers, width, m = 40, 500, 20_000
    gap = rng.integers(0, layers - 1, m)
    u, w = rng.integers(0, width, m), rng.integers(0, width, m)
    starts = np.c_[gap * 3.0, u.astype(float)]
    ends = np.c_[gap * 3.0 + 3.0, w.astype(float)]
    assert count_crossings(starts, ends) == bilayer_crossings(u, w, gap)
