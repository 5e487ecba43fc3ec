"""The sandbox's wrapped ``Module._call_impl`` in C (``kernels/record_modules.cpp``) follows modules
exactly as the Python wrapper does: the same module_uses, module_order, module_parent, module
stack and module of each event, and the same results, whatever hooks the model has."""
from __future__ import annotations

import sys

import pytest
import torch
from torch.nn.modules import module as _module

from gradviz.core import fastpath, sandbox
from gradviz.core.capture import ForwardCapture
from gradviz.core.sandbox import _CALL_IMPL, Sandbox
from gradviz.core.tensors import TensorStore

from both_paths import record_both, recording_text


@pytest.fixture(autouse=True)
def _wrappable(monkeypatch):
    """Modules followed by the wrapper, as in a fresh process, after another test loaded torch._dynamo.

    (``torch.utils.checkpoint`` loads it, which turns the wrapper off for the process: a compiled
    module runs the ``_call_impl`` it was compiled from. Nothing here compiles a module.)
    """
    if "torch._dynamo" in sys.modules:
        can_wrap = sandbox._can_wrap_call
        dynamo = sys.modules["torch._dynamo"]

        def without_dynamo():
            del sys.modules["torch._dynamo"]
            try:
                return can_wrap()
            finally:
                sys.modules["torch._dynamo"] = dynamo

        monkeypatch.setattr(sandbox, "_can_wrap_call", without_dynamo)


class Fails(torch.nn.Module):
    def forward(self, x):
        torch.tanh(x)
        raise ValueError("no")


class Keywords(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x, *, scale=1.0, extra=None):
        return self.lin(x) * scale + (0 if extra is None else extra)


class Net(torch.nn.Module):
    """Nested modules, a module used twice, one that raises (caught), keyword arguments, a module
    with hooks of its own, a global hook the model registers while it runs, a direct _call_impl."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(4, 4)
        self.kw = Keywords()
        self.fails = Fails()
        self.hooked = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
        self.hooked.register_forward_pre_hook(lambda m, a: (a[0] * 1.5,))
        self.hooked.register_forward_hook(lambda m, a, out: out.sigmoid())
        self.late = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
        self.direct = torch.nn.Linear(4, 4)

    def forward(self, x):
        h = self.a(x)
        try:
            self.fails(h)
        except ValueError:
            pass
        h = self.kw(h, scale=2.0, extra=h)
        h = self.hooked(h)
        handle = _module.register_module_forward_hook(lambda m, a, out: None)
        try:
            h = self.late(h)
        finally:
            handle.remove()
        h = self.direct._call_impl(h)
        return self.a(h).sum()


def _run(capture_cls=ForwardCapture):
    torch.manual_seed(0)
    net = Net()
    names = {m: name or "net" for name, m in net.named_modules()}
    x = torch.randn(3, 4, requires_grad=True)
    cap = capture_cls(TensorStore(False))
    with Sandbox(cap):
        impl = _module.Module.__dict__["_call_impl"]
        out = net(x)
    follow = {
        "uses": sorted((names[m], u) for m, u in cap.module_uses.items()),
        "order": [names[m] for m in cap.module_order],
        "parent": sorted((names[m], names.get(p)) for m, p in cap.module_parent.items()),
        "stack": [(names[m], u) for m, u in cap.module_stack],
        "events": [(e.op, names[w[0]] if w else None, w[1] if w else None)
                   for e, w in zip(cap.events, cap.event_module)],
        "out": out.item(),
    }
    return follow, impl, cap


def test_the_compiled_wrapper_follows_modules_as_the_python_one(helper):
    fast, impl, _ = _run()
    with fastpath.python_only():
        slow, py_impl, _ = _run()
    assert fast == slow
    # the compiled wrapper was the one installed, and the Python one without the helper
    assert not hasattr(impl, "__code__") and hasattr(py_impl, "__code__")
    assert ("kw.lin", "kw") in fast["parent"] and ("fails", "net") in fast["parent"]
    assert ("a", 2) in fast["uses"] and ("direct", 1) in fast["uses"]
    # the ops inside the modules with hooks of their own and the one called under the model's
    # global hook are seen in their modules
    assert ("linear", "hooked.0", 1) in fast["events"] and ("tanh", "late.1", 1) in fast["events"]
    assert ("tanh", "fails", 1) in fast["events"]


class OwnHooks(ForwardCapture):
    """A capture whose module hooks are its own: the compiled wrapper calls them."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = 0

    def on_module_pre(self, module, args):
        self.calls += 1
        super().on_module_pre(module, args)

    def on_module_post(self, module, args, output):
        self.calls += 1
        super().on_module_post(module, args, output)


def test_the_compiled_wrapper_calls_hooks_a_capture_overrides(helper):
    fast, impl, cap = _run(OwnHooks)
    with fastpath.python_only():
        slow, _, slow_cap = _run(OwnHooks)
    assert fast == slow
    assert cap.calls == slow_cap.calls == 2 * sum(u for _, u in fast["uses"]) - 1  # (no post: Fails raised)
    assert not hasattr(impl, "__code__")


class ListStack(list):
    pass


def test_a_module_stack_of_another_type_is_left_to_the_python_methods(helper):
    class Capture(type(ForwardCapture(None))):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.module_stack = ListStack()

    fast, _, cap = _run(Capture)
    with fastpath.python_only():
        slow, _, _ = _run(ForwardCapture)
    assert type(cap.module_stack) is ListStack
    assert fast == slow


