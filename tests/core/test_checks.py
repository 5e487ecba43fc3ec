"""The check table: each kind of check passes on right gradients and fails on wrong ones."""
import json

import numpy as np
import pytest
import torch

from gradviz.core import record, run_checks
from gradviz.core.serialize import recording_to_json
from gradviz.core.checks import Tolerance, compare


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * g * x


class WrongSquare(Square):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x  # missing the factor 2


def _build(fn):
    def build():
        x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
        return fn.apply(x).sum(), {"x": x}
    return build


def _rows(table, kind):
    return [r for r in table.rows if r.kind == kind]


def test_right_custom_function_passes_gradcheck_and_finite_differences():
    table = run_checks(record(_build(Square)))
    assert [r.status for r in _rows(table, "gradcheck")] == ["pass"]
    assert [r.status for r in _rows(table, "finite-diff")] == ["pass"]
    assert table.ok


def test_wrong_custom_function_fails_and_no_rule_is_never_a_pass():
    table = run_checks(record(_build(WrongSquare)))
    assert [r.status for r in _rows(table, "gradcheck")] == ["fail"]
    fd = _rows(table, "finite-diff")[0]
    assert fd.status == "fail" and fd.max_abs > 1.0
    # its local rule: the forward differentiated numerically, against the recorded backward
    rule = next(r for r in _rows(table, "local-rule") if "WrongSquare" in r.what)
    assert rule.status == "fail" and rule.reference == "numerical VJP of its forward, float64"
    assert abs(rule.max_abs - 3.0) < 1e-4  # at x = 3: 2 * g * x = 6, the wrong backward sent 3
    assert not table.ok


def test_a_right_custom_function_passes_its_numerical_local_rule():
    table = run_checks(record(_build(Square)))
    rule = next(r for r in _rows(table, "local-rule") if "Square" in r.what)
    assert rule.status == "pass" and rule.max_abs < 1e-6, rule


def test_no_rule_fails_only_when_strict():
    def build():
        x = torch.tensor([0.5, 1.5, 2.5], requires_grad=True)
        return torch.lgamma(x).sum(), {"x": x}  # no numpy rule for LgammaBackward0

    rec = record(build)
    assert run_checks(rec).ok
    strict = run_checks(rec, strict=True)
    assert not strict.ok and [(r.status, r.what) for r in strict.failed] == [("no rule", "node 1 LgammaBackward0")]


def test_a_tampered_gradient_fails_its_local_rule_and_the_accumulation():
    rec = record("sum-xy-plus-z")
    mul = next(e for e in rec.backward if rec.nodes[e.node].name == "MulBackward0")
    mul.grad_inputs[0].value[0, 0] += 0.5
    rec.leaves["x"].grad.value[1, 1] += 0.25
    table = run_checks(rec, finite_diff=False)
    rule = next(r for r in _rows(table, "local-rule") if r.node == mul.node)
    assert rule.status == "fail" and rule.max_abs == np.float32(0.5)
    acc = next(r for r in _rows(table, "accumulation") if r.leaf == "x")
    assert acc.status == "fail"
    manual = next(r for r in _rows(table, "manual") if r.leaf == "x")
    assert manual.status == "fail" and abs(manual.max_abs - 0.25) < 1e-6


def test_model_that_cannot_run_in_float64_uses_its_own_dtype_with_a_stated_tolerance():
    def build():
        w = torch.tensor([0.5, -1.5, 2.0], dtype=torch.float32, requires_grad=True)
        return (torch.tanh(w) * w).sum(), {"w": w}

    table = run_checks(record(build))
    (fd,) = _rows(table, "finite-diff")
    assert "does not run in float64" in fd.reference and fd.status == "pass"
    assert fd.tolerance == str(Tolerance(5e-2 * 1.0, 5e-2)) or "rtol=5e-02" in fd.tolerance


def test_a_float32_module_made_before_build_is_checked_in_float64_and_left_as_it_was():
    # the usual script: the model is made at the top level, in float32; build() makes float64
    # inputs in the re-run, so the module's weights are cast to float64 for it, then given back
    lin = torch.nn.Linear(4, 3)
    norm = torch.nn.BatchNorm1d(3)  # running statistics: buffers every re-run changes
    def state():
        return {f"{name}.{k}": v.clone() for name, m in (("lin", lin), ("norm", norm)) for k, v in m.state_dict().items()}

    before = state()
    weight = lin.weight

    def build():
        x = torch.randn(5, 4)
        return torch.tanh(norm(lin(x))).sum(), {}

    rec = record(build)
    after_record = state()
    fds = _rows(run_checks(rec), "finite-diff")
    assert {r.what for r in fds} == {"Linear.weight.grad", "Linear.bias.grad", "BatchNorm1d.weight.grad",
                                     "BatchNorm1d.bias.grad"}
    for r in fds:
        assert r.status == "pass" and r.reference == "central differences, float64", r
        assert r.max_abs < 1e-5  # float32 autograd against float64 differences
    # every parameter and buffer is back: same objects, same dtype, same values as after recording
    assert lin.weight is weight and lin.weight.dtype == torch.float32
    for k, v in state().items():
        assert v.dtype == after_record[k].dtype and torch.equal(v, after_record[k]), k
    assert torch.equal(lin.weight, before["lin.weight"])


