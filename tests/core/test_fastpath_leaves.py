"""The helper's passes over the leaves (kernels/record_leaves.cpp, and the naming and input scans of
kernels/record_graph.cpp) record what the Python passes record."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from gradviz.core import fastpath, record
from gradviz.core.errors import NonFiniteError
from gradviz.core.recorder import _collect_leaves
from gradviz.core.recording import BackwardEvent, Contribution, LeafInfo
from gradviz.core.tensors import TensorData, TensorStore

from both_paths import record_both, recording_text


# ---------------------------------------------------------------------------------------------
# models

def tied():
    """Two Linear layers sharing one weight (one leaf fed by two AccumulateGrad paths' producers)."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    b.weight = a.weight
    net = torch.nn.Sequential(a, torch.nn.Tanh(), b)
    return net(torch.randn(3, 4)).pow(2).sum(), net


def broadcast():
    """Biases broadcast in the forward pass (the engine's nodes send them summed down already)."""
    torch.manual_seed(1)
    w = torch.randn(3, 5, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    c = torch.randn(3, 1, requires_grad=True)
    x = torch.randn(2, 3, 3)
    y = torch.tanh(x @ w + b) * c.t().sum() + c
    return y.sum(), {"w": w, "b": b, "c": c}


def many_uses():
    """One Linear applied many times: its two leaves take one contribution per use."""
    torch.manual_seed(2)
    lin = torch.nn.Linear(6, 6)
    h = torch.randn(2, 6)
    for _ in range(40):
        h = torch.tanh(lin(h))
    return h.pow(2).mean(), lin


def named():
    """User-named leaves, one with a gradient before backward, one unused, an integer tensor, a
    named tensor that is no leaf, an input that needs no grad and a view of a named tensor."""
    torch.manual_seed(3)
    x = torch.randn(4, requires_grad=True)
    x.grad = torch.full((4,), 0.5)
    unused = torch.randn(2, requires_grad=True)
    idx = torch.tensor([0, 2])
    xs = torch.randn(3, 4)
    mid = x * 2
    y = (mid * xs[1]).sum() + x[idx].sum() + (xs[2] * x).sum()
    return y, {"x": x, "unused": unused, "idx": idx, "mid": mid, "xs": xs}


def half_and_double():
    """Leaves of float16, float64 and bfloat16, and a leaf whose gradient is a transposed tensor."""
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    h = torch.randn(4, dtype=torch.float16, requires_grad=True)
    bf = torch.randn(4, dtype=torch.bfloat16, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    y = (w * t.t().double()).sum() + h.float().sum() + bf.float().pow(2).sum()
    return y, {"w": w, "h": h, "bf": bf, "t": t}


MODELS = [tied, broadcast, many_uses, named, half_and_double]


def _leaf_rows(rec) -> list:
    """Everything of the leaves and their contributions, the snapshots' numbers included."""
    def snap(d):
        return None if d is None else (d.shape, d.dtype, d.device, d.requires_grad, d.uid, d.kept)

    rows = []
    for name, info in rec.leaves.items():
        rows.append((name, info.name, info.node, info.requires_grad, snap(info.tensor), snap(info.grad),
                     snap(info.initial_grad)))
        for c in info.contributions:
            assert c.leaf is info
            rows.append((c.producer, c.slot, c.backward_event, c.reduced_from, snap(c.value)))
    return rows


@pytest.mark.parametrize("budget", [None, 64], ids=["in-budget", "past-budget"])
@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_leaves_contributions_and_inputs_are_the_python_ones(helper, model, keep_values, budget):
    kw = {} if budget is None else {"budget_bytes": budget}
    compiled, python = record_both(model, keep_values=keep_values, **kw)
    assert _leaf_rows(compiled) == _leaf_rows(python)
    assert compiled.input_edges == python.input_edges
    assert [ev.input_nodes for ev in compiled.forward] == [ev.input_nodes for ev in python.forward]
    assert compiled.leaf_order == python.leaf_order
    assert recording_text(compiled) == recording_text(python)
    assert any(info.contributions for info in compiled.leaves.values())


def test_what_the_models_exercise(helper):
    """The models above hold what the comparisons are for (else they would compare little)."""
    rec = record(broadcast, keep_values=True)
    assert len(rec.leaves["b"].contributions) == 1 and len(rec.leaves["c"].contributions) == 2
    rec = record(many_uses, keep_values=False)
    assert sorted(len(info.contributions) for info in rec.leaves.values()) == [40, 40]
    rec = record(tied, keep_values=False)
    assert len(rec.leaves["0.weight"].contributions) == 2 and "2.weight" not in rec.leaves
    rec = record(named, keep_values=False)
    assert rec.leaves["x"].initial_grad is not None and rec.leaves["unused"].grad is None
    assert not rec.leaves["idx"].requires_grad and rec.input_edges
    assert "xs[0]" in rec.leaf_order


@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
def test_leaves_and_contributions_made_in_cpp_are_the_dataclasses_own(helper, keep_values):
    """LeafInfo and Contribution instances with their fields set in the class's order (the layout
    __init__ gives), a contributions list of each leaf's own."""
    rec = record(broadcast, keep_values=keep_values)
    leaf_fields = [f.name for f in dataclasses.fields(LeafInfo)]
    fields = [f.name for f in dataclasses.fields(Contribution)]
    lists = set()
    for info in rec.leaves.values():
        assert type(info) is LeafInfo and list(vars(info)) == leaf_fields
        lists.add(id(info.contributions))
        for c in info.contributions:
            assert type(c) is Contribution and list(vars(c)) == fields
    assert len(lists) == len(rec.leaves)


def _nan_grad():
    w = torch.randn(3, requires_grad=True)
    v = torch.tensor([1.0, 0.0, 2.0], requires_grad=True)
    y = (w * w).sum() + (torch.sqrt(v) * 0 + v).sum() + (v.abs() ** 0.5).sum()
    return y, {"w": w, "v": v}


def _inf_half():
    h = torch.tensor([1.0, 2.0], dtype=torch.float16, requires_grad=True)
    w = torch.randn(2, requires_grad=True)
    return (h.float() * 1e5).sum() + w.sum(), {"w": w, "h": h}  # (h's gradient, 1e5, past float16)


@pytest.mark.parametrize("model", [_nan_grad, _inf_half])
def test_a_gradient_that_is_not_finite_is_named_alike(helper, model):
    errors = []
    for python in (False, True):
        with pytest.raises(NonFiniteError) as err:
            if python:
                with fastpath.python_only():
                    record(model, keep_values=False)
            else:
                record(model, keep_values=False)
        errors.append(str(err.value))
    assert errors[0] == errors[1] and ".grad holds NaN or Inf" in errors[0]


def test_grads_finite_reads_what_it_can_and_hands_back_the_rest(helper):
    a = torch.zeros(3, requires_grad=True)
    a.grad = torch.ones(3)
    b = torch.zeros(4, requires_grad=True)
    b.grad = torch.zeros(1).expand(4)  # (overlapping memory: left to Python)
    c = torch.zeros(2, dtype=torch.complex64, requires_grad=True)
    c.grad = torch.full((2,), float("nan"), dtype=torch.complex64)  # (not floating: not looked at)
    d = torch.zeros(2, requires_grad=True)  # (no gradient)
    assert helper.grads_finite([a, b, c, d]) == (True, [1])
    a.grad[1] = float("inf")
    assert helper.grads_finite([a, b, c, d])[0] is False
    e = torch.zeros(300, dtype=torch.float16, requires_grad=True)
    e.grad = torch.zeros(300, dtype=torch.float16)
    assert helper.grads_finite([e]) == (True, [])
    e.grad[299] = float("nan")
    assert helper.grads_finite([e]) == (False, [])
    assert helper.grads_finite([torch.nn.Parameter(torch.zeros(2)) * 2]) is None  # (a grad_fn: Python's)


@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
def test_broadcast_gradients_are_summed_down_alike(helper, keep_values):
    """Gradients sent in a broadcast shape (as a custom backward or an older engine sends them) are
    summed to the leaf's shape, with reduced_from; a slot past the producer's gradients, a None
    gradient and an edge into no leaf add nothing."""
    def run():
        torch.manual_seed(4)
        b = torch.randn(5, requires_grad=True)
        b.grad = torch.randn(5)
        c = torch.randn(3, 1, requires_grad=True)
        leaf_tensors = {"b": b, "c": c}
        store = TensorStore(keep_values=keep_values, budget_bytes=1 << 20)

        def data(*shape):
            return store.capture(torch.randn(*shape)) if keep_values else TensorData(shape, "float32", "cpu")

        edges = [(0, 1, 0), (0, 4, 1), (1, 4, 0), (1, 4, 1), (2, 5, 0), (2, 4, 1), (3, 5, 0), (3, 5, 5)]
        backward = [BackwardEvent(0, 0, [], [data(2, 3, 5), data(2, 5)]),
                    BackwardEvent(1, 2, [], [data(3, 4), None]),
                    BackwardEvent(2, 1, [], [data(5), data(1, 5)]),
                    BackwardEvent(3, 3, [], [data(3, 1)])]
        return _collect_leaves(leaf_tensors, {"b": b.grad.clone(), "c": None}, {"b": 4, "c": 5}, edges, backward,
                               store)

    def rows(leaves):
        out = []
        for info in leaves.values():
            for c in info.contributions:
                value = None if c.value.value is None else c.value.value.tolist()
                out.append((info.name, c.producer, c.slot, c.backward_event, c.reduced_from, c.value.shape, value,
                            c.leaf is info))
        return out

    compiled = rows(run())
    with fastpath.python_only():
        python = rows(run())
    assert compiled == python
    assert [r[:6] for r in compiled] == [
        ("b", 0, 1, 0, (2, 5), (5,)), ("b", 1, 0, 2, None, (5,)), ("b", 1, 1, 2, (1, 5), (5,)),
        ("c", 2, 0, 1, (3, 4), (3, 1)), ("c", 3, 0, 3, None, (3, 1))]


@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
def test_cuda_leaves_record_the_same(helper, keep_values):
    """CUDA leaves: their snapshots' device names and their gradients' NaN/Inf test (left to Python's
    joined test by the helper) as in the Python path."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")

    def build():
        torch.manual_seed(5)
        w = torch.randn(3, 4, device="cuda", requires_grad=True)
        b = torch.randn(4, device="cuda", requires_grad=True)
        return torch.tanh(torch.randn(2, 3, device="cuda") @ w + b).sum(), {"w": w, "b": b}

    compiled, python = record_both(build, keep_values=keep_values)
    assert _leaf_rows(compiled) == _leaf_rows(python)
    assert compiled.leaves["w"].tensor.device.startswith("cuda")
    assert recording_text(compiled) == recording_text(python)

    def bad():
        x = torch.tensor([0.0, 1.0], device="cuda", requires_grad=True)
        return torch.sqrt(x).sum(), {"x": x}

    with pytest.raises(NonFiniteError, match="x.grad holds NaN or Inf"):
        record(bad, keep_values=False)


def test_the_helper_takes_the_leaves_of_plain_models(helper, monkeypatch):
    """Where every leaf is a plain tensor the helper makes the snapshots and tests the gradients (the
    comparisons above then compare two paths, not the Python one twice); a named tensor with a
    grad_fn leaves both to Python."""
    from gradviz.core import recorder

    def python_called(*args, **kw):
        raise AssertionError("the Python path ran")

    monkeypatch.setattr(recorder, "_leaves_without_values", python_called)
    monkeypatch.setattr(recorder, "_all_finite", python_called)
    for model in (tied, broadcast, many_uses, half_and_double):
        record(model, keep_values=False)
    with pytest.raises(AssertionError, match="the Python path ran"):
        record(named, keep_values=False)
