"""The layered layout: layers from the loss, inputs beside their op, rolled uses, speed on 10,000 nodes."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradviz.core import record
from gradviz.core import layout as layout_module
from gradviz.core.edges import edge_segments
from gradviz.core.layout import (LAYER_GAP, NODE_H, NODE_W, Layout, layered_layout, layered_positions,
                                 roll_groups)


def test_layers_follow_longest_path_from_loss():
    rec = record("repeated-layer", params={"k": 3})
    lay = layered_layout(rec)
    assert lay.layer[rec.root] == 0
    for s, d, _ in rec.edges:  # every gradient edge goes to a later layer
        assert lay.layer[d] > lay.layer[s]
    # left to right: the loss is the rightmost node, the leaf the leftmost
    leaf = rec.leaves["layer.weight"].node
    assert lay.pos[rec.root, 0] == lay.pos[:, 0].max()
    assert lay.pos[leaf, 0] == lay.pos[:, 0].min()
    # inputs sit one layer beyond the op they feed
    for op, inp, _ in rec.input_edges:
        assert lay.layer[inp] == lay.layer[op] + 1
    # no two nodes share a position
    assert len({tuple(p) for p in lay.pos.tolist()}) == len(rec.nodes)


def test_top_to_bottom_swaps_axes_and_is_deterministic():
    rec = record("mlp")
    a, b = layered_layout(rec, "tb"), layered_layout(rec, "tb")
    np.testing.assert_array_equal(a.pos, b.pos)
    assert a.pos[rec.root, 1] == a.pos[:, 1].max()  # loss at the bottom
    with pytest.raises(ValueError):
        layered_layout(rec, "diagonal")


def test_barycenter_removes_crossings_of_a_twisted_ladder():
    # two chains whose ids are interleaved so that an id order would cross at every layer
    edges = np.array([[0, 1], [0, 2], [1, 4], [2, 3], [4, 5], [3, 6], [5, 8], [6, 7]])
    pos, layer = layered_positions(9, edges, [0])
    crossings = 0
    for (a, b) in edges:
        for (c, d) in edges:
            if layer[a] == layer[c] and layer[b] == layer[d] and a != c:
                crossings += (pos[a, 1] - pos[c, 1]) * (pos[b, 1] - pos[d, 1]) < 0
    assert crossings == 0


def test_rolled_folds_every_use_into_one_node_and_handles_cycles():
    rec = record("repeated-layer", params={"k": 3, "n": 2, "tanh": True})
    groups = roll_groups(rec)
    lay = layered_layout(rec, rolled=True)
    mm = [g for g, m in enumerate(lay.members) if rec.nodes[m[0]].name == "MmBackward0"]
    assert len(mm) == 1 and sorted(rec.nodes[i].use for i in lay.members[mm[0]]) == [1, 2, 3]
    assert len(lay) == groups.max() + 1 < len(rec.nodes)
    assert np.isfinite(lay.pos).all()  # the rolled graph has cycles (mm -> tanh -> mm); layering survives


def test_ten_thousand_nodes_are_all_placed_in_layers():
    # its speed (target: under 1 s) is measured by benchmarks/app.py, not asserted here
    rec = record("rnn-unrolled", params={"T": 1700, "inputs": 32, "hidden": 64, "batch": 1})
    assert len(rec.nodes) > 10_000
    lay = layered_layout(rec, proxies=False, fold=None)  # one long row (the default folds it, see test_readable)
    assert all(lay.layer[s] < lay.layer[d] for s, d, _ in rec.edges)
    assert lay.pos.shape == (len(rec.nodes), 2) and lay.layer.max() * LAYER_GAP == lay.pos[:, 0].max()
    folded = layered_layout(rec)
    assert all(folded.layer[s] < folded.layer[d] for s, d, _ in rec.edges) and np.isfinite(folded.pos).all()


def _multi_span_recording():
    # a.sum() skips the layer of b ** 2: that edge spans two layers
    def build():
        x = torch.randn(5, requires_grad=True)
        a, b = x[:2] * 2, x[2:] * 3
        return a.sum() + (b ** 2).sum(), {"x": x}
    return record(build)


def _edges_through_nodes(lay) -> list[int]:
    """Rows of the edges whose drawn segments pass through the box of a node other than their ends."""
    a, b, rows = edge_segments(lay)
    hits = set()
    for t in np.linspace(0.0, 1.0, 41):
        q = a + t * (b - a)  # a point on every segment
        dx = np.abs(q[:, None, 0] - lay.pos[None, :, 0]) < lay.size[None, :, 0] / 2 - 0.5  # each node's own box
        dy = np.abs(q[:, None, 1] - lay.pos[None, :, 1]) < lay.size[None, :, 1] / 2 - 0.5
        inside = dx & dy
        inside[np.arange(len(rows)), lay.adj[rows, 0]] = False  # its own ends
        inside[np.arange(len(rows)), lay.adj[rows, 1]] = False
        hits.update(rows[inside.any(axis=1)].tolist())
    return sorted(hits)


@pytest.mark.parametrize("direction", ["lr", "tb"])
def test_an_edge_that_spans_layers_is_routed_around_the_nodes_between(direction):
    rec = _multi_span_recording()
    lay = layered_layout(rec, direction)
    long_rows = [row for row, (s, d) in enumerate(lay.adj) if abs(lay.layer[s] - lay.layer[d]) > 1]
    assert long_rows, "the graph has an edge that spans two layers"
    for row in long_rows:
        s, d = lay.adj[row]
        # two bend points in every layer crossed: in and out of that layer's band of boxes
        assert len(lay.bends[row]) == 2 * (abs(lay.layer[s] - lay.layer[d]) - 1)
    assert _edges_through_nodes(lay) == []


def test_without_routing_the_long_edge_ran_through_a_node(monkeypatch):
    # the layout before edges were routed: a straight line from sender to receiver runs through
    # the node of the layer in between, which the tests above rule out
    monkeypatch.setattr(layout_module, "MAX_ROUTED_SPAN", 1)
    lay = layered_layout(_multi_span_recording())
    assert not lay.bends
    s, d = lay.adj.T
    middles = [(lay.pos[s[r]] + lay.pos[d[r]]) / 2 for r in np.flatnonzero(np.abs(lay.layer[s] - lay.layer[d]) > 1)]
    assert any(np.any((np.abs(lay.pos[:, 0] - m[0]) < NODE_W / 2) & (np.abs(lay.pos[:, 1] - m[1]) < NODE_H / 2))
               for m in middles)


@pytest.mark.parametrize("target,params", [("mlp", {}), ("rnn-unrolled", {"T": 4}), ("rnn-unrolled", {"T": 12}),
                                           ("repeated-layer", {"k": 3, "n": 3, "tanh": True})])
def test_no_drawn_edge_of_a_built_in_model_runs_through_a_node(target, params):
    for direction in ("lr", "tb"):
        lay = layered_layout(record(target, params=params), direction)
        assert _edges_through_nodes(lay) == []


@st.composite
def _dags(draw):
    # a random graph of gradient edges from the loss (node 0): every edge from a lower id to a higher one
    n = draw(st.integers(2, 24))
    edges = set()
    for v in range(1, n):
        edges.add((draw(st.integers(0, v - 1)), v))  # every node is reached from the loss
    for _ in range(draw(st.integers(0, 2 * n))):
        a = draw(st.integers(0, n - 2))
        edges.add((a, draw(st.integers(a + 1, n - 1))))
    return n, np.array(sorted(edges), dtype=np.int64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_dags(), st.sampled_from(["lr", "tb"]))
def test_no_drawn_edge_of_any_graph_runs_through_a_node(graph, direction):
    n, edges = graph
    bends: dict = {}
    pos, layer = layered_positions(n, edges, [0], direction=direction, bends=bends)
    lay = Layout(pos, edges, np.arange(n), [[v] for v in range(n)], np.arange(len(edges)), direction, False,
                 layer, np.zeros(0, dtype=np.int64), bends)
    assert len({tuple(p) for p in pos.tolist()}) == n  # no two nodes in one place
    assert _edges_through_nodes(lay) == []
