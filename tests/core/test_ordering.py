"""The crossing-reduction step orders layers with few crossings, deterministically."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import gradviz
from gradviz.core.crossings import bilayer_crossings, count_crossings
from gradviz.core.edges import edge_segments
from gradviz.core.layout import layered_layout
from gradviz.core.ordering import COUNT_LINKS, TRANSPOSE_LINKS, order_layers


def proper(layer_of: list[int], links: list[tuple[int, int]]):
    """by_layer (ids in order), up and down lists of a graph whose links join adjacent layers."""
    by_layer = [[] for _ in range(max(layer_of) + 1)]
    for v, li in enumerate(layer_of):
        by_layer[li].append(v)
    up = [[] for _ in layer_of]
    down = [[] for _ in layer_of]
    for s, d in links:
        if layer_of[s] > layer_of[d]:
            s, d = d, s
        down[s].append(d)
        up[d].append(s)
    return by_layer, up, down


def crossings_of(by_layer, layer_of, links) -> int:
    rank = {v: i for nodes in by_layer for i, v in enumerate(nodes)}
    lo = [min((s, d), key=lambda v: layer_of[v]) for s, d in links]
    hi = [max((s, d), key=lambda v: layer_of[v]) for s, d in links]
    return bilayer_crossings([rank[v] for v in lo], [rank[v] for v in hi], [layer_of[v] for v in lo])


def residual(blocks: int):
    """A residual stack with its skip edges cut into one link per layer (as the layout's virtual
    nodes do): per block a chain of four ops beside the skip, two weight branches and two leaves.
    Ids are given layer by layer with the skip's pieces first, an order that crosses."""
    layer_of: list[int] = [0]
    links = []
    add = 0
    for b in range(blocks):
        base = 5 * b
        ids = {}

        def node(name, li):
            ids[name] = len(layer_of)
            layer_of.append(base + li)
            return ids[name]

        vs = [node(f"v{k}", k) for k in range(1, 5)]
        a, r, ta = node("a", 1), node("r", 2), node("ta", 2)
        bb, acca = node("b", 3), node("acca", 3)
        ln, tb = node("ln", 4), node("tb", 4)
        nxt, accb, w, bias = node("nxt", 5), node("accb", 5), node("w", 5), node("bias", 5)
        links += [(add, vs[0]), (vs[0], vs[1]), (vs[1], vs[2]), (vs[2], vs[3]), (vs[3], nxt),
                  (add, a), (a, r), (r, bb), (bb, ln), (ln, nxt), (a, ta), (ta, acca), (bb, tb), (tb, accb),
                  (ln, w), (ln, bias)]
        add = nxt
    return layer_of, links


def test_a_crossed_ladder_is_untangled():
    layer_of = [0, 0, 0, 1, 1, 1]
    links = [(0, 5), (1, 4), (2, 3)]
    by_layer, up, down = proper(layer_of, links)
    assert crossings_of(by_layer, layer_of, links) == 3
    order_layers(by_layer, layer_of, up, down, sweeps=4)
    assert crossings_of(by_layer, layer_of, links) == 0


def test_a_residual_stack_gets_a_planar_order_from_a_crossed_start():
    layer_of, links = residual(4)
    by_layer, up, down = proper(layer_of, links)
    start = crossings_of(by_layer, layer_of, links)
    rank = order_layers(by_layer, layer_of, up, down, sweeps=4)
    assert start > 0
    assert crossings_of(by_layer, layer_of, links) == 0
    # the ranks returned are the final order, and every layer keeps its nodes
    assert all(rank[v] == i for nodes in by_layer for i, v in enumerate(nodes))
    assert sorted(v for nodes in by_layer for v in nodes) == list(range(len(layer_of)))


def test_a_longer_residual_stack_gets_a_planar_order_without_the_transpose_pass():
    layer_of, links = residual(TRANSPOSE_LINKS // 16 + 1)
    by_layer, up, down = proper(layer_of, links)
    assert len(links) > TRANSPOSE_LINKS
    order_layers(by_layer, layer_of, up, down, sweeps=4)
    assert crossings_of(by_layer, layer_of, links) == 0


def test_a_large_graph_keeps_every_node_in_its_layer():
    # past COUNT_LINKS only the plain sweeps run: still a permutation of each layer
    layer_of, links = residual(COUNT_LINKS // 16 + 1)
    by_layer, up, down = proper(layer_of, links)
    before = [sorted(nodes) for nodes in by_layer]
    order_layers(by_layer, layer_of, up, down, sweeps=2)
    assert [sorted(nodes) for nodes in by_layer] == before


def _resnet(blocks: int):
    def build():
        torch.manual_seed(0)
        stack = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.Linear(8, 8),
                                                        torch.nn.ReLU(), torch.nn.Linear(8, 8))
                                    for _ in range(blocks))
        h = torch.randn(4, 8)
        for b in stack:
            h = h + b(h)
        return h.pow(2).mean(), stack

    return gradviz.record(build)


@pytest.mark.parametrize("blocks", [3, 80])
def test_a_recorded_residual_stack_is_drawn_with_at_most_one_crossing(blocks):
    # four plain barycenter sweeps drew 5 crossings at 3 blocks (dot draws 1) and 159 at 80 blocks,
    # where the graph is too large for the transpose pass
    rec = _resnet(blocks)
    lay = layered_layout(rec)
    assert count_crossings(*edge_segments(lay)) <= 1
    again = layered_layout(rec)
    assert np.array_equal(lay.pos, again.pos)
