"""The recorder's post-processing after the walk: shared producer lists give what each step alone finds."""
from __future__ import annotations

import heapq

import torch

from gradviz.core import record
from gradviz.core.backward_run import walk_graph
from gradviz.core.capture import ForwardCapture
from gradviz.core.recorder import producers_of, topological_order
from gradviz.core.sandbox import Sandbox
from gradviz.core.tensors import TensorStore
from graph_reference import threaded_half


def _threaded_model():
    """A forward half run in a worker thread (its nodes unseen), half here, with a leaf used in both."""
    w = torch.randn(4, 3, requires_grad=True)
    b = threaded_half(w)
    return (b * b).sum(), w


def test_unseen_nodes_from_the_walks_edges_are_those_found_through_torch():
    torch.manual_seed(0)
    cap = ForwardCapture(TensorStore(False, 1 << 20))
    with Sandbox(cap):
        loss, w = _threaded_model()
    nodes, fn_ids, edges, fns = walk_graph(loss.grad_fn, 1000, None)
    leaf_ids = {id(t) for t in cap.leaf_seen}
    through_torch = cap.unseen_nodes(fns, leaf_ids)
    from_edges = cap.unseen_nodes(fns, leaf_ids, fn_ids, producers_of(len(fns), edges))
    assert from_edges == through_torch
    assert sorted(nodes[i].name for i in from_edges) == ["MmBackward0", "TanhBackward0"]


def _kahn(n, edges):
    """Kahn's algorithm, ties by id, written out plainly (the reference)."""
    indeg = [0] * n
    for _, d, _ in edges:
        indeg[d] += 1
    ready = [i for i in range(n) if indeg[i] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for s, d, _ in edges:
            if s == i:
                indeg[d] -= 1
                if indeg[d] == 0:
                    heapq.heappush(ready, d)
    return order


def test_topological_order_with_and_without_shared_producer_lists():
    # a diamond with a repeated edge (one tensor used twice by an op), ties broken by id
    edges = [(0, 2, 0), (0, 1, 1), (2, 3, 0), (1, 3, 0), (1, 3, 1), (3, 4, 0), (2, 4, 1)]
    assert producers_of(5, edges) == [[2, 1], [3, 3], [3, 4], [4], []]
    expected = _kahn(5, edges)
    assert expected == [0, 1, 2, 3, 4]
    assert topological_order(5, edges) == expected
    assert topological_order(5, edges, producers_of(5, edges)) == expected


def test_topological_order_of_a_recorded_graph_puts_every_consumer_first():
    rec = record("rnn-unrolled", params={"T": 6}, keep_values=False)
    n = len([x for x in rec.nodes if x.kind != "input"])
    order = topological_order(n, rec.edges)
    assert sorted(order) == list(range(n)) and order == _kahn(n, rec.edges)
    at = {nid: k for k, nid in enumerate(order)}
    assert all(at[s] < at[d] for s, d, _ in rec.edges)


def test_contributions_are_the_edges_into_each_leaf_in_backward_order():
    rec = record("rnn-unrolled", params={"T": 5}, keep_values=True)
    ran = {ev.node: ev for ev in rec.backward}
    for info in rec.leaves.values():
        if info.node is None:
            continue
        into = [(s, slot) for s, d, slot in rec.edges if d == info.node]
        got = [(c.producer, c.slot) for c in info.contributions]
        assert sorted(got) == sorted(into) and len(got) > 0
        assert [c.backward_event for c in info.contributions] == sorted(ran[p].index for p, _ in got)


def test_shapes_only_numbers_snapshots_as_shape_only_one_by_one():
    described = [((2, 3), torch.float32, "cpu", True), None, ((), torch.int64, "cpu", False),
                 ((4,), torch.complex64, "meta", False), ((1, 1), torch.float32, "cpu", False)]
    one, many = TensorStore(False, 0), TensorStore(False, 0)
    one.capture(torch.ones(2)), many.capture(torch.ones(2))  # (a snapshot before: numbering goes on from it)
    expected = [None if m is None else one.shape_only(*m) for m in described]
    got = many.shapes_only(described)
    assert [None if d is None else (d.shape, d.dtype, d.device, d.value, d.requires_grad, d.uid) for d in got] == \
        [None if d is None else (d.shape, d.dtype, d.device, d.value, d.requires_grad, d.uid) for d in expected]
    assert got[3].dtype == "complex64" and got[4].uid == 5
    assert many.shape_only((1,), torch.float32, "cpu", False).uid == one.shape_only((1,), torch.float32, "cpu", False).uid
