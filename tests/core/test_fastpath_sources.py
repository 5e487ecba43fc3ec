"""The helper's C++ walks (source lines off the interpreter's frames, gradients handed back as numpy
arrays) record exactly what the Python path records."""
from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch

from gradviz.core import fastpath, record
from gradviz.core.recording import BackwardEvent
from gradviz.core.tensors import TensorData, TensorStore

from both_paths import record_both
from test_fastpath import _same

# a model spread over two files whose ops run in every kind of frame: a decorator's wrapper, a
# lambda, a generator, a generator expression, a comprehension, a contextlib generator, a
# functools.singledispatch wrapper (a functools.py frame between the call and the op), nested
# modules of another file, a function of another file calling back a lambda, and exec'd code.
# Each line that an op's source must be is marked "# op".
MODEL = '''
import contextlib
import functools
import importlib.util
import os

import torch

_spec = importlib.util.spec_from_file_location("gradviz_parts_for_sources",
                                               os.path.join(os.path.dirname(__file__), "parts.py"))
parts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parts)

tanh = functools.singledispatch(torch.tanh)


def twice(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args) * 2  # op
    return wrapper


@twice
def scaled(x, w):
    return x * w  # op


def steps(cell, xs, h):
    for x in xs:
        h = cell(x, h)  # op
        yield h


@contextlib.contextmanager
def shifted(x):
    yield x + 1  # op


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = parts.Inner(4)
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.inner(torch.relu(self.lin(x)))  # op


def build():
    w = torch.randn(4, requires_grad=True)
    x = torch.randn(4, requires_grad=True)
    h = scaled(x, w)
    h = tanh(h)  # op
    act = lambda t: t.sigmoid() * w  # op
    h = act(h)
    h = sum(h * k for k in (1.0, 2.0))  # op
    h = [torch.sin(v) for v in (h,)][0]  # op
    with shifted(h) as h:
        pass
    cell = torch.nn.RNNCell(4, 4)
    hs = list(steps(cell, [h[None], h[None] * 3], torch.zeros(1, 4)))  # op
    out = Block()(hs[-1])
    out = parts.through(out, lambda t: t * w[None])  # op
    namespace = {"out": out}
    exec(compile("y = out.exp()", "<generated>", "exec"), namespace)
    return namespace["y"].sum(), {"w": w, "x": x}  # op
'''

PARTS = '''
import torch


class Inner(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.lin = torch.nn.Linear(n, n)
        self.scale = torch.nn.Parameter(torch.ones(n))

    def forward(self, x):
        return self.lin(x) * self.scale  # op


def through(x, fn):
    return fn(x) + 0.5  # op
'''


@pytest.fixture
def model(tmp_path):
    (tmp_path / "parts.py").write_text(textwrap.dedent(PARTS))
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(MODEL))
    return str(path)


def _check_sources(rec) -> None:
    """Every event's source is a line marked "# op" (or the exec'd code's own name)."""
    lines: dict = {}
    for ev in rec.forward:
        path, _, line = ev.source.rpartition(":")
        if path == "<generated>":
            assert line == "1"
            continue
        if path not in lines:
            with open(path) as f:
                lines[path] = f.read().splitlines()
        assert "# op" in lines[path][int(line) - 1], (ev.op, ev.source)


def test_the_helper_walks_frames_on_this_python(helper):  # noqa: F811
    # the C++ frame walk is built for CPython 3.11 only; elsewhere the recorder walks in Python
    assert helper.FRAME_WALK == (sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11))


@pytest.mark.parametrize("keep_values", [True, False], ids=["values", "no-values"])
def test_source_lines_of_every_kind_of_frame_are_the_same(helper, model, keep_values):  # noqa: F811
    compiled, python = record_both(model, keep_values=keep_values)
    _same(compiled, python)
    assert [e.source for e in compiled.forward] == [e.source for e in python.forward]
    _check_sources(compiled)
    files = {e.source.rpartition(":")[0].rsplit("/", 1)[-1] for e in compiled.forward}
    assert files == {"model.py", "parts.py", "<generated>"}
    assert len(compiled.forward) >= 15


