"""The compiled linear ops against ``torch.nn.functional.linear`` and torch's autograd.

Every CPU micro-kernel this machine can run (avx512, avx2, portable; chosen with
``GRADVIZ_CPU_ISA``) is checked on shapes that hit the ragged edges of the register tiles and of
the cache blocks. Tolerances: float64 rtol 1e-12 / atol 1e-11 (only the summation order differs
from torch); float32 rtol 1e-4 / atol 1e-4 against a float64 reference.
"""
from __future__ import annotations

import itertools
import json
import re

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from gradviz.core import backends, extension

ISAS = ["avx512", "avx2", "portable"]

# (batch M, in_features K, out_features N). Tiles are 12x32 / 6x16 / 4x8 (float32) with depth
# slices of 256 and column blocks of 4096 (float32) / 2048 (float64); row blocks of <= 240.
# Products of at least 64^3 are split between the threads along the longer side of C.
SHAPES = [
    (1, 1, 1),       # single element
    (1, 5, 7),       # one row
    (6, 1, 3),       # one column of input (K = 1)
    (4, 3, 1),       # one output feature
    (12, 256, 32),   # exactly one avx512 float32 tile and one depth slice
    (13, 19, 17),    # ragged in every direction
    (7, 300, 45),    # two depth slices, the second ragged
    (250, 33, 70),   # two threads split the rows (M > N), the second share ragged
    (40, 100, 333),  # two threads split the columns (N >= M), the second share ragged
    (3, 5, 4100),    # several column blocks, the last one narrow
    (4, 0, 3),       # no input features: output is the bias
]
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-11), torch.float32: dict(rtol=1e-4, atol=1e-4)}


def _isa_supported(ops, isa: str, monkeypatch) -> bool:
    monkeypatch.setenv("GRADVIZ_CPU_ISA", isa)
    try:
        return ops.cpu_isa() == isa
    except RuntimeError:
        return False


@pytest.fixture(params=ISAS)
def isa(request, ops, monkeypatch):
    """Each CPU micro-kernel in turn, selected through GRADVIZ_CPU_ISA."""
    if not _isa_supported(ops, request.param, monkeypatch):
        pytest.skip(f"this CPU cannot run the {request.param} micro-kernel")
    return request.param


def _leaves(M, K, N, dtype, device, gen=None):
    """Leaves x (M, K), w (N, K), b (N,) requiring grad, and a grad_output g (M, N)."""
    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype).to(device)

    x, w, b = randn(M, K).requires_grad_(), randn(N, K).requires_grad_(), randn(N).requires_grad_()
    return x, w, b, randn(M, N)


def _reference(x, w, b, g):
    """Output and gradients of F.linear, computed in float64 from copies of the leaves."""
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    b64 = None if b is None else b.detach().double().requires_grad_()
    y = F.linear(x64, w64, b64)
    y.backward(g.double())
    return y.detach(), x64.grad, w64.grad, None if b is None else b64.grad


def _check_against_reference(x, w, b, g, dtype):
    y = torch.ops.gradviz.linear(x, w, b)
    y.backward(g)
    ry, rx, rw, rb = _reference(x, w, b, g)
    tol = TOL[dtype]
    assert y.dtype == dtype and y.shape == ry.shape
    torch.testing.assert_close(y.double(), ry, **tol)
    torch.testing.assert_close(x.grad.double(), rx, **tol)
    torch.testing.assert_close(w.grad.double(), rw, **tol)
    if b is not None:
        torch.testing.assert_close(b.grad.double(), rb, **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_f_linear_on_cpu(isa, shape, dtype):
    gen = torch.Generator().manual_seed(hash(shape) % 2**31)
    _check_against_reference(*_leaves(*shape, dtype, "cpu", gen=gen), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(1, 5, 7), (13, 19, 17), (7, 300, 45), (130, 129, 131)],
                         ids=lambda s: "x".join(map(str, s)))
def test_matches_f_linear_on_device(device, shape, dtype):
    torch.manual_seed(0)
    _check_against_reference(*_leaves(*shape, dtype, device), dtype)


def test_non_contiguous_operands(isa):
    # every operand a strided view: a column slice, a transposed buffer, an expanded row
    torch.manual_seed(1)
    dtype = torch.float64
    big = torch.randn(9, 40, dtype=dtype)
    x_leaf = big[:, ::2]  # (9, 20) with column stride 2
    assert not x_leaf.is_contiguous()
    w_t = torch.randn(20, 11, dtype=dtype)
    w = w_t.t()  # (11, 20) stored column-major
    assert not w.is_contiguous()
    b = torch.randn(22, dtype=dtype)[::2]  # stride 2
    xs = x_leaf.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()

    for inputs in [(x_leaf, w, b), (torch.randn(1, 20, dtype=dtype).expand(9, 20), w, b)]:
        y = torch.ops.gradviz.linear(*inputs)
        torch.testing.assert_close(y, F.linear(*inputs), **TOL[dtype])

    # a non-contiguous grad_output (transposed storage) into the backward
    g = torch.randn(11, 9, dtype=dtype).t()
    y = torch.ops.gradviz.linear(*xs)
    y.backward(g)
    refs = [t.detach().clone().requires_grad_() for t in xs]
    F.linear(*refs).backward(g)
    for got, want in zip(xs, refs):
        torch.testing.assert_close(got.grad, want.grad, **TOL[dtype])


