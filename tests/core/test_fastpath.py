"""The recorder's compiled helper (walk, hooks and copies in C++) records exactly what its Python path does."""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from gradviz.core import Cancelled, fastpath, record
from gradviz.core.backward_run import walk_graph
from gradviz.core.errors import GraphTooLarge, InplaceModifiedError
from gradviz.core.saved import plain_value, read_saved, saved_attribute_names
from gradviz.core.recording import BackwardEvent
from gradviz.core.tensors import TensorData

from both_paths import record_both, recording_text


SCRIPTS = Path(__file__).parent / "scripts"

# a custom Function (saved tensors, a gradient that is a module-level tensor), a node post hook
# and a tensor hook of the script's that change gradients, a module backward hook, an in-place op
HOOKS_AND_FUNCTIONS = '''
import torch

SHARED = torch.ones(3)


class Twice(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return 2 * x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return SHARED, 2 * g * x


def build():
    lin = torch.nn.Linear(3, 3)
    lin.register_full_backward_hook(lambda m, gi, go: None)
    w = torch.randn(3, requires_grad=True)
    x = torch.randn(3, requires_grad=True)
    h = lin(Twice.apply(x, w))
    h.grad_fn.register_hook(lambda gi, go: tuple(None if g is None else g * 0.5 for g in gi))
    h.register_hook(lambda g: g * 3)
    y = h.clone()
    y.mul_(torch.tanh(h))
    return (y * w).sum(), {"w": w, "x": x}
'''


# saved values of every kind read_saved turns into plain Python or snapshots: a Parameter saved as
# it is, index lists with None for ':', a list of tensors, int64 dims torch hands back as unsigned
# (dim=-1, in an int and in a tuple), an empty tuple, bools, floats, a complex Scalar, str, None,
# a custom Function's saved_tensors (with a None), a tensor subclass saved as it is
SAVED_VALUES = '''
import torch
import torch.nn.functional as F


class Scaled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k):
        ctx.save_for_backward(x, None)
        ctx.k = k
        return x * k

    @staticmethod
    def backward(ctx, g):
        x, _ = ctx.saved_tensors
        return g * ctx.k, None


class Tagged(torch.Tensor):
    pass


def build():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(3, 4))
    x = torch.randn(3, 4, requires_grad=True)
    idx = torch.tensor([0, 2])
    c = torch.randn(3, 4, dtype=torch.cfloat, requires_grad=True)
    t = torch.randn(3, 4).as_subclass(Tagged).requires_grad_()
    h = x * w
    h = h[:, idx].sum(-1, keepdim=True) + h[idx, None].mean()
    h = h + torch.linalg.multi_dot([x, w.t(), x]).softmax(-1)
    h = h + F.gelu(x, approximate="tanh") + F.leaky_relu(x, 0.2) + x.abs().pow(2.5)
    h = h + torch.clamp(x, min=-0.5) + x.div(3, rounding_mode="floor") + F.layer_norm(x, (4,))
    h = h + torch.norm(x, p=3, dim=-1, keepdim=True) + x.sum(dim=())
    h = h + torch.add(c, c, alpha=1j).abs() + Scaled.apply(x, 3.0) + (t * t).as_subclass(torch.Tensor)
    h = h + x.new_zeros(3, 4).index_put((idx,), x[0, :2].sum() * torch.ones(2, 4))
    return h.pow(2).mean(), {"x": x, "w": w, "c": c, "t": t}
'''

# a tensor saved by tanh's node, then changed in place before backward
INPLACE_AFTER_SAVE = '''
import torch


def build():
    x = torch.randn(3, requires_grad=True)
    y = torch.tanh(x)
    z = y * 2
    y.add_(1)
    return z.sum() + y.sum(), {"x": x}
'''


def _uids(rec) -> list:
    out = []
    for ev in rec.backward:
        out += [(t.uid, t.requires_grad) if t is not None else None for t in ev.grad_outputs + ev.grad_inputs]
    for info in rec.leaves.values():
        out += [c.value.uid if c.value is not None else None for c in info.contributions]
    return out


def _same(compiled, python) -> None:
    assert [(e.index, e.node) for e in compiled.backward] == [(e.index, e.node) for e in python.backward]
    assert _uids(compiled) == _uids(python)
    assert recording_text(compiled) == recording_text(python)


