"""The helper's passes over the walked graph (kernels/record_graph.cpp) give what the Python passes give."""
from __future__ import annotations

import random

import pytest
import torch

from gradviz.core import fastpath
from gradviz.core.backward_run import walk_graph
from gradviz.core.capture import ForwardCapture
from gradviz.core.recorder import producers_of, topological_order
from gradviz.core.sandbox import Sandbox
from gradviz.core.tensors import TensorStore

from both_paths import recording_text
from graph_reference import threaded_half


def _random_dag(seed: int, n: int) -> list[tuple[int, int, int]]:
    """Edges (consumer, producer, slot) of a random graph where every edge goes to a higher id,
    with repeated edges (one node in two slots) and nodes that nothing consumes."""
    rng = random.Random(seed)
    edges = []
    for s in range(n - 1):
        for slot in range(rng.randint(0, 3)):
            edges.append((s, rng.randint(s + 1, n - 1), slot))
    # in an order that is not by consumer, as a different walk could give
    rng.shuffle(edges)
    return edges


def _model():
    """A graph with shared nodes, a leaf used twice, a part made in another thread and an in-place op."""
    torch.manual_seed(0)
    w = torch.randn(4, 3, requires_grad=True)
    b = threaded_half(w)
    c = b.clone()
    c.mul_(b)
    h = c
    for _ in range(4):
        h = torch.tanh(h * b + c) * h
    return (h * h).sum()


@pytest.mark.parametrize("seed,n", [(0, 1), (1, 2), (2, 30), (3, 500)])
def test_order_is_producers_of_and_topological_order(helper, seed, n):
    edges = _random_dag(seed, n)
    inputs_of, topo = helper.order(n, edges)
    assert inputs_of == producers_of(n, edges)
    assert topo == topological_order(n, edges)
    assert sorted(topo) == list(range(n))


def test_order_of_a_walked_graph(helper):
    loss = _model()
    nodes, fn_ids, edges, fns = walk_graph(loss.grad_fn, 1000, None)
    inputs_of, topo = helper.order(len(fns), edges)
    assert len(fns) > 20
    assert inputs_of == producers_of(len(fns), edges)
    assert topo == topological_order(len(fns), edges)


def test_order_refuses_an_edge_past_the_nodes(helper):
    with pytest.raises(IndexError):
        helper.order(2, [(0, 2, 0)])


def test_unseen_nodes_and_graph_roots_are_the_python_ones(helper):
    cap = ForwardCapture(TensorStore(False, 1 << 20))
    with Sandbox(cap):
        loss = _model()
    nodes, fn_ids, edges, fns = walk_graph(loss.grad_fn, 1000, None)
    inputs_of = producers_of(len(fns), edges)
    leaf_ids = {id(t) for t in cap.leaf_seen}
    flags = helper.explained(inputs_of, fn_ids, cap.seen_ops)
    assert flags == cap._explained(len(fns), fn_ids, inputs_of)
    assert 0 < flags.count(0) < len(fns)  # the other thread's nodes are not explained, the rest are
    compiled = cap.unseen_nodes(fns, leaf_ids, fn_ids, inputs_of)
    roots = cap.graph_roots()
    with fastpath.python_only():
        python = cap.unseen_nodes(fns, leaf_ids, fn_ids, inputs_of)
        python_roots = cap.graph_roots()
    assert compiled == python
    assert sorted(nodes[i].name for i in compiled) == ["MmBackward0", "TanhBackward0"]
    assert len(roots) == len(python_roots) > len(cap.events) and all(a is b for a, b in zip(roots, python_roots))


def test_grad_fns_of_parameters_subclasses_and_leaves(helper):
    class Tagged(torch.Tensor):
        pass

    p = torch.nn.Parameter(torch.randn(3))
    t = (p * 2).as_subclass(Tagged)
    x = torch.randn(3)
    y = p + 1
    pairs = [([p, x, y], [t]), ((t, p), (y,)), [[x], [y]]]  # (a pair may be any sequence of two)
    expected = [y.grad_fn, t.grad_fn, t.grad_fn, y.grad_fn, y.grad_fn]
    got = helper.grad_fns(pairs)
    assert len(got) == 5 and all(a is b for a, b in zip(got, expected))
    with pytest.raises(TypeError):
        helper.grad_fns([([p], [y], [t])])


class _Tagged(torch.Tensor):
    pass


def _inputs_of_every_kind():
    """Inputs that need no grad (one used twice, views of a named one, a subclass), Parameters,
    a leaf the user names, ops inside a composite op, and an op whose output needs no grad."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 3)
    xs = torch.randn(4, 3)
    c = torch.randn(3)
    w = torch.randn(3, requires_grad=True)
    tagged = torch.randn(3).as_subclass(_Tagged)
    h = w
    for t in range(4):
        h = torch.tanh(lin(xs[t] * c + h)) * c + tagged
    side = (c * 2).sum()  # needs no grad: no node
    loss = torch.nn.functional.mse_loss(h, xs[0]) + side
    return loss, {"w": w, "xs": xs}


@pytest.mark.parametrize("keep_values", [True, False])
def test_inputs_names_and_events_of_every_kind_record_the_same(helper, keep_values):
    from gradviz.core import record

    compiled = record(_inputs_of_every_kind, keep_values=keep_values)
    with fastpath.python_only():
        python = record(_inputs_of_every_kind, keep_values=keep_values)
    assert recording_text(compiled) == recording_text(python)
    inputs = [n for n in compiled.nodes if n.kind == "input"]
    assert "xs[0]" in {n.leaf for n in inputs} and len(inputs) >= 6
    assert all(ev.input_nodes for ev in compiled.forward)
    assert [ev.input_nodes for ev in compiled.forward] == [ev.input_nodes for ev in python.forward]
