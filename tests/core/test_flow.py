"""Gradient flow in the core: norms per backward step, node, module use and leaf, against independent references."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import gradviz
from gradviz.cli import main
from gradviz.core.flow import gradient_flow
from gradviz.core.models import MODELS

RTOL = 1e-6  # float64 norms of float32 values: only summation order differs


def _numpy_norm(grads) -> float:
    """sqrt of the sum of squares of every recorded incoming gradient element, in float64."""
    parts = [np.asarray(g.value, dtype=np.float64).ravel() for g in grads if g is not None]
    return float(np.sqrt(np.sum(np.concatenate(parts) ** 2))) if parts else math.nan


@pytest.mark.parametrize("name", sorted(MODELS))
def test_flow_matches_numpy_norms_of_the_recorded_gradients(name):
    rec = gradviz.record(name)
    flow = gradient_flow(rec)
    assert [s.node for s in flow.steps] == [ev.node for ev in rec.backward]
    expected = [_numpy_norm(ev.grad_outputs) for ev in rec.backward]
    np.testing.assert_allclose(flow.norms, expected, rtol=RTOL)
    assert flow.by_node() == {ev.node: s.norm for ev, s in zip(rec.backward, flow.steps)}
    for leaf, info in rec.leaves.items():
        if info.grad is None:
            assert flow.leaves[leaf] is None
        else:
            assert flow.leaves[leaf] == pytest.approx(np.linalg.norm(info.grad.value.astype(np.float64)), rel=RTOL)
    assert flow.steps[0].node == rec.root and flow.steps[0].norm == pytest.approx(1.0)  # d loss / d loss


def test_flow_matches_torch_hooks_on_a_hand_written_model():
    # an independent reference: torch's own gradients w.r.t. the intermediate tensors, caught by hooks
    seen = {}

    def build():
        torch.manual_seed(0)
        x = torch.randn(3, 4, requires_grad=True)
        w = torch.randn(4, 2, requires_grad=True)
        h = x @ w
        h.register_hook(lambda g: seen.__setitem__("h", g.detach().clone()))
        z = torch.tanh(h)
        z.register_hook(lambda g: seen.__setitem__("z", g.detach().clone()))
        return (z * z).sum(), {"x": x, "w": w}

    rec = gradviz.record(build)
    by_name = {rec.nodes[s.node].name: s.norm for s in gradient_flow(rec).steps}
    # the gradient arriving at TanhBackward0 is dL/dz; at MmBackward0 it is dL/dh
    assert by_name["TanhBackward0"] == pytest.approx(float(seen["z"].double().norm()), rel=1e-6)
    assert by_name["MmBackward0"] == pytest.approx(float(seen["h"].double().norm()), rel=1e-6)


def test_flow_per_module_use_is_the_gradient_reaching_each_use():
    rec = gradviz.record("rnn-unrolled", params={"T": 6})
    flow = gradient_flow(rec)
    assert [(u.module, u.use) for u in flow.uses] == [("cell", t) for t in range(1, 7)]
    order = {ev.node: i for i, ev in enumerate(rec.backward)}
    for u in flow.uses:
        members = [n.id for n in rec.nodes if n.module == u.module and n.use == u.use and n.id in order]
        first = min(members, key=order.__getitem__)
        assert u.node == first
        assert u.norm == pytest.approx(_numpy_norm(rec.backward[order[first]].grad_outputs), rel=RTOL)


def test_flow_without_values_uses_the_statistics_or_says_not_recorded():
    # past the memory budget a tensor keeps its statistics: the norm is the stored one
    rec = gradviz.record("mlp", budget_bytes=0)
    full = gradient_flow(gradviz.record("mlp"))
    flow = gradient_flow(rec)
    dropped = [s for ev, s in zip(rec.backward, flow.steps) if ev.grad_outputs[0].value is None]
    assert dropped, "the budget of 0 bytes kept every value"
    np.testing.assert_allclose(flow.norms, full.norms, rtol=1e-5)
    # with no values and no statistics the norm was not recorded: NaN, null in JSON, said in words
    bare = gradient_flow(gradviz.record("mlp", keep_values=False))
    assert np.isnan(bare.norms).all()
    assert all(s["norm"] is None for s in bare.to_json()["steps"])
    assert "not recorded" in bare.format()


def test_cli_flow_table_and_json(capsys):
    assert main(["flow", "rnn-unrolled", "--param", "T=3"]) == 0
    out = capsys.readouterr().out
    assert "gradient norm per backward step" in out and "gradient norm per module use" in out
    assert "cell.weight_hh" in out
    assert main(["flow", "rnn-unrolled", "--param", "T=3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rec = gradviz.record("rnn-unrolled", params={"T": 3})
    assert [s["node"] for s in data["steps"]] == [ev.node for ev in rec.backward]
    np.testing.assert_allclose([s["norm"] for s in data["steps"]],
                               [_numpy_norm(ev.grad_outputs) for ev in rec.backward], rtol=RTOL)
    assert [u["use"] for u in data["uses"]] == [1, 2, 3]


def test_inspect_json_includes_the_flow(capsys):
    assert main(["inspect", "repeated-layer", "--json", "--compact"]) == 0
    data = json.loads(capsys.readouterr().out)
    flow = data["flow"]
    assert [s["node"] for s in flow["steps"]] == data["backward_order"]
    assert flow["steps"][0]["norm"] == pytest.approx(1.0)
    assert flow["leaves"]["layer.weight"] == pytest.approx(
        float(np.linalg.norm(np.asarray(data["leaves"]["layer.weight"]["grad"]["value"], dtype=np.float64))), rel=RTOL)