TARGETS = [
    ("mlp", {}),
    ("rnn-unrolled", {"T": 12}),
    ("repeated-layer", {"k": 5, "n": 3, "tanh": True}),
    ("linear-function", {}),
    ("sum-xy-plus-z", {}),
    (str(SCRIPTS / "retain_graph.py"), None),
    (str(SCRIPTS / "threads_pool.py"), None),
    (str(SCRIPTS / "seen_inplace.py"), None),
    (str(SCRIPTS / "complex_function.py"), None),
    (str(SCRIPTS / "mixed_dtypes.py"), None),
]


@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
@pytest.mark.parametrize("target,params", TARGETS, ids=[Path(t).stem for t, _ in TARGETS])
def test_compiled_and_python_paths_record_the_same(helper, target, params, keep_values):
    _same(*record_both(target, params=params, keep_values=keep_values))


@pytest.mark.parametrize("budget", [None, 3000], ids=["in-budget", "past-budget"])
@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
def test_events_and_snapshots_made_in_cpp_are_the_dataclasses_own(helper, keep_values, budget):
    """`Hooks.take_events` makes TensorData and BackwardEvent instances as their __init__ would:
    the fields set in the class's order (the same attribute layout), the same numbers and counters."""
    kw = {} if budget is None else {"budget_bytes": budget}
    compiled, python = record_both("rnn-unrolled", params={"T": 6}, keep_values=keep_values, **kw)
    _same(compiled, python)
    assert compiled.dropped == python.dropped
    if keep_values and budget is not None:
        assert compiled.dropped["tensors"] > 0
    data_fields = [f.name for f in dataclasses.fields(TensorData)]
    event_fields = [f.name for f in dataclasses.fields(BackwardEvent)]
    n = 0
    for ev in compiled.backward:
        assert type(ev) is BackwardEvent and list(vars(ev)) == event_fields
        for d in ev.grad_outputs + ev.grad_inputs:
            if d is not None:
                assert type(d) is TensorData and list(vars(d)) == data_fields
                assert type(d.shape) is tuple and all(type(k) is int for k in d.shape)
                n += 1
    assert n > 0


@dataclasses.dataclass
class _MoreFields(BackwardEvent):
    """A BackwardEvent with a field more (and a default): not the fields the helper sets itself."""

    extra: int = 7


@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
def test_take_events_calls_an_event_class_with_other_fields(helper, monkeypatch, keep_values):
    """`Hooks.take_events` sets the fields itself only where the class's fields are the ones it
    names; a class with a field more is called, as the Python path calls it (its __init__ sets
    `extra`: in the instance, not only the class's default)."""
    from gradviz.core import backward_run

    monkeypatch.setattr(backward_run, "BackwardEvent", _MoreFields)
    compiled, python = record_both("rnn-unrolled", params={"T": 4}, keep_values=keep_values)
    _same(compiled, python)
    fields = [f.name for f in dataclasses.fields(_MoreFields)]
    assert fields[-1] == "extra" and compiled.backward
    for ev in compiled.backward:
        assert type(ev) is _MoreFields and list(vars(ev)) == fields and ev.extra == 7


def test_hooks_custom_functions_and_inplace_ops_record_the_same(helper, tmp_path):
    script = tmp_path / "hooks.py"
    script.write_text(textwrap.dedent(HOOKS_AND_FUNCTIONS))
    for keep_values in (True, False):
        compiled, python = record_both(str(script), keep_values=keep_values)
        _same(compiled, python)
    # the script's post hook halved what the Linear node sent on: both paths saw it halved
    assert any(n.kind == "custom" for n in compiled.nodes)


_HELD = torch.ones(3)


