"""The compiled op in the check table: a real local rule, and a backend that cannot run is an error."""
from __future__ import annotations

import numpy as np
import pytest

from gradviz.cli import main
from gradviz.core import record, run_checks
from gradviz.core.errors import BackendUnavailable
from gradviz.core.extension import NODE_NAME, _cuda_problem
from gradviz.core.session import Session


def _compiled_node(rec):
    return next(n for n in rec.nodes if n.torch_name == NODE_NAME)


def test_the_compiled_op_gets_a_local_rule_and_passes_strict(build):
    rec = record("linear-function", params={"backend": "cpp", "batch": 3})
    table = run_checks(rec, strict=True)
    node = _compiled_node(rec)
    rule = next(r for r in table.rows if r.kind == "local-rule" and r.node == node.id)
    # its forward (the compiled op itself, in float64) differentiated numerically
    assert rule.status == "pass" and rule.reference == "numerical VJP of its forward, float64", rule
    assert rule.max_abs < 1e-6
    assert table.ok and not [r for r in table.rows if r.status == "no rule"], table


@pytest.mark.parametrize("backend", ["cpp", "cuda"])
def test_a_wrong_gradient_of_the_compiled_op_fails_its_local_rule(backend, request):
    request.getfixturevalue("cuda_build" if backend == "cuda" else "build")  # (cuda: skipped without a GPU)
    rec = record("linear-function", params={"backend": backend, "batch": 3})
    node = _compiled_node(rec)
    assert node.backend == backend
    ev = next(e for e in rec.backward if e.node == node.id)
    # the recorded grad_weight (slot 1) off by 10% in one element
    weight_grad = ev.grad_inputs[1].value
    weight_grad[0, 0] = weight_grad[0, 0] * 1.1 + 0.1
    table = run_checks(rec, manual=False, finite_diff=False, gradcheck=False, flow=False, accumulation=False)
    rule = next(r for r in table.rows if r.node == node.id)
    assert rule.status == "fail" and rule.max_abs > 0.09, rule
    assert not table.ok


def test_cli_check_of_the_cpp_backend_is_strictly_ok(build, capsys):
    assert main(["check", "linear-function", "--param", "backend=cpp", "--strict"]) == 0
    assert "-> OK" in capsys.readouterr().out


def test_cli_check_of_the_cuda_backend_is_strictly_ok(cuda_build, capsys):
    # every row checked on the GPU: gradcheck and the local rule in float64, finite differences
    assert main(["check", "linear-function", "--param", "backend=cuda", "--param", "batch=3",
                 "--strict"]) == 0
    out = capsys.readouterr().out
    # (the table wraps "LinearFunction [cuda]" in its column)
    assert "-> OK" in out and "[cuda]" in out and "skipped" not in out, out


def test_the_backends_lesson_checks_on_cuda(cuda_build, capsys):
    # lesson 4 on a machine with all three backends: its cuda steps run, and every check holds
    status = main(["lesson", "cpp-and-cuda", "--check"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "step cuda-forward:" in out and "step cuda-backward:" in out and "step no-cuda:" not in out, out


def test_a_backend_that_cannot_run_fails_the_session_with_its_reason():
    reason = _cuda_problem()
    if not reason:
        pytest.skip("CUDA can run here")
    s = Session()
    messages = []
    s.failed.connect(messages.append)
    s.open("linear-function")
    before = s.recording
    with pytest.raises(BackendUnavailable):
        s.open("linear-function", {"backend": "cuda"})
    assert s.recording is before  # the torch recording stays; nothing was recorded as "cuda"
    assert messages and messages[-1].splitlines()[0] == f"error: the cuda backend cannot run here: {reason}"
    assert all(n.backend != "cuda" for n in s.recording.nodes)
    assert np.isfinite(s.recording.loss.value).all()