def test_sum_backward_sends_an_expanded_gradient():
    # y.sum().backward() hands the op a stride-0 grad_output
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    torch.ops.gradviz.linear(x, w, b).sum().backward()
    torch.testing.assert_close(x.grad, w.sum(0).expand(5, 4))
    torch.testing.assert_close(w.grad, x.detach().sum(0).expand(3, 4))
    torch.testing.assert_close(b.grad, torch.full((3,), 5.0, dtype=torch.float64))


def test_gradcheck_and_gradgradcheck_float64(device, ops):
    torch.manual_seed(2)
    kw = dict(dtype=torch.float64, device=device, requires_grad=True)
    for M, K, N in [(3, 4, 5), (1, 13, 2), (14, 3, 33)]:
        x = torch.randn(M, K, **kw)
        w = torch.randn(N, K, **kw)
        b = torch.randn(N, **kw)
        assert torch.autograd.gradcheck(ops.linear, (x, w, b))
        assert torch.autograd.gradcheck(lambda x, w: ops.linear(x, w, None), (x, w))
        assert torch.autograd.gradgradcheck(ops.linear, (x, w, b))
    if device == "cuda":
        # ragged against the 64 x 64 tiles of the float64 kernels, in every product; the fast
        # mode (random projections) keeps its 9,000 inputs to a few evaluations
        x, w, b = torch.randn(67, 70, **kw), torch.randn(65, 70, **kw), torch.randn(65, **kw)
        assert torch.autograd.gradcheck(ops.linear, (x, w, b), fast_mode=True)