class _GivesHeld(torch.autograd.Function):
    """Its backward sends on a tensor the caller still holds (and may change later)."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return _HELD


def test_a_gradient_the_script_still_holds_is_copied_not_shared(helper):
    def build():
        x = torch.randn(3, requires_grad=True)
        return _GivesHeld.apply(x).sum(), {"x": x}

    rec = record(build)
    node = next(n for n in rec.nodes if n.name == "_GivesHeld")
    ev = next(e for e in rec.backward if e.node == node.id)
    assert np.array_equal(ev.grad_inputs[0].value, np.ones(3, dtype=np.float32))
    _HELD.add_(5)  # changed after recording: the snapshot must not change with it
    assert np.array_equal(ev.grad_inputs[0].value, np.ones(3, dtype=np.float32))
    _HELD.sub_(5)


def test_memory_budget_gives_the_same_statistics(helper):
    # (20,000 bytes kept every value of this graph: 2,000 keep about half of them)
    compiled, python = record_both("rnn-unrolled", params={"T": 12}, budget_bytes=2_000)
    assert compiled.dropped["tensors"] > 50
    _same(compiled, python)


# gradients of float16, float32 and float64, transposed ones, ones holding NaN, +-inf and -0.0
NONFINITE_GRADIENTS = '''
import torch


def build():
    torch.manual_seed(0)
    x = torch.tensor([[1.0, -0.0, 4.0], [0.0, 2.0, 9.0]], requires_grad=True)
    d = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 3, dtype=torch.float16, requires_grad=True)
    y = torch.sqrt(x) * torch.tensor([[float("inf"), 1.0, -2.0], [float("nan"), -0.0, 3.0]])
    z = (x.t() @ d.float()).double() * d.sum() + h.float().t().sum() * 1e30
    return y.sum() + z.sum().float(), {"x": x, "d": d, "h": h}
'''


@pytest.mark.parametrize("budget", [0, 200], ids=["none-kept", "some-kept"])
def test_statistics_past_the_budget_with_nan_inf_and_dtypes_record_the_same(helper, tmp_path, budget):
    script = tmp_path / "nonfinite_gradients.py"
    script.write_text(NONFINITE_GRADIENTS)
    compiled, python = record_both(str(script), budget_bytes=budget, check_finite=False)
    _same(compiled, python)
    stats = [t.stats for e in compiled.backward for t in e.grad_outputs + e.grad_inputs if t is not None and t.stats]
    assert len(stats) >= 4 and any(np.isnan(s["min"]) for s in stats) and any(np.isinf(s["norm"]) for s in stats)


def _same_numbers(x: np.ndarray, y: np.ndarray) -> bool:
    """Bit for bit (zeros by sign too), any NaN equal to any NaN."""
    return x.shape == y.shape and np.array_equal(np.isnan(x), np.isnan(y)) and bool(
        np.all((x == y) & (np.signbit(x) == np.signbit(y)) | np.isnan(x)))


def test_compiled_statistics_are_stats_rows_bit_for_bit(helper):
    from gradviz.core.tensors import _stats_rows

    gen = torch.Generator().manual_seed(4)
    tensors = []
    for k in range(60):
        dtype = (torch.float32, torch.float64, torch.float16, torch.bfloat16)[k % 4]
        shape = [int(n) for n in torch.randint(1, 9, (int(torch.randint(0, 4, (1,), generator=gen)),), generator=gen)]
        t = (torch.randn(shape, generator=gen, dtype=torch.float64) * 10.0 ** (k % 7 - 3)).to(dtype)
        if t.numel() > 2 and k % 3 == 0:
            flat = t.view(-1)
            flat[0], flat[-1] = (-0.0, float("inf")) if k % 2 else (float("nan"), -float("inf"))
        if t.dim() >= 2 and k % 5 == 0:
            t = t.transpose(0, 1)  # (not row-major: its values in order come from a copy)
        tensors.append(t)
    tensors += [torch.zeros(3, 2).t(), -torch.zeros(4), torch.tensor([1e200, 1e200], dtype=torch.float64),
                torch.tensor([float("inf"), -float("inf")]), torch.randn(5, 8)[:, ::3], torch.randn(3).expand(4, 3),
                torch.tensor(2.5), torch.tensor([1e16, 1.0, -1e16, 1.0], dtype=torch.float64),
                # past the strided walk's buffer of 1,024 values, with a tail of less than 4
                torch.randn(64, 64, generator=gen).t(), torch.randn(37, 29, generator=gen, dtype=torch.float64).t(),
                torch.randn(5, 9, 31, generator=gen).permute(2, 0, 1), torch.randn(3, 700, generator=gen)[:, ::2]]
    # numpy arrays over a gradient's memory, as the helper hands owned ones over: transposed ones too
    arrays = [t.numpy() for t in tensors if t.dtype != torch.bfloat16 and 0 not in t.stride()]
    got = helper.stats_rows(tensors + arrays)
    assert got.shape == (len(tensors) + len(arrays), 4) and got.dtype == np.float64
    for t, row in zip(tensors + [torch.from_numpy(a) for a in arrays], got):
        want = _stats_rows(t.reshape(1, -1))[0]
        assert _same_numbers(row, np.array([want[k] for k in ("min", "max", "mean", "norm")])), (t, row, want)


@pytest.mark.parametrize("make", [
    lambda: torch.zeros(0, 3), lambda: torch.ones(3, dtype=torch.complex64), lambda: torch.arange(3),
    lambda: torch.ones(3, dtype=torch.float64).to_sparse(), lambda: np.ones(3, dtype=np.int64),
    lambda: np.ones(3, dtype=">f4"), lambda: np.ones(4)[::-1], lambda: np.zeros(0), lambda: [1.0, 2.0],
], ids=["empty", "complex", "int", "sparse", "numpy-int", "numpy-big-endian", "numpy-reversed", "numpy-empty",
        "list"])
def test_compiled_statistics_refuse_what_they_do_not_read(helper, make):
    with pytest.raises(TypeError, match="stats_rows: item 1 "):
        helper.stats_rows([torch.ones(2), make()])


def test_cancel_while_backward_runs(helper, tmp_path):
    # a cancel that says yes only once backward has run a while (after 300 polls: past the forward's)
    script = tmp_path / "long.py"
    script.write_text(textwrap.dedent('''
        import torch

        def build():
            w = torch.randn(3, requires_grad=True)
            h = w
            for _ in range(400):
                h = torch.tanh(h) * w
            return h.sum(), {"w": w}
    '''))
    for python in (False, True):
        calls = []

        def cancel():
            calls.append(1)
            return len(calls) > 802  # the forward polls once per op (801 ops): yes within backward

        with fastpath.python_only() if python else _nothing():
            with pytest.raises(Cancelled):
                record(str(script), cancel=cancel)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_cancel_that_raises_raises_its_own_error(helper, tmp_path):
    script = tmp_path / "long.py"
    script.write_text("import torch\n\ndef build():\n    w = torch.randn(3, requires_grad=True)\n"
                      "    h = w\n    for _ in range(400):\n        h = torch.tanh(h) * w\n"
                      "    return h.sum(), {'w': w}\n")
    calls = []

    def cancel():
        calls.append(1)
        if len(calls) > 802:
            raise KeyboardInterrupt
        return False

    with pytest.raises(KeyboardInterrupt):
        record(str(script), cancel=cancel)


@pytest.mark.parametrize("make", [
    lambda: torch.randn(4, 3),
    lambda: torch.randn(3, 4).t(),                    # transposed
    lambda: torch.randn(3).expand(4, 3),              # stride 0
    lambda: torch.randn(8, 6)[::2, ::2],              # strided view
    lambda: torch.randn(4, 3, dtype=torch.cdouble).conj(),
    lambda: -torch.randn(4, 3, dtype=torch.cdouble).conj().imag,
], ids=["plain", "transposed", "expanded", "strided", "conj", "neg"])
def test_stack_is_torch_stack_bit_for_bit(helper, make):
    tensors = [make() for _ in range(5)]
    assert torch.equal(helper.stack(tensors), torch.stack(tensors))
    out = torch.empty((5, *tensors[0].shape), dtype=tensors[0].dtype)
    helper.stack_rows(tensors, out)
    assert torch.equal(out, torch.stack(tensors))


def test_the_first_nan_in_backward_is_named_alike(helper):
    from gradviz.core.errors import NonFiniteError

    def build():
        x = torch.zeros(3, requires_grad=True)
        w = torch.ones(3, requires_grad=True)
        return (torch.sqrt(x * w) * 2).sum(), {"x": x, "w": w}

    messages = []
    for python in (False, True):
        with fastpath.python_only() if python else _nothing():
            with pytest.raises(NonFiniteError) as info:
                record(build)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "backward pass" in messages[0]


@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
def test_unusual_saved_values_record_the_same(helper, tmp_path, keep_values):
    script = tmp_path / "saved_values.py"
    script.write_text(textwrap.dedent(SAVED_VALUES))
    compiled, python = record_both(str(script), keep_values=keep_values)
    _same(compiled, python)
    saved = {}
    for n in compiled.nodes:
        for k, v in n.saved.items():
            saved.setdefault((n.torch_name, k), []).append(v)
    assert saved[("IndexBackward0", "indices[0]")][0] is None  # (x[:, idx]: None for ':')
    assert isinstance(saved[("IndexBackward0", "indices[1]")][0], TensorData)
    assert saved[("SoftmaxBackward0", "dim")] == [-1] and sorted(saved[("SumBackward1", "keepdim")]) == [False, True]
    assert (-1,) in saved[("SumBackward1", "dim")] and () in saved[("SumBackward1", "dim")]
    assert saved[("GeluBackward0", "approximate")] == ["tanh"] and saved[("AddBackward0", "alpha")].count(1j) == 1
    assert saved[("NativeLayerNormBackward0", "weight")] == [None]
    assert isinstance(saved[("ScaledBackward", "saved_tensors[0]")][0], TensorData)
    assert ("ScaledBackward", "saved_tensors[1]") not in saved
    assert sum(isinstance(v, TensorData) for v in saved[("MulBackward0", "self")]) == 2  # (x * w, t * t)


def test_the_helper_reads_nodes_as_read_saved_does_and_leaves_custom_ones_to_python(helper, tmp_path):
    script = tmp_path / "saved_values.py"
    script.write_text(textwrap.dedent(SAVED_VALUES))
    namespace: dict = {}
    exec(compile(script.read_text(), str(script), "exec"), namespace)
    loss, _ = namespace["build"]()
    nodes, _, _, fns = walk_graph(loss.grad_fn, 10_000, None)
    start, stops = 0, []
    while start < len(fns):
        start, _ = helper.read_saved(nodes, fns, start, None, None, 0, saved_attribute_names, plain_value, TensorData)
        if start < len(fns):
            stops.append(type(fns[start]).__name__)
            start += 1
    # it stops at the custom Function's node and the tensor subclass's, and reads every other node
    assert sorted(stops) == ["MulBackward0", "ScaledBackward"]
    for node, fn in zip(nodes, fns):
        if node.kind == "leaf" or type(fn).__name__ in stops:
            continue
        expected = read_saved(fn)
        assert list(node.saved) == list(expected), node.torch_name
        for k, v in expected.items():
            got = node.saved[k]
            if isinstance(v, torch.Tensor):
                assert (got.shape, got.dtype, got.requires_grad) == (tuple(v.shape), str(v.dtype)[6:], False)
            else:
                assert got == v and type(got) is type(v), (node.torch_name, k)


def test_a_saved_tensor_changed_in_place_gives_the_same_error(helper, tmp_path):
    script = tmp_path / "inplace.py"
    script.write_text(textwrap.dedent(INPLACE_AFTER_SAVE))
    messages = []
    for python in (False, True):
        with fastpath.python_only() if python else _nothing():
            with pytest.raises(InplaceModifiedError) as info:
                record(str(script))
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "modified by an inplace operation: add_ at" in messages[0]


def _shared_graph():
    """A loss whose graph has shared nodes, repeated node classes and empty next_functions slots."""
    torch.manual_seed(0)
    w = torch.randn(3, requires_grad=True)
    c = torch.randn(3)  # needs no grad: the slots it fills are None
    h = w
    for _ in range(6):
        h = torch.tanh(h * c + w) * h
    return h.sum() + w.sum()


def test_the_compiled_walk_is_the_python_walk(helper):
    loss = _shared_graph()
    nodes, fn_ids, edges, fns = walk_graph(loss.grad_fn, 10_000, None)
    with fastpath.python_only():
        p_nodes, p_fn_ids, p_edges, p_fns = walk_graph(loss.grad_fn, 10_000, None)
    assert len(fns) == len(p_fns) > 20 and all(a is b for a, b in zip(fns, p_fns))
    assert fn_ids == p_fn_ids
    assert edges == p_edges and all(type(e) is tuple and all(type(v) is int for v in e) for e in edges)
    assert len(edges) > len(fns)  # shared nodes: more edges than nodes
    assert [(n.id, n.name, n.kind, n.torch_name) for n in nodes] == [
        (n.id, n.name, n.kind, n.torch_name) for n in p_nodes]
    # one str per node class, shared by all its nodes
    names = helper.walk(loss.grad_fn, 10_000)[2]
    assert len({id(s) for s in names}) == len(set(names)) < len(names)


def test_the_compiled_walk_stops_at_the_node_limit_as_python_does(helper):
    loss = _shared_graph()
    count = len(walk_graph(loss.grad_fn, 10_000, None)[3])
    for limit in (1, 2, 5, count - 1, count):
        compiled = helper.walk(loss.grad_fn, limit)
        with fastpath.python_only():
            try:
                python = walk_graph(loss.grad_fn, limit, None)
            except GraphTooLarge:
                python = None
        assert compiled[3] == (python is not None), limit
        if python is not None:
            assert compiled[1] == python[2] and list(compiled[0]) == list(python[3])
        else:
            # the walk stops at the first node past the limit: the nodes found before it, in order
            assert len(compiled[0]) == limit
            with pytest.raises(GraphTooLarge):
                walk_graph(loss.grad_fn, limit, None)