def test_source_lines_under_a_tracer_are_the_same(helper, model):  # noqa: F811
    # a trace function (a debugger, coverage) makes every frame object and sets f_lineno while it runs
    def tracer(frame, event, arg):
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        compiled, python = record_both(model, keep_values=False)
    finally:
        sys.settrace(previous)
    assert [e.source for e in compiled.forward] == [e.source for e in python.forward]
    _check_sources(compiled)


def test_a_recording_in_another_thread_walks_that_threads_frames(helper, model):  # noqa: F811
    import threading

    out = {}
    worker = threading.Thread(target=lambda: out.update(both=record_both(model)))
    worker.start()
    worker.join()
    compiled, python = out["both"]
    assert [e.source for e in compiled.forward] == [e.source for e in python.forward]
    _check_sources(compiled)


@pytest.mark.parametrize("poisoned", [False, True], ids=["finite", "nan"])
def test_owned_gradients_come_back_as_numpy_arrays_over_their_memory(helper, poisoned):  # noqa: F811
    torch.manual_seed(0)
    cell = torch.nn.RNNCell(3, 5)
    h = torch.zeros(2, 5)
    for _ in range(4):
        h = cell(torch.randn(2, 3), h)
    loss = h.pow(2).mean()
    if poisoned:
        loss = loss * float("nan")  # (every gradient below the product is NaN)
    fns, _, _, _ = helper.walk(loss.grad_fn, 10_000)
    hooks = helper.Hooks(fns, True)
    torch.autograd.backward(loss)
    hooks.remove()
    # what the recorder does (backward_run._run_compiled), noting what the helper leaves to Python
    store = TensorStore(True)
    handed: list = []

    def more(items, owned, finite):
        handed.append((items, owned, finite))
        return store.capture_many(items, stack=helper.stack, stats=helper.stats_rows, owned=owned, finite=finite)

    events = hooks.take_events(store, TensorData, BackwardEvent, more)
    assert events and len(hooks) == 0
    # each gradient once: one snapshot per uid, numbered 1, 2, ... as the store counts them
    by_uid: dict = {}
    for e in events:
        for d in [*e.grad_outputs, *e.grad_inputs]:
            if d is not None:
                assert by_uid.setdefault(d.uid, d) is d
    assert sorted(by_uid) == list(range(1, store.last_uid + 1))
    # the owned ones (the others are rows of one copy per group, made by capture_many): numpy
    # arrays over the gradient's own memory (held by the helper's capsule, not copied), writeable
    grouped = {id(d) for _, datas in store._groups for d in datas}
    owned = [d for d in by_uid.values() if id(d) not in grouped]
    assert owned
    for d in owned:
        assert isinstance(d.value, np.ndarray) and d.value.flags.writeable
        assert type(d.value.base).__name__ == "PyCapsule"
        assert d.value.shape == d.shape and d.dtype == "float32"
    # finiteness told by the helper: a finite one in neither list, a NaN one filed as bad
    bad, singles = {id(d) for d in store._bad}, {id(d) for d in store._singles}
    for d in owned:
        assert (id(d) in bad) == (not np.isfinite(d.value).all()) and id(d) not in singles
    assert bool(bad) == poisoned
    # what the helper left to Python: tensors it does not own, told so, finiteness unknown
    assert len(owned) + sum(len(items) for items, _, _ in handed) == len(by_uid)
    for items, flags, finite in handed:
        assert all(isinstance(t, torch.Tensor) for t in items)
        assert flags == [False] * len(items) and finite == [None] * len(items)
    # a recording's snapshot of such a gradient keeps its memory: the same values as the Python path
    compiled, python = record_both("rnn-unrolled", params={"T": 4})
    _same(compiled, python)
    assert fastpath.helper() is helper
