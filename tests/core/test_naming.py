"""Names of leaves and modules: parameter names as ``named_parameters`` gives them, leaf snapshots without values."""
import pytest
import torch

from gradviz.core import record
from gradviz.core.buildresult import BuildResult
from gradviz.core.recorder import _collect_leaves
from gradviz.core.tensors import TensorStore


class _Net(torch.nn.Module):
    """Tied weights, a submodule registered under two paths, a None bias, nested modules."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = torch.nn.Linear(3, 3, bias=False)
        self.b.weight = self.a.weight
        self.blocks = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Sequential(torch.nn.Linear(3, 3)))
        self.shared = self.blocks[0]
        self.scale = torch.nn.Parameter(torch.ones(3))

    def forward(self, x):
        return self.blocks(self.b(self.a(x)) * self.scale) + self.shared(x)


def _reference_names(net, outside, user):
    """Parameter names as the recorder gave them by ``named_parameters`` (user's names first,
    then the returned module's, then the outside modules' class names, numbered)."""
    names = {}
    for name, t in user.items():
        names.setdefault(t, name)
    for pname, p in net.named_parameters():
        names.setdefault(p, pname)
    for i, m in enumerate(outside):
        for pname, p in m.named_parameters(recurse=False):
            names.setdefault(p, f"Linear{i + 1}.{pname}")
    return {name: p for p, name in names.items()}


@pytest.mark.parametrize("keep_values", [True, False])
def test_parameter_names_are_those_of_named_parameters(keep_values):
    torch.manual_seed(0)
    net = _Net()
    outside = [torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)]
    user = {"my_scale": net.scale}

    def build():
        x = torch.randn(2, 3)
        return BuildResult(outside[1](outside[0](net(x))).sum(), dict(user), net)

    rec = record(build, keep_values=keep_values)
    want = _reference_names(net, outside, user)
    got = {k: v for k, v in rec.leaves.items() if not k.startswith("input")}
    assert list(got) == list(want)
    assert "b.weight" not in got and "shared.weight" not in got and "a.weight" in got
    for name, p in want.items():
        assert got[name].tensor.shape == tuple(p.shape)
        assert got[name].grad is not None


def _leaf_tensors():
    torch.manual_seed(0)
    w = torch.randn(2, 3, requires_grad=True)
    w.grad = torch.randn(2, 3)
    v = torch.randn(4, dtype=torch.float64, requires_grad=True)
    v.grad = torch.randn(4, dtype=torch.float64, requires_grad=True)  # (as after create_graph)
    x = torch.arange(5)
    u = torch.zeros(1, requires_grad=True)
    return {"w": w, "v": v, "x": x, "u": u}, {"w": torch.ones(2, 3), "v": None, "x": None, "u": None}


@pytest.mark.parametrize("keep_values,budget", [(False, 1 << 20), (True, 1 << 20), (True, 100)])
def test_leaf_snapshots_are_the_captures_one_by_one(keep_values, budget):
    leaf_tensors, initial = _leaf_tensors()
    node_of = {"w": 3, "v": 5, "u": 8}
    store = TensorStore(keep_values=keep_values, budget_bytes=budget)
    store.last_uid = 10
    leaves = _collect_leaves(leaf_tensors, initial, node_of, [], [], store)

    # what capturing each tensor in turn gives: the tensor, its earlier gradient, its .grad
    ref = TensorStore(keep_values=keep_values, budget_bytes=budget)
    ref.last_uid = 10

    def snap(t):
        return None if t is None else ref.capture(t)

    def fields(d):
        if d is None:
            return None
        value = None if d.value is None else (d.value.dtype, d.value.tolist())
        return d.shape, d.dtype, d.device, value, d.stats, d.requires_grad, d.uid

    assert list(leaves) == list(leaf_tensors)
    for name, t in leaf_tensors.items():
        tensor = snap(t.detach())
        tensor.requires_grad = bool(t.requires_grad)
        initial_grad = snap(initial[name])
        grad = snap(None if t.grad is None else t.grad.detach())
        info = leaves[name]
        assert (info.name, info.node, info.requires_grad) == (name, node_of.get(name), bool(t.requires_grad))
        assert fields(info.tensor) == fields(tensor)
        assert fields(info.initial_grad) == fields(initial_grad)
        assert fields(info.grad) == fields(grad)
        assert info.contributions == []
    assert store.last_uid == ref.last_uid
    assert (store.bytes_kept, store.dropped_count, store.dropped_bytes) == (
        ref.bytes_kept, ref.dropped_count, ref.dropped_bytes)
    if keep_values and budget == 100:
        assert store.dropped_count and store.bytes_kept  # (some values kept, some past the budget)
