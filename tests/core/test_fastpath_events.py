"""The forward capture's events logged by the helper (``kernels/record_events.cpp``) are those the
Python path logs: events, snapshots and their uids, sources and their order, module uses, the
limits (max_nodes, cancel) and the capture's own lists."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from gradviz.core import Cancelled, fastpath, record
from gradviz.core.capture import ForwardCapture
from gradviz.core.errors import GraphTooLarge
from gradviz.core.sandbox import Sandbox
from gradviz.core.tensors import TensorStore

from both_paths import record_both
from test_fastpath import _same

# sources first used inside a list, a tuple and a keyword argument, a source used twice by its
# first op, a Parameter, a source that needs no grad (a view of a batch, as xs[t]), integer and
# float64 sources, an op that joins no graph (a comparison), a tensor changed in place and used
# again (a new version: a new snapshot), tuple results, a custom Function, modules used twice
EVENTS = '''
import torch


class Twice(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        return 2 * g


def build():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 4)
    p = torch.nn.Parameter(torch.randn(4))
    a = torch.randn(3, 4, requires_grad=True)
    b = torch.randn(3, 4, requires_grad=True)
    c = torch.randn(3, 4, requires_grad=True)
    d = torch.randn(3, 4, requires_grad=True)
    xs = torch.randn(5, 3, 4)
    idx = torch.tensor([2, 0, 1])
    w64 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    h = torch.cat([a, xs[0]], dim=0)[:3]
    h = h + torch.stack((b, xs[1])).sum(0)
    h = torch.add(h, other=c, alpha=2)
    h = h * (d * d)
    mask = h > 0
    for t in range(2, 5):
        h = lin(torch.tanh(h + xs[t])) * p
    h = h[idx]
    g = h.clone()
    g.mul_(2)
    h = h + g + Twice.apply(g)
    values, _ = torch.max(h, dim=1)
    h = h + torch.where(mask, h, -h) + (w64.float() * p)
    return h.sum() + values.sum() + lin(h).pow(2).mean(), {"a": a, "b": b, "c": c, "d": d, "p": p}
'''


@pytest.fixture()
def script(tmp_path):
    path = tmp_path / "events.py"
    path.write_text(textwrap.dedent(EVENTS))
    return str(path)


@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
def test_events_record_the_same(helper, script, keep_values):
    compiled, python = record_both(script, keep_values=keep_values)
    _same(compiled, python)
    ops = [e.op for e in compiled.forward]
    assert {"cat", "stack", "add", "Twice", "max", "mul_", "where"} <= set(ops), ops


def test_events_past_the_memory_budget_record_the_same(helper, script):
    _same(*record_both(script, budget_bytes=600))


def _calls(fn, name: str) -> int:
    """How many times a Python function named `name` ran during ``fn()`` (a profile hook counts them)."""
    count = [0]

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name == name:
            count[0] += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count[0]


def _rnn(steps=6):
    torch.manual_seed(0)
    cell = torch.nn.RNNCell(3, 5)
    xs = torch.randn(steps, 2, 3)
    h = torch.zeros(2, 5)
    for t in range(steps):
        h = cell(xs[t], h)
    return h.sum(), {}


def test_the_helper_logs_the_common_events_itself(helper):
    # (a test that the comparisons above compare two paths: the RNN's events never reach _log_op)
    compiled = _calls(lambda: record(_rnn, keep_values=False), "_log_op")
    with fastpath.python_only():
        python = _calls(lambda: record(_rnn, keep_values=False), "_log_op")
    assert compiled == 0 and python == 7


def _capture(store, on_leaf=None, fn=_rnn):
    cap = ForwardCapture(store, on_leaf=on_leaf)
    with Sandbox(cap):
        loss, _ = fn()
    return cap, loss


def _state(cap) -> tuple:
    """What a capture holds, by position and number (its tensors by the order they were seen)."""
    order = {id(t): i for i, t in enumerate(cap.leaf_seen)}
    fns: dict = {}
    number = lambda fn: fns.setdefault(fn, len(fns))  # noqa: E731
    events = [(e.index, e.op, e.inplace, e.source, [d.uid for d in e.inputs], [d.uid for d in e.outputs])
              for e in cap.events]
    return (events, list(order.values()), [d.uid for d in cap.source_data],
            [([number(f) for f in made], [number(f) for f in used]) for made, used in cap.seen_ops],
            sorted((number(fn), i) for fn, i in cap.grad_fn_event.items()),
            [(type(mu[0]).__name__, mu[1]) if mu is not None else None for mu in cap.event_module],
            [(len(i), len(o)) for i, o in cap.event_tensors])


@pytest.mark.parametrize("with_store", [True, False], ids=["store", "no-store"])
def test_on_leaf_and_no_store_capture_the_same(helper, with_store):
    # (with on_leaf, a new source sends the op to Python; without a store nothing is logged)
    states = []
    for python in (False, True):
        seen = []
        with fastpath.python_only() if python else _nothing():
            cap, _ = _capture(TensorStore(False) if with_store else None, lambda t, i: seen.append(i))
            plain, _ = _capture(TensorStore(False) if with_store else None)
        states.append((_state(cap), _state(plain), seen))
    assert states[0] == states[1]
    assert states[0][2] == list(range(len(states[0][0][1]))) and len(states[0][2]) == 6 + 4 + 1  # xs[t], weights, h0


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("limit", [1, 5, 17])
def test_max_nodes_stops_at_the_same_op(helper, limit):
    messages, counts = [], []
    for python in (False, True):
        polls = []

        def cancel():
            polls.append(1)
            return False

        with fastpath.python_only() if python else _nothing():
            with pytest.raises(GraphTooLarge) as info:
                record(_rnn, max_nodes=limit, cancel=cancel)
        messages.append(str(info.value))
        counts.append(len(polls))
    assert messages[0] == messages[1] and f"more than {limit:,}" in messages[0]
    assert counts[0] == counts[1] > 0


@pytest.mark.parametrize("after", [1, 4])
def test_cancel_in_the_forward_stops_at_the_same_op(helper, after):
    counts = []
    for python in (False, True):
        polls = []

        def cancel():
            polls.append(1)
            return len(polls) >= after

        with fastpath.python_only() if python else _nothing():
            with pytest.raises(Cancelled):
                record(_rnn, cancel=cancel)
        counts.append(len(polls))
    assert counts == [after, after]


def test_a_cancel_that_raises_in_the_forward_leaves_depth_at_zero(helper):
    def cancel():
        raise KeyboardInterrupt

    cap = ForwardCapture(TensorStore(False), cancel=cancel)
    with pytest.raises(KeyboardInterrupt):
        with Sandbox(cap):
            _rnn()
    assert cap._depth == 0 and len(cap.events) == 0 and len(cap.source_data) == 6  # (the first op's sources: numbered before it is logged)


def _views(steps=3):
    # float32, float64, int64 and bool results; a view with the memory, shape and strides of its
    # source (one snapshot by storage), a transposed one (not row-major), a zero-dim one, a slice
    torch.manual_seed(0)
    a = torch.randn(3, 4, requires_grad=True)
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    h = a * 2
    for _ in range(steps):
        h = torch.tanh(h[:] + h)
        h = (h.t() * 1.5).t() + h[1:2]
    v = (h.double() * w).sum(0)
    n = (h > 0).long() + 1
    return (v.sum() + h.sum() * n.sum() + (h[0, 0] * 3) + (h.t()[1] * (h[:, 1] > 0)).sum()), {"a": a}


def test_values_snapshots_made_in_the_helper_are_capture_s(helper):
    # (the common snapshot with values is made in C++: no call of TensorStore.capture, the same
    # snapshots, numbers, values, byte count and table as capture's)
    def state(store, cap):
        values = [(d.uid, d.shape, d.dtype, d.device, d.requires_grad, d.stats,
                   None if d.value is None else (d.value.dtype.str, d.value.shape, d.value.tobytes(),
                                                 d.value.flags.c_contiguous, d.value.flags.writeable))
                  for e in cap.events for d in e.inputs + e.outputs]
        table = sorted((len(k), v[0].uid) for k, v in store._seen.items())  # (by id, by storage)
        return (_state(cap), values, store.bytes_kept, store._count, store.dropped_count, len(store._singles),
                table)

    for fn in (_rnn, _views):
        states, calls = [], []
        for python in (False, True):
            with fastpath.python_only() if python else _nothing():
                calls.append(_calls(lambda: _capture(TensorStore(True), fn=fn), "capture"))
                cap, _ = _capture(store := TensorStore(True), fn=fn)
                states.append(state(store, cap))
        assert states[0] == states[1]
        assert calls[1] > 0 and calls[0] < calls[1]
        if fn is _rnn:
            assert calls[0] == 0  # (every snapshot of its forward made in C++)


def test_events_and_snapshots_made_in_the_helper_are_instances_as_init_makes_them(helper):
    # (made without running __init__: the same attributes, in the same order, the same sizes;
    # each event's input_nodes a list of its own)
    made = []
    for python in (False, True):
        with fastpath.python_only() if python else _nothing():
            cap, _ = _capture(TensorStore(True), fn=_rnn)
            ev = cap.events[2]
            made.append([(list(vars(o).items()), sys.getsizeof(vars(o))) for o in [ev] + ev.inputs + ev.outputs])
            assert ev.input_nodes == [] and ev.input_nodes is not cap.events[3].input_nodes
    same = lambda a, b: [(list(k for k, _ in items), size) for items, size in a] == \
        [(list(k for k, _ in items), size) for items, size in b]  # noqa: E731
    assert same(made[0], made[1])
    assert [type(v).__name__ for v in vars(cap.events[2]).values()] == \
        ["int", "str", "list", "list", "str", "NoneType", "NoneType", "NoneType", "bool", "list"]
