"""The layered layout: layers from the loss, inputs beside their op, rolled uses, speed on 10,000 nodes."""

import numpy as np
import pytest

from gradviz.core import record
from gradviz.core.layout import LAYER_GAP, layered_layout, layered_positions, roll_groups


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
    lay = layered_layout(rec)
    assert all(lay.layer[s] < lay.layer[d] for s, d, _ in rec.edges)
    assert lay.pos.shape == (len(rec.nodes), 2) and lay.layer.max() * LAYER_GAP == lay.pos[:, 0].max()
