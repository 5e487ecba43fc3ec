"""The forward capture's compiled ``__torch_function__`` and the sandbox's wrapped ``Module._call_impl``
record exactly what the Python method and global module hooks record."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch.nn.modules import module as _module

from gradviz.core import fastpath, record
from gradviz.core.capture import ForwardCapture

from both_paths import recording_text


# in-place ops (on a view too), a custom Function, views (.T, .mT), tuple and list results, no_grad
# blocks, nested modules, a module used twice, a module whose forward raises (caught by the model),
# modules with hooks of their own (forward pre and post hooks that compute, a full backward hook),
# a module called through _call_impl, a module whose forward hook replaces the output
MODEL = '''
import torch


class Twice(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * g + 0 * x


class Fails(torch.nn.Module):
    def forward(self, x):
        y = torch.tanh(x)
        raise ValueError("no")


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(4, 4)
        self.b = torch.nn.Linear(4, 4)
        self.fails = Fails()

    def forward(self, x):
        h = self.a(x)
        try:
            self.fails(h)
        except ValueError:
            pass
        h = self.b(torch.relu(h))
        return self.a(h)  # used again


def build():
    torch.manual_seed(0)
    block = Block()
    hooked = torch.nn.Linear(4, 4)
    hooked.register_forward_pre_hook(lambda m, a: (a[0] * 1.5,))
    hooked.register_forward_hook(lambda m, a, out: out.sigmoid())
    backhooked = torch.nn.Linear(4, 4)
    backhooked.register_full_backward_hook(lambda m, gi, go: None)
    direct = torch.nn.Linear(4, 4)
    x = torch.randn(3, 4, requires_grad=True)
    w = torch.randn(4, 4, requires_grad=True)
    h = block(x)
    h = hooked(h)
    h = backhooked(h)
    h = direct._call_impl(h)
    h = Twice.apply(h) @ w.T + (h @ w.mT)
    values, where = torch.max(h, dim=1)
    parts = torch.split(h, 2, dim=1)
    with torch.no_grad():
        scale = h.abs().max() + 1
        buf = torch.zeros(1)
        buf.add_(h.sum())
    v = h.clone()
    v[:, 1:].mul_(2.0)
    v += 1
    v.add_(parts[0].sum())
    return (v.sum() + values.sum() + parts[1].pow(2).sum()) / (scale + buf), {"x": x, "w": w}
'''


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("fwd") / "model.py"
    path.write_text(textwrap.dedent(MODEL))
    return str(path)


class _global_hook:
    """A no-op global module hook of the process's: the sandbox then follows modules with its own global hooks."""

    def __enter__(self):
        self.handle = _module.register_module_forward_pre_hook(lambda m, a: None)

    def __exit__(self, *exc):
        self.handle.remove()


def test_the_capture_is_compiled_where_the_helper_is_loaded(helper):
    assert type(ForwardCapture(None)).__torch_function__ is not ForwardCapture.__torch_function__
    with fastpath.python_only():
        assert type(ForwardCapture(None)) is ForwardCapture


@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
def test_compiled_capture_and_wrapped_modules_record_what_python_and_hooks_record(helper, script, keep_values):
    fast = record(script, keep_values=keep_values)
    with fastpath.python_only(), _global_hook():
        slow = record(script, keep_values=keep_values)
    with _global_hook():
        fast_hooks = record(script, keep_values=keep_values)
    with fastpath.python_only():
        slow_wrapped = record(script, keep_values=keep_values)
    assert recording_text(fast) == recording_text(slow) == recording_text(fast_hooks) == recording_text(slow_wrapped)
    # the model's modules, their uses and what ran in them were seen
    # (a module's own pre hook runs inside it, its forward hook after it, as global hooks have it;
    # a module that raised stays on the stack until its parent returns)
    places = {(n.name, n.module, n.use) for n in fast.nodes}
    assert {("AddmmBackward0", "Linear1", 1), ("AddmmBackward0", "Linear1", 2), ("MulBackward0", "Linear3", 1),
            ("SigmoidBackward0", None, None), ("BackwardHookFunction", "Linear4", 1),
            ("BackwardHookFunction", None, None), ("ReluBackward0", "Fails", 1),
            ("AddmmBackward0", "Linear5", 1), ("Twice", None, None)} <= places, places


@pytest.mark.parametrize("target,params", [
    ("mlp", {}), ("rnn-unrolled", {"T": 6}), ("repeated-layer", {"k": 4, "n": 3, "tanh": True}),
    ("linear-function", {}), ("linear-function", {"backend": "cpp"})],
    ids=["mlp", "rnn", "repeated-layer", "linear-function", "gradviz-linear"])
def test_models_record_the_same_with_python_and_global_hooks(helper, target, params):
    if params.get("backend") == "cpp":
        from gradviz.core import extension

        if not extension.build_state().cpu_ok:
            pytest.skip("the gradviz::linear op is not built here")
    fast = record(target, params=params)
    with fastpath.python_only(), _global_hook():
        slow = record(target, params=params)
    assert recording_text(fast) == recording_text(slow)
    if params.get("backend") == "cpp":
        assert [e.op for e in fast.forward] == ["gradviz::linear", "sum"]


def test_the_wrapped_call_impl_is_put_back_when_the_model_raises():
    original = torch.nn.Module.__dict__["_call_impl"]

    def build():
        assert torch.nn.Module.__dict__["_call_impl"] is not original or "torch._dynamo" in sys.modules
        torch.nn.Linear(2, 2)(torch.randn(1, 2))
        raise RuntimeError("model fails")

    with pytest.raises(Exception):
        record(build)
    assert torch.nn.Module.__dict__["_call_impl"] is original


def test_wrapped_modules_record_what_global_hooks_record_without_the_helper(script):
    with fastpath.python_only():
        wrapped = record(script, keep_values=False)
        with _global_hook():
            hooks = record(script, keep_values=False)
    assert recording_text(wrapped) == recording_text(hooks)
    assert ("MulBackward0", "Linear3", 1) in {(n.name, n.module, n.use) for n in wrapped.nodes}
