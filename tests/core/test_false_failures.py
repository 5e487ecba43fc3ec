"""No false failures (issue 12): faulty-looking but correct model scripts pass their checks; the
same setting with a genuinely wrong gradient still fails.

Each script in tests/core/scripts runs through ``gradviz check SCRIPT`` (a subprocess: exit code,
stdout rows, stderr lines) and through the Python API; gradients are also compared with references
computed here independently (numpy formulas or torch without gradviz), with explicit tolerances.
"""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from gradviz.core import record, run_checks

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def script(name: str) -> str:
    return os.path.join(SCRIPTS, name)


def gradviz_check(name: str, *extra: str) -> subprocess.CompletedProcess:
    """``gradviz check SCRIPT`` in its own process, as a user runs it."""
    env = dict(os.environ, PYTHONPATH=ROOT, COLUMNS="200", QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-m", "gradviz.cli", "check", script(name), *extra],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300, cwd=ROOT)


def rows_of(stdout: str, kind: str) -> list[str]:
    """The table lines of one kind of check (the first line of each row)."""
    return [line for line in stdout.splitlines() if line.startswith(kind + " ")]


def checked(name: str):
    """Record a script through the Python API (warnings caught) and run its checks."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = record(script(name))
        table = run_checks(rec)
    return rec, table, caught


def kind_rows(table, kind):
    return [r for r in table.rows if r.kind == kind]


# --------------------------------------------------------------------------------- complex tensors

def test_complex_abs_passes_without_warnings_through_the_cli():
    proc = gradviz_check("complex_abs.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""  # no "Casting complex values to real discards the imaginary part"
    (rule,) = [line for line in rows_of(proc.stdout, "local-rule") if "AbsBackward0" in line]
    assert rule.rstrip().endswith("pass") and "complex numpy rule" in rule
    (fd,) = rows_of(proc.stdout, "finite-diff")
    assert "along real and" in fd and fd.rstrip().endswith("pass")
    assert "-> OK" in proc.stdout


def test_complex_abs_gradient_is_z_over_abs_z_and_every_row_passes():
    rec, table, caught = checked("complex_abs.py")
    assert not [w for w in caught if "complex" in str(w.message).lower()]
    z = rec.leaves["z"].tensor.value
    # torch's convention for a real loss: dL/dx + i dL/dy; for sum |z| that is z / |z|
    np.testing.assert_allclose(rec.leaves["z"].grad.value, z / np.abs(z), rtol=1e-6, atol=1e-6)
    assert table.ok and not table.failed
    statuses = {r.kind: r.status for r in table.rows}
    assert statuses["local-rule"] == "pass" and statuses["finite-diff"] == "pass"


def test_complex_ops_every_node_has_a_complex_aware_rule_that_passes():
    rec, table, caught = checked("complex_ops.py")
    assert not [w for w in caught if "complex" in str(w.message).lower()]
    assert table.ok, [r for r in table.failed]
    rules = kind_rows(table, "local-rule")
    assert {r.status for r in rules} == {"pass"}
    names = " ".join(r.what for r in rules)
    for cls in ("AbsBackward0", "AngleBackward0", "ConjBackward0", "MvBackward0", "DivBackward0", "ExpBackward0",
                "ViewAsRealBackward0"):
        assert cls in names
    # finite differences in complex128 are tight: torch's gradients against ours at 1e-6
    fd = {r.leaf: r for r in kind_rows(table, "finite-diff")}
    assert set(fd) == {"z", "a", "w"} and all(r.status == "pass" and r.max_abs < 1e-6 for r in fd.values())
    assert "complex128" in fd["z"].reference and "float64" in fd["w"].reference


def test_complex_reference_is_torch_autograd_grad_without_gradviz():
    rec, _, _ = checked("complex_ops.py")
    # the same model, run by torch alone: gradviz's recorded gradients are torch's own
    namespace = {}
    exec(open(script("complex_ops.py")).read(), namespace)
    torch.manual_seed(0)
    loss, leaves = namespace["build"]()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    for (name, _), g in zip(leaves.items(), grads):
        np.testing.assert_array_equal(rec.leaves[name].grad.value, g.numpy())


def test_a_right_complex_custom_function_passes_gradcheck_and_its_numerical_rule():
    rec, table, _ = checked("complex_function.py")
    assert table.ok, table.failed
    assert [r.status for r in kind_rows(table, "gradcheck")] == ["pass"]
    rule = next(r for r in kind_rows(table, "local-rule") if "Scale" in r.what)
    assert rule.status == "pass" and rule.reference == "numerical VJP of its forward, float64"
    # d/dz of sum |C z| in torch's convention: conj(C) * (C z) / |C z|
    z = rec.leaves["z"].tensor.value
    c = np.array([0.5 + 2.0j, -1.0 + 0.5j, 2.0 - 1.0j])
    np.testing.assert_allclose(rec.leaves["z"].grad.value, np.conj(c) * (c * z) / np.abs(c * z), rtol=1e-12)


def test_a_wrong_complex_backward_still_fails():
    proc = gradviz_check("complex_wrong.py")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert rows_of(proc.stdout, "finite-diff")[0].rstrip().endswith("FAIL")
    _, table, _ = checked("complex_wrong.py")
    by_kind = {r.kind: r for r in table.failed}
    assert set(by_kind) >= {"finite-diff", "gradcheck", "local-rule"}
    # at each element the wrong backward sends g*C instead of g*conj(C): off by |2 Im(C)| times |g| = 1
    assert abs(by_kind["local-rule"].max_abs - 4.0) < 1e-6


# ---------------------------------------------------------------- a .grad set before the recorded backward

BEFORE = ".grad held a value before the recorded backward"


def test_retain_graph_inside_build_passes_through_the_cli_with_a_note():
    proc = gradviz_check("retain_graph.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fds = rows_of(proc.stdout, "finite-diff")
    assert len(fds) == 2 and all(r.rstrip().endswith("pass") for r in fds)
    assert "finite-diff w.grad: " + BEFORE in proc.stdout and "-> OK" in proc.stdout


def test_retain_graph_compares_what_the_recorded_backward_added():
    rec, table, _ = checked("retain_graph.py")
    assert table.ok
    w, b = rec.leaves["w"], rec.leaves["b"]
    wv, bv = w.tensor.value.astype(np.float64), b.tensor.value.astype(np.float64)
    # loss = sum(w*w*b) + sum(tanh b): dL/dw = 2 w b, dL/db = w^2 + 1 - tanh(b)^2, once before and once recorded
    ref_w, ref_b = 2 * wv * bv, wv ** 2 + 1 - np.tanh(bv) ** 2
    np.testing.assert_allclose(w.initial_grad.value, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w.grad.value, 2 * ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.grad.value - b.initial_grad.value, ref_b, rtol=1e-5, atol=1e-6)
    fd = {r.leaf: r for r in kind_rows(table, "finite-diff")}
    assert all(r.status == "pass" and r.max_abs < 1e-4 and BEFORE in r.detail for r in fd.values())


def test_a_large_left_over_grad_does_not_fail_on_rounding():
    # 1e5 + 2w in float32 keeps about 3 decimals of 2w: the tolerance makes room for that rounding only
    rec, table, _ = checked("grad_left_over.py")
    (fd,) = kind_rows(table, "finite-diff")
    assert fd.status == "pass" and 1e-4 < fd.max_abs < 1.3e-2, fd
    w = rec.leaves["w"]
    np.testing.assert_allclose(w.grad.value - 1e5, 2 * w.tensor.value, atol=2e-2)


def test_a_wrong_backward_with_retain_graph_still_fails():
    proc = gradviz_check("retain_graph_wrong.py")
    assert proc.returncode == 1
    rec, table, _ = checked("retain_graph_wrong.py")
    (fd,) = kind_rows(table, "finite-diff")
    # the wrong backward adds w where 2w is right: off by |w| per element, the earlier .grad taken out
    assert fd.status == "fail" and abs(fd.max_abs - np.abs(rec.leaves["w"].tensor.value).max()) < 1e-4
    assert {r.kind for r in table.failed} >= {"finite-diff", "gradcheck"}


def test_manual_row_compares_the_recorded_contribution():
    rec = record("repeated-layer")
    name = next(iter(rec.manual))
    info = rec.leaves[name]
    earlier = np.full(info.grad.value.shape, 3.0, dtype=info.grad.value.dtype)
    # as if .grad had held 3.0 everywhere before the recorded backward
    info.initial_grad = type(info.grad)(info.grad.shape, info.grad.dtype, info.grad.device, earlier)
    info.grad.value = info.grad.value + earlier
    table = run_checks(rec, finite_diff=False)
    row = next(r for r in kind_rows(table, "manual") if r.leaf == name)
    assert row.status == "pass" and BEFORE in row.detail, row
    # the same .grad with no record of the earlier value is rightly a failure (off by 3.0)
    info.initial_grad = None
    row = next(r for r in kind_rows(run_checks(rec, finite_diff=False), "manual") if r.leaf == name)
    assert row.status == "fail" and abs(row.max_abs - 3.0) < 1e-4


# ------------------------------------------------------------------------- ops in worker threads

UNSEEN = "ops ran where gradviz cannot follow them"


def test_a_thread_pool_inside_build_skips_finite_differences_with_a_note_through_the_cli():
    proc = gradviz_check("threads_pool.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (fd,) = rows_of(proc.stdout, "finite-diff")
    assert fd.rstrip().endswith("skipped") and "finite-diff w.grad: " + UNSEEN in proc.stdout
    assert "another thread" in proc.stdout and "-> OK" in proc.stdout and proc.stderr == ""


def test_a_thread_pool_records_exactly_and_every_other_row_passes():
    rec, table, _ = checked("threads_pool.py")
    assert table.ok and not table.failed
    (fd,) = kind_rows(table, "finite-diff")
    assert fd.status == "skipped" and UNSEEN in fd.detail
    # the nodes the worker made are the ones named, and they are still checked by their local rules
    unseen = {rec.nodes[i].name for i in rec.meta["unseen_nodes"]}
    assert unseen == {"TanhBackward0", "MmBackward0"}
    assert {r.status for r in kind_rows(table, "local-rule")} == {"pass"}
    assert any("MmBackward0" in r.what for r in kind_rows(table, "local-rule"))
    # recording is exact: the same gradient as torch alone, bit for bit
    namespace = {}
    exec(open(script("threads_pool.py")).read(), namespace)
    torch.manual_seed(0)
    loss, leaves = namespace["build"]()
    (g,) = torch.autograd.grad(loss, [leaves["w"]])
    np.testing.assert_array_equal(rec.leaves["w"].grad.value, g.numpy())


def test_a_wrong_backward_run_in_a_worker_thread_still_fails():
    proc = gradviz_check("threads_wrong.py")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert any(r.rstrip().endswith("FAIL") for r in rows_of(proc.stdout, "gradcheck"))
    _, table, _ = checked("threads_wrong.py")
    failed = {r.kind: r for r in table.failed}
    assert set(failed) == {"gradcheck", "local-rule"} and "Square" in failed["local-rule"].what
    # the numerical VJP of Square's forward is 2 x g; the wrong backward sent x g: off by half
    assert abs(failed["local-rule"].max_rel - 0.5) < 1e-3


@pytest.mark.parametrize("name", ["seen_inplace.py", "seen_views.py", "seen_double_backward.py",
                                  "seen_modules.py", "complex_ops.py", "retain_graph.py"])
def test_models_without_threads_have_every_node_seen(name):
    # no false skip: in-place ops on views, attribute views, composite ops, checkpointing, hooks and
    # backward passes inside build() are all ops gradviz saw make their nodes
    rec = record(script(name))
    assert rec.meta["unseen_nodes"] == []


@pytest.mark.parametrize("name", ["seen_inplace.py", "seen_double_backward.py"])
def test_finite_differences_still_run_and_pass_without_threads(name):
    _, table, _ = checked(name)
    fds = kind_rows(table, "finite-diff")
    assert fds and {r.status for r in fds} == {"pass"} and table.ok


# ------------------------------------------------------------------------------ repeated warnings

def test_a_warning_repeated_in_a_loop_and_in_every_re_run_reaches_the_user_once():
    proc = gradviz_check("warns_in_a_loop.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    # one line per warning: the script's (shown at its line), and torch's (placed at the script's
    # line that made torch warn, not inside gradviz)
    assert lines == [
        "warning: UserWarning: the learning rate is very small (tests/core/scripts/warns_in_a_loop.py:11)",
        "warning: UserWarning: To copy construct from a tensor, it is recommended to use sourceTensor.detach()"
        ".clone() or sourceTensor.detach().clone().requires_grad_(True), rather than torch.tensor(sourceTensor)."
        " (tests/core/scripts/warns_in_a_loop.py:14)"], proc.stderr
    # finite differences re-ran the model (each run warned 5 times): still one line each
    assert rows_of(proc.stdout, "finite-diff")[0].rstrip().endswith("pass")


def test_the_python_api_shows_each_warning_of_a_recording_and_its_checks_once():
    _, table, caught = checked("warns_in_a_loop.py")
    assert table.ok
    texts = [str(w.message) for w in caught]
    assert texts.count("the learning rate is very small") == 1
    assert sum("To copy construct" in t for t in texts) == 1
    assert not [w for w in caught if os.path.dirname(os.path.abspath(w.filename)).startswith(
        os.path.join(ROOT, "gradviz"))]


# ------------------------------------------------------------- leaves in their own dtype, attribute views

def test_a_float32_leaf_beside_float64_ones_is_differenced_in_float32():
    # the whole model re-runs in float64, but the script makes v float32: a float64 step (1e-6)
    # in a float32 tensor was a false failure (error 6.7e-2); v gets float32's step and tolerance
    rec, table, _ = checked("mixed_dtypes.py")
    fd = {r.leaf: r for r in kind_rows(table, "finite-diff")}
    assert fd["w"].status == "pass" and fd["w"].reference == "central differences, float64"
    assert fd["v"].status == "pass" and "(the leaf is made in its own dtype)" in fd["v"].reference
    assert fd["v"].max_abs < 1e-3
    # v.grad = 3 tanh(w), computed here in numpy
    w = rec.leaves["w"].tensor.value
    np.testing.assert_allclose(rec.leaves["v"].grad.value, 3 * np.tanh(w), rtol=1e-6)


def test_leaves_used_only_through_attribute_views_are_differenced():
    # x @ w.T and z.real are w's and z's only uses: they were skipped ("not used by a recorded op")
    proc = gradviz_check("attribute_views.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fds = rows_of(proc.stdout, "finite-diff")
    assert len(fds) == 2 and all(r.rstrip().endswith("pass") for r in fds)
    rec, table, _ = checked("attribute_views.py")
    z = rec.leaves["z"].tensor.value
    # d/dx (x + y^2) + i d/dy (x + y^2) = 1 + 2 i y
    np.testing.assert_allclose(rec.leaves["z"].grad.value, 1 + 2j * z.imag, rtol=1e-6)
    assert {"w", "z"} <= set(rec.leaf_order) and table.ok
