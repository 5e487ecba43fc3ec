"""A recording made on a real GPU (an H200, 2026-12-04), opened and checked on a machine without one.

``tests/kernels/data/linear_cuda_h200.gradviz`` is what ``gradviz record linear-function --param
backend=cuda --param batch=3`` saved on the GPU machine of issue 15 (torch 2.11+cu130). Opening a
recording never runs model code, so the cuda node, its gradients and its checks are all here as
data: the graph names the backend, and the stored gradients agree with a float64 reference
computed here from the stored leaves.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gradviz.cli import main
from gradviz.core.storage import read_document

RECORDING = Path(__file__).parent / "data" / "linear_cuda_h200.gradviz"


def test_the_gpu_recording_shows_the_cuda_node_and_its_stored_checks_pass():
    doc = read_document(RECORDING)
    rec = doc.recording
    (node,) = [n for n in rec.nodes if n.backend == "cuda"]
    assert node.name == "LinearFunction"
    # the checks stored by the GPU machine, every row a pass
    assert doc.checks is not None and doc.checks.ok
    assert all(r.status == "pass" for r in doc.checks.rows), [r for r in doc.checks.rows if r.status != "pass"]


def test_the_gpu_gradients_match_a_float64_reference_computed_here():
    leaves = read_document(RECORDING).recording.leaves
    # the tensors lived on the GPU
    assert {leaves[k].tensor.device for k in ("input", "weight", "bias")} == {"cuda:0"}
    x = leaves["input"].tensor.value.astype(np.float64)
    # loss = sum(input . weight^T + bias): d/dweight = ones^T . input, d/dbias = the batch size
    np.testing.assert_allclose(leaves["weight"].grad.value, np.ones((4, 3)) @ x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(leaves["bias"].grad.value, np.full(4, 3.0), rtol=0, atol=1e-6)


def test_the_cli_checks_the_gpu_recording_here(capsys):
    # (no GPU needed: the checks that need the model re-run say so; the rest recompute here)
    status = main(["check", str(RECORDING)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "[cuda]" in out and "-> OK" in out