class _OpLog(TorchDispatchMode):
    """Record the name of every op that reaches the dispatcher."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.name())
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("needs", [n for n in itertools.product([False, True], repeat=3) if any(n)],
                         ids=lambda n: "".join("xwb"[i] if v else "-" for i, v in enumerate(n)))
def test_only_requested_gradients_are_computed(ops, needs):
    torch.manual_seed(3)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=needs[0])
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=needs[1])
    b = torch.randn(4, dtype=torch.float64, requires_grad=needs[2])
    y = ops.linear(x, w, b)
    log = _OpLog()
    with log:
        y.backward(torch.ones_like(y))
    called = {n.split("::")[1] for n in log.names if n.startswith("gradviz::")}
    expected = {name for name, need in zip(["linear_grad_input", "linear_grad_weight",
                                            "linear_grad_bias"], needs) if need}
    assert called == expected
    for t, need in zip((x, w, b), needs):
        assert (t.grad is not None) == need


def test_bias_none(ops):
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    y = ops.linear(x, w, None)
    torch.testing.assert_close(y, F.linear(x, w))
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, w.detach().sum(0).expand(3, 4))


def test_opcheck_every_op(device, ops):
    from torch.library import opcheck

    torch.manual_seed(4)
    for dtype in (torch.float32, torch.float64):
        kw = dict(dtype=dtype, device=device)
        x = torch.randn(5, 3, **kw, requires_grad=True)
        w = torch.randn(4, 3, **kw, requires_grad=True)
        b = torch.randn(4, **kw, requires_grad=True)
        g = torch.randn(5, 4, **kw, requires_grad=True)
        opcheck(ops.linear.default, (x, w, b))
        opcheck(ops.linear.default, (x, w, None))
        opcheck(ops.linear_grad_input.default, (g, w))
        opcheck(ops.linear_grad_weight.default, (g, x))
        opcheck(ops.linear_grad_bias.default, (g,))


def test_runs_under_torch_compile(ops):
    torch._dynamo.reset()

    def model(x, w, b):
        return torch.tanh(ops.linear(x, w, b)).sum()

    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    torch.manual_seed(5)
    leaves = [torch.randn(6, 5, requires_grad=True), torch.randn(3, 5, requires_grad=True),
              torch.randn(3, requires_grad=True)]
    copies = [t.detach().clone().requires_grad_() for t in leaves]
    compiled(*leaves).backward()
    model(*copies).backward()
    for a, b in zip(leaves, copies):
        torch.testing.assert_close(a.grad, b.grad)


def test_graph_node_is_shown_as_linear_function(ops):
    x = torch.randn(2, 3, requires_grad=True)
    w = torch.randn(4, 3, requires_grad=True)
    y, ran = backends.linear(x, w, None, backend="cpp")
    assert ran == "cpp"
    node_name = type(y.grad_fn).__name__
    assert node_name == extension.NODE_NAME
    assert backends.describe_node(node_name, "cpu") == ("LinearFunction", "cpp")
    assert backends.describe_node(node_name, "cuda:0") == ("LinearFunction", "cuda")


def test_cpp_backend_refuses_tensors_of_another_device(build):
    fn = backends.get_backend("cpp").fn
    with pytest.raises(RuntimeError, match="the cpp backend runs on cpu tensors, but input is on meta"):
        fn(torch.empty(2, 3, device="meta"), torch.empty(4, 3, device="meta"))


def test_unknown_isa_is_refused(ops, monkeypatch):
    monkeypatch.setenv("GRADVIZ_CPU_ISA", "sse9")
    with pytest.raises(RuntimeError, match="GRADVIZ_CPU_ISA must be avx512, avx2 or portable, got 'sse9'"):
        ops.linear(torch.randn(2, 2), torch.randn(2, 2), None)


def _t(*shape, dtype=torch.float32, device="cpu"):
    return torch.zeros(*shape, dtype=dtype, device=device)


BAD_CALLS = [
    ("linear", lambda: (_t(2, 3), _t(4, 5), None),
     "gradviz::linear: input (2, 3) and weight (4, 5) disagree on in_features (3 vs 5)"),
    ("linear", lambda: (_t(2, 3), _t(4, 3), _t(7)),
     "gradviz::linear: bias (7,) and weight (4, 3) disagree on out_features (7 vs 4)"),
    ("linear", lambda: (_t(2, 3, 4), _t(4, 4), None),
     "gradviz::linear: input must be 2-D (batch, in_features), got shape (2, 3, 4)"),
    ("linear", lambda: (_t(2, 3), _t(4, 3), _t(1, 4)),
     "gradviz::linear: bias must be 1-D (out_features,), got shape (1, 4)"),
    ("linear", lambda: (_t(2, 3), _t(4, 3, dtype=torch.float64), None),
     "gradviz::linear: input is float32 but weight is float64; all tensors must share one dtype"),
    ("linear", lambda: (_t(2, 3, dtype=torch.int64), _t(4, 3, dtype=torch.int64), None),
     "gradviz::linear: dtype int64 is not supported on CPU (float32 or float64)"),
    ("linear", lambda: (_t(2, 3, dtype=torch.float16), _t(4, 3, dtype=torch.float16), None),
     "gradviz::linear: dtype float16 is not supported on CPU (float32 or float64)"),
    ("linear", lambda: (_t(2, 3), _t(4, 3, device="meta"), None),
     "gradviz::linear: input is on cpu but weight is on meta; all tensors must be on one device"),
    ("linear_grad_input", lambda: (_t(2, 4), _t(5, 3)),
     "gradviz::linear_grad_input: grad_output (2, 4) and weight (5, 3) disagree on out_features "
     "(4 vs 5)"),
    ("linear_grad_weight", lambda: (_t(2, 4), _t(3, 5)),
     "gradviz::linear_grad_weight: grad_output (2, 4) and input (3, 5) disagree on batch (2 vs 3)"),
    ("linear_grad_bias", lambda: (_t(4),),
     "gradviz::linear_grad_bias: grad_output must be 2-D (batch, out_features), got shape (4,)"),
]


@pytest.mark.parametrize("op_name,make_args,message", BAD_CALLS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_CALLS)])
@pytest.mark.parametrize("kernel", ["cpu", "meta"])
def test_bad_input_names_the_shapes(ops, op_name, make_args, message, kernel):
    # the C++ checks (cpu) and the fake kernel's checks (meta) say the same thing
    args = make_args()
    if kernel == "meta":
        args = tuple(None if a is None else a.to("meta") if a.device.type == "cpu"
                     else torch.zeros(a.shape, dtype=a.dtype) for a in args)
        message = message.replace("on cpu but weight is on meta", "on meta but weight is on cpu")
    with pytest.raises(RuntimeError, match=re.escape(message)):
        getattr(ops, op_name)(*args)


def test_recording_shows_the_custom_op_once_under_its_own_name(ops):
    # torch.library.register_autograd runs an internal autograd Function inside the op: that is
    # not a second user op, and its generated name is never shown
    from gradviz.core import record
    from gradviz.core.serialize import recording_to_json

    rec = record("linear-function", params={"backend": "cpp"})
    assert [ev.op for ev in rec.forward] == ["gradviz::linear", "sum"]
    node = next(n for n in rec.nodes if n.function == "LinearFunction")
    assert node.backend == "cpp" and rec.forward[node.forward_event].op == "gradviz::linear"
    assert node.function == "LinearFunction" and node.label.startswith("LinearFunction [cpp]")
    # what the app, the CLI and the exporters show comes from this document; torch's own class
    # name is kept as data in torch_name only
    doc = recording_to_json(rec, values=False)
    for n in doc["nodes"]:
        n.pop("torch_name")
    assert "GeneratedBackwardFor" not in json.dumps(doc)
