"""GraphKeeper's free order (core/teardown.py): every node once, each before the nodes it consumed.

The crash it prevents (a recursive free of a deep graph) is tested in a subprocess by
tests/core/test_scale.py; here: the order on graphs with parts the walk from the loss does not
reach, and that releasing frees the nodes then and not before.
"""
from __future__ import annotations

import gc
import weakref

import pytest
import torch

from gradviz.core import record, teardown
from gradviz.core.teardown import GraphKeeper, consumers_first


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


def chain_with_dead_branches():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 3)
    h = torch.randn(2, 3)
    dead = []
    for k in range(5):
        h = torch.tanh(lin(h))
        if k % 2:
            # a branch the loss does not use: three nodes, one consuming another twice
            d = h * 3
            dead.append((d * d).sin())
    return h.pow(2).mean(), lin


def custom_and_before():
    # made before recording: nodes no op of the recording made (and that its walk does not reach)
    w = torch.randn(3, requires_grad=True)
    before = (w * 2).exp()

    def model():
        x = torch.randn(3, requires_grad=True)
        y = Square.apply(x) + before
        Square.apply(before + 1)  # a custom node and the graph from before, both unreached
        return (y * y).sum(), {"x": x}

    return model


def _reachable(nodes) -> set:
    seen, stack = set(), [n for n in nodes if n is not None]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack += [nxt for nxt, _ in n.next_functions if nxt is not None]
    return seen


@pytest.mark.parametrize("model", [lambda: chain_with_dead_branches, custom_and_before])
def test_the_keepers_order_holds_every_node_before_its_producers(monkeypatch, model):
    checked = []
    real = teardown.consumers_first

    def check(roots, walked=None):
        roots = list(roots)
        order = real(roots, walked)
        fns = walked[0] if walked is not None else []
        assert len(order) == len(set(order))
        assert set(order) == _reachable(roots) | set(fns)
        place = {n: i for i, n in enumerate(order)}
        for n in order:
            for nxt, _ in n.next_functions:
                if nxt is not None:
                    assert place[n] < place[nxt]
        checked.append((len(order), len(fns)))
        return order

    monkeypatch.setattr(teardown, "consumers_first", check)
    record(model(), keep_values=False)
    (n_order, n_walked), = checked[:1]
    assert n_order > n_walked  # (nodes outside the walked graph were placed too)


def test_release_frees_the_nodes_then_and_not_before():
    x = torch.randn(3, requires_grad=True)
    y = Square.apply(x)
    z = Square.apply(y)
    alive = [weakref.ref(y.grad_fn), weakref.ref(z.grad_fn)]
    keeper = GraphKeeper()
    held = [z]
    keeper.hold(held, lambda held=held: [t.grad_fn for t in held])
    del x, y, z, held
    gc.collect()
    assert all(a() is not None for a in alive)  # (held by the keeper only)
    keeper.release()
    assert all(a() is None for a in alive)


def test_an_order_that_leaves_walked_nodes_out_keeps_them_last():
    a = torch.randn(2, requires_grad=True)
    b = (a * 2).exp()
    fns = [b.grad_fn, b.grad_fn.next_functions[0][0]]
    order = consumers_first([], (fns, [0]))
    assert order == fns