def test_a_model_that_cannot_run_in_float64_even_cast_is_checked_in_its_own_dtype():
    def build():
        x = torch.ones(3, dtype=torch.float32, requires_grad=True)
        y = (x * 2).to(torch.float32)
        return (y.half().float() ** 2).sum(), {"x": x}  # float16 on the way

    fds = _rows(run_checks(record(build)), "finite-diff")
    assert [r.status for r in fds] == ["pass"]


def test_an_integer_index_used_first_does_not_stop_finite_differences():
    # the first source tensor the model uses is an int64 index: asking it whether the model runs
    # in float64 (by perturbing it) once skipped every finite-difference check
    emb = torch.nn.Embedding(5, 3)

    def build():
        idx = torch.tensor([0, 2, 4])
        return (emb(idx) ** 2).sum(), {}

    (fd,) = _rows(run_checks(record(build)), "finite-diff")
    assert fd.what == "Embedding.weight.grad" and fd.status == "pass", fd


def test_finite_differences_sample_large_leaves():
    def build():
        w = torch.randn(20, 10, dtype=torch.float64, requires_grad=True)
        return (w.sin() * w).sum(), {"w": w}

    table = run_checks(record(build), fd_max_elements=16)
    (fd,) = _rows(table, "finite-diff")
    assert fd.status == "pass" and "16 of 200 elements" in fd.detail


def test_float64_model_is_checked_tightly():
    def build():
        w = torch.randn(4, dtype=torch.float64, requires_grad=True)
        return (w.exp() * w).sum(), {"w": w}

    table = run_checks(record(build))
    assert table.ok
    fd = _rows(table, "finite-diff")[0]
    assert fd.max_abs < 1e-8


def test_compare():
    a = np.array([1.0, 2.0])
    assert compare(a, a, Tolerance(0, 0)) == (0.0, 0.0, True)
    err, rel, ok = compare(a + 1e-3, a, Tolerance(1e-4, 1e-4))
    assert not ok and abs(err - 1e-3) < 1e-12 and abs(rel - 1e-3) < 1e-9
    assert compare(np.ones(3), np.ones(2), Tolerance(1, 1))[2] is False
    assert compare(np.array([np.nan]), np.array([np.nan]), Tolerance(0, 0))[2] is True


def test_compare_many_gives_what_compare_gives_pair_by_pair():
    from gradviz.core.checktable import compare_many, scale_of, tolerance_for

    rng = np.random.default_rng(3)
    actual, reference, dtypes = [], [], []
    for k in range(400):
        shape = tuple(int(n) for n in rng.integers(1, 4, size=int(rng.integers(0, 3))))
        b = np.asarray(rng.normal(size=shape) * 10.0 ** int(rng.integers(-3, 4)))
        a = b + np.asarray(rng.normal(size=shape)) * 10.0 ** int(rng.integers(-12, -2))
        case = k % 10
        if case == 1 and a.size:
            a.flat[0] = np.nan  # fails
        elif case == 2 and a.size:
            a.flat[0] = b.flat[0] = np.nan  # agrees
        elif case == 3 and a.size:
            a.flat[-1], b.flat[-1] = np.inf, -np.inf  # fails
        elif case == 4 and a.size:
            a.flat[-1] = b.flat[-1] = np.inf  # agrees
        elif case == 5:
            b = np.zeros(a.size + 1)  # sizes differ
        elif case == 6:
            a, b = a.astype(np.float32), b.reshape(-1)  # float32, and a flat reference of the same size
        elif case == 7:
            a = a + 1j * a  # complex: one by one
        elif case == 8:
            a = b = np.zeros((0, 3))
        actual.append(a)
        reference.append(b)
        dtypes.append(("float32", "float64", "float16", "complex64")[k % 4])
    got = compare_many(actual, reference, dtypes, "rule")
    for a, b, dtype, (ea, er, ok, tol) in zip(actual, reference, dtypes, got):
        want_tol = tolerance_for(dtype, "rule", scale_of(np.asarray(b)))
        assert tol == want_tol
        assert (ea, er, ok) == compare(a, b, want_tol)
    assert 0 < sum(not g[2] for g in got) < len(got)


def test_table_format_and_json():
    table = run_checks(record("repeated-layer"))
    text = table.format()
    assert "max abs err" in text and text.rstrip().endswith("-> OK")
    data = table.to_json()
    assert data["ok"] and data["counts"]["pass"] == len(table.rows)


@pytest.mark.parametrize("target", ["sum-xy-plus-z", "linear-function", "repeated-layer", "rnn-unrolled", "mlp"])
def test_checks_leave_the_recording_as_it_was(target):
    # the checks re-run the model and replay custom Functions; none of that may log into the
    # recording (a replay through the recorder's patched Function.apply once added 34 forward ops)
    rec = record(target)
    before = json.dumps(recording_to_json(rec, values=True), sort_keys=True)
    table = run_checks(rec)
    assert table.ok, table.format()
    assert json.dumps(recording_to_json(rec, values=True), sort_keys=True) == before