def test_an_error_in_a_module_leaves_no_post_and_is_raised(helper):
    torch.manual_seed(0)
    fails = Fails()
    outer = torch.nn.Sequential(fails)
    cap = ForwardCapture(TensorStore(False))
    with pytest.raises(ValueError, match="no"):
        with Sandbox(cap):
            outer(torch.randn(2, 4, requires_grad=True))
    # the raising modules were not popped (no post hook after an error), as global hooks have it
    assert [(type(m).__name__, u) for m, u in cap.module_stack] == [("Sequential", 1), ("Fails", 1)]
    assert _module.Module.__dict__["_call_impl"] is _CALL_IMPL


# in-place ops under grad mode on leaves (nn.init on parameters made inside build(), a leaf buffer
# that gets a node from an in-place add, keyword arguments), on a view of a leaf and on non-leaves
# (the Python method's cases)
INPLACE_MODEL = '''
import torch


def build():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 4)
    torch.nn.init.uniform_(lin.bias, -0.5, b=0.5)
    w = torch.nn.Parameter(torch.empty(4, 4))
    torch.nn.init.kaiming_uniform_(w, a=5 ** 0.5)
    x = torch.randn(3, 4, requires_grad=True)
    h = lin(x) @ w
    buf = torch.zeros(3, 4)
    buf.add_(h)
    grid = torch.zeros(3, 4)
    grid[:, 1].add_(h[:, 1])
    torch.clamp_(buf, min=-1.0)
    h2 = h.clone()
    h2.mul_(2.0)
    return (buf.sum() + grid.sum() + h2.sum()), {"x": x, "w": w}
'''


@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
def test_in_place_ops_on_leaves_record_what_the_python_method_records(helper, tmp_path, keep_values):
    from gradviz.core import record
    path = tmp_path / "inplace.py"
    path.write_text(INPLACE_MODEL)
    fast, slow = record_both(str(path), keep_values=keep_values)
    assert recording_text(fast) == recording_text(slow)
    ops = [e.op for e in fast.forward]
    assert ops.count("add_") == 2 and "clamp_" in ops and "mul_" in ops, ops
    assert not fast.meta["unseen_nodes"]  # (the leaf buffer's new node was noted as seen)


def test_an_in_place_op_on_a_leaf_notes_the_node_it_made(helper):
    cap = ForwardCapture(TensorStore(False))
    x = torch.randn(3, requires_grad=True)
    buf = torch.zeros(3)
    with Sandbox(cap):
        torch.nn.init.ones_(torch.nn.Parameter(torch.empty(2)))  # (a leaf still: nothing noted)
        before = len(cap.seen_ops)
        buf.add_(x)
    assert type(cap).__torch_function__ is not ForwardCapture.__torch_function__
    assert before == 0
    made, consumed = cap.seen_ops[before]
    assert made == [buf.grad_fn] and consumed == []
    assert [e.op for e in cap.events] == ["add_"]


TUPLE_MODEL = '''
import torch


def build():
    torch.manual_seed(0)
    x = torch.randn(4, 6, requires_grad=True)
    a, b, c = torch.split(x * 2, 2, dim=1)
    p, q = (x + 1).chunk(2, dim=0)
    rows = torch.unbind(x.tanh(), dim=0)
    plain = torch.split(torch.randn(4, 6), 3, dim=1)  # (leaves only: no event)
    values, where = torch.max(x, dim=1)  # (a structseq: the Python method)
    parts = list(torch.tensor_split(x.sigmoid(), 3, dim=1))
    loss = a.sum() + (b * c).sum() + p.sum() * q.mean() + sum(r.sum() for r in rows[1:])
    return loss + plain[0].sum() + values.sum() + parts[2].sum(), {"x": x}
'''


@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
def test_tuple_results_record_what_the_python_method_records(helper, tmp_path, keep_values):
    from gradviz.core import record
    path = tmp_path / "tuples.py"
    path.write_text(TUPLE_MODEL)
    fast, slow = record_both(str(path), keep_values=keep_values)
    assert recording_text(fast) == recording_text(slow)
    outputs = {e.op: len(e.outputs) for e in fast.forward}
    assert outputs["split"] == 3 and outputs["chunk"] == 2 and outputs["unbind"] == 4, outputs
    assert [e.op for e in fast.forward].count("split") == 1  # (the leaves' split is no event)


def test_a_split_is_logged_without_the_python_method(helper):
    calls = []

    class Counting(type(ForwardCapture(None))):
        def _tf_after(self, *a):
            calls.append(a[1])
            return super()._tf_after(*a)

    cap = Counting(TensorStore(False))
    x = torch.randn(4, 6, requires_grad=True)
    with Sandbox(cap):
        parts = torch.split(x * 1.0, 2, dim=1)
        torch.split(torch.randn(4, 6), 2, dim=1)
        torch.max(x, dim=1)
    assert calls == ["max"]  # (a structseq result: the Python method)
    split = [e for e in cap.events if e.op == "split"]
    assert len(split) == 1 and len(split[0].outputs) == 3
    outs = cap.event_tensors[split[0].index][1]
    assert len(outs) == 3 and all(t is p for t, p in zip(outs, parts))
    assert cap.grad_fn_event[parts[0].grad_fn] == split[0].index