def test_flow_sums_what_every_sender_sent_and_fails_on_a_tampered_arrival():
    def build():
        x = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
        h = x * 2
        return (h * h + h.sin()).sum(), {"x": x}

    rec = record(build)
    table = run_checks(rec)
    mul2 = next(n.id for n in rec.nodes if n.name == "MulBackward0" and any(
        e[1] == rec.leaves["x"].node for e in rec.edges if e[0] == n.id))  # h = x * 2
    row = next(r for r in _rows(table, "flow") if r.node == mul2)
    # h feeds h * h (two slots) and sin: three gradients summed by the engine
    assert row.status == "pass" and row.reference == "sum of the 3 gradients sent", row
    assert len(_rows(table, "flow")) == sum(1 for n in rec.nodes if n.kind != "leaf" and n.id != 0)
    # what arrived at h's node no longer matches what was sent
    arrived = next(e for e in rec.backward if e.node == mul2)
    arrived.grad_outputs[0].value[1] += 0.125
    row = next(r for r in _rows(run_checks(rec, finite_diff=False), "flow") if r.node == mul2)
    assert row.status == "fail" and abs(row.max_abs - 0.125) < 1e-12
    assert "only a gradient hook should" in row.detail


def test_a_gradient_hook_is_named_where_it_changes_the_gradient(tmp_path):
    path = tmp_path / "hooked.py"
    path.write_text("import torch\n"
                    "def build():\n"
                    "    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)\n"
                    "    y = x * 3\n"
                    "    y.register_hook(lambda g: g * 10)\n"
                    "    return (y * y).sum(), {'x': x}\n")
    rec = record(str(path))
    assert rec.meta["grad_hooks"] == [f"{path}:5"]
    table = run_checks(rec)
    (fd,) = _rows(table, "finite-diff")
    assert fd.status == "fail" and fd.detail.startswith("gradient hooks (") and "hooked.py:5)" in fd.detail
    # the hook sits between y * y (node 1) and x * 3 (node 2): that flow row fails, the others pass
    flows = {r.node: r for r in _rows(table, "flow")}
    x3 = next(n.id for n in rec.nodes if n.name == "MulBackward0" and n.id != 1)
    assert flows[x3].status == "fail" and "a gradient hook does that (" in flows[x3].detail
    assert flows[x3].detail.endswith("hooked.py:5)")
    assert all(r.status == "pass" for nid, r in flows.items() if nid != x3)
    assert "notes:\n  finite-diff x.grad: gradient hooks (" in table.format()


def test_module_backward_hooks_are_noted_and_torch_internal_hooks_are_not():
    lin = torch.nn.Linear(2, 2)
    lin.register_full_backward_hook(lambda module, grad_in, grad_out: None)
    inner = torch.nn.Linear(2, 2)

    def build():
        x = torch.randn(3, 2, requires_grad=True)
        # checkpointing registers hooks of its own, from torch's files
        h = torch.utils.checkpoint.checkpoint(inner, x, use_reentrant=False)
        return lin(h).sum(), {"x": x}

    rec = record(build)
    # unnamed modules are named in order of first use: inner is Linear, lin is Linear2
    assert rec.meta["grad_hooks"] == ["a backward hook on module Linear2"], rec.meta["grad_hooks"]


def test_a_hook_put_on_a_parameter_before_recording_is_noted():
    lin = torch.nn.Linear(2, 1)
    lin.weight.register_hook(lambda g: g * 0)  # freezes the weight, say

    def build():
        return lin(torch.ones(3, 2)).sum(), {}

    rec = record(build)
    assert rec.meta["grad_hooks"] == ["a gradient hook on Linear.weight"]
    table = run_checks(rec)
    fd = next(r for r in _rows(table, "finite-diff") if r.leaf == "Linear.weight")
    assert fd.status == "fail" and "a gradient hook on Linear.weight" in fd.detail
    assert next(r for r in _rows(table, "finite-diff") if r.leaf == "Linear.bias").status == "pass"


def test_checking_a_custom_function_never_writes_to_the_user_s_tensors():
    # gradcheck and the numerical local rule perturb their inputs in place: copies, not the leaf
    seen = []

    class Spy(Square):
        @staticmethod
        def forward(ctx, x):
            seen.append(x.data_ptr())
            return Square.forward(ctx, x)

    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)

    def build():
        return Spy.apply(x).sum(), {"x": x}

    rec = record(build)
    ptr = x.data_ptr()
    table = run_checks(rec, finite_diff=False)
    assert table.ok, table.format()
    assert x.tolist() == [1.0, -2.0, 3.0]
    assert seen[0] == ptr and ptr not in seen[1:]  # every re-run of forward got a copy


def test_without_values_a_custom_function_s_local_rule_is_skipped_not_missing():
    rec = record(_build(WrongSquare), keep_values=False)
    rule = next(r for r in _rows(run_checks(rec, finite_diff=False, gradcheck=False), "local-rule")
                if "WrongSquare" in r.what)
    assert (rule.status, rule.detail) == ("skipped", "values were not kept")
