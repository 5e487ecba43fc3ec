"""Every built-in model: recorded gradients equal torch.autograd.grad and the manual calculation."""
import numpy as np
import pytest
import torch

from gradviz.core import record, run_checks
from gradviz.core.models import MODELS, repeated_layer_manual
from gradviz.core.targets import BuiltinRunner


def _fresh_grads(name, params=None):
    """Build the model again without gradviz and differentiate with torch.autograd.grad."""
    runner = BuiltinRunner(MODELS[name], params)
    built = runner.normalise(runner.call())
    names, tensors = [], []
    named = dict(built.leaves)
    if built.module is not None:
        named.update(dict(built.module.named_parameters()))
    for k, t in named.items():
        if t.requires_grad:
            names.append(k)
            tensors.append(t)
    grads = torch.autograd.grad(built.loss, tensors, allow_unused=True)
    return {k: (None if g is None else g.numpy()) for k, g in zip(names, grads)}


@pytest.mark.parametrize("name", list(MODELS))
def test_recorded_grads_equal_autograd_bit_for_bit(name):
    rec = record(name)
    expected = _fresh_grads(name)
    assert expected, "the model has leaves that need grad"
    for leaf, g in expected.items():
        got = rec.grad_of(leaf)
        assert got is not None, leaf
        # recording never changes the result: the same bits as a run without gradviz
        np.testing.assert_array_equal(got, g, err_msg=leaf)


@pytest.mark.parametrize("name", list(MODELS))
def test_recorded_grads_equal_manual_calculation(name):
    rec = record(name)
    assert rec.manual, "every built-in model has a manual calculation"
    for leaf, expected in rec.manual.items():
        info = rec.leaves[leaf]
        if expected is None:
            assert info.grad is None, leaf
            continue
        np.testing.assert_allclose(info.grad.value, expected, rtol=1e-4, atol=1e-5, err_msg=leaf)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_check_passes_and_every_node_has_a_rule(name):
    table = run_checks(rec := record(name), strict=True)
    assert table.ok, table.format()
    kinds = {r.kind for r in table.rows}
    assert {"manual", "finite-diff", "local-rule", "accumulation"} <= kinds
    assert len([r for r in table.rows if r.kind == "local-rule"]) == len(
        [n for n in rec.backward_order if rec.nodes[n].kind != "leaf"])


@pytest.mark.parametrize("w", [0.7, -1.3, 2.0])
def test_repeated_layer_closed_form(w):
    x, label = 10.0, 5.0
    rec = record("repeated-layer", params={"w": w})
    # dL/dw for L = (w^2 x - y)^2 is 4 (w^2 x - y) w x
    expected = 4 * (w * w * x - label) * w * x
    got = float(rec.grad_of("layer.weight").reshape(()))
    assert got == pytest.approx(expected, rel=1e-5)
    info = rec.leaves["layer.weight"]
    assert len(info.contributions) == 2
    total = sum(float(c.value.value.reshape(())) for c in info.contributions)
    assert total == pytest.approx(got, rel=1e-6)
    # ONE AccumulateGrad node for the shared weight, with one incoming edge per use, run once
    acc = [n for n in rec.nodes if n.kind == "leaf" and n.leaf == "layer.weight"]
    assert len(acc) == 1
    assert sum(1 for s, d, _ in rec.edges if d == acc[0].id) == 2
    assert rec.backward_order.count(acc[0].id) == 1
    assert rec.backward_order[-1] == acc[0].id


@pytest.mark.parametrize("k", [2, 3, 4])
def test_repeated_layer_per_use_contributions_in_execution_order(k):
    rec = record("repeated-layer", params={"k": k, "n": 3, "tanh": True, "seed": 3})
    info = rec.leaves["layer.weight"]
    W = info.tensor.value
    x = rec.leaves["x"].tensor.value
    label = rec.leaves["label"].tensor.value
    per_use = repeated_layer_manual(W, x, label, k, True)
    got = [c.value.value for c in info.contributions]
    assert len(got) == k
    # backward reaches the last use first: contributions arrive use k, k-1, ..., 1
    for g, expected in zip(got, reversed(per_use)):
        np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-6)
    # the per-use terms really differ, so this test can tell uses apart
    assert not np.allclose(per_use[0], per_use[-1])
    # each contribution comes from a node of a different use, in backward order
    producer_uses = [rec.nodes[c.producer].use for c in info.contributions]
    assert producer_uses == list(range(k, 0, -1))
    positions = [rec.backward_order.index(c.producer) for c in info.contributions]
    assert positions == sorted(positions)
    np.testing.assert_allclose(info.contributions[-1].running_sum.value, info.grad.value, rtol=1e-6, atol=1e-7)


def test_rnn_unrolled_has_a_node_per_step_and_sums_every_step():
    T = 6
    rec = record("rnn-unrolled", params={"T": T})
    tanh_nodes = [n for n in rec.nodes if n.name == "TanhBackward0"]
    assert sorted(n.use for n in tanh_nodes) == list(range(1, T + 1))
    assert all(n.module == "cell" and n.uses == T for n in tanh_nodes)
    for leaf in ("cell.weight_ih", "cell.weight_hh", "cell.bias_ih", "cell.bias_hh"):
        assert len(rec.leaves[leaf].contributions) == T


def test_linear_function_node_is_the_custom_function_with_its_backend():
    rec = record("linear-function")
    (node,) = [n for n in rec.nodes if n.kind == "custom"]
    assert node.name == "LinearFunction" and node.backend == "torch"
    assert node.function.endswith("LinearFunction")
    assert set(node.saved) >= {"saved_tensors[0]", "saved_tensors[1]", "saved_tensors[2]"}
    assert rec.leaves["input"].grad is None and not rec.leaves["input"].requires_grad


def test_params_are_typed_and_validated():
    from gradviz.core.errors import GradvizError

    rec = record("repeated-layer", params={"k": "3", "tanh": "true", "n": "2"})
    assert rec.params["k"] == 3 and rec.params["tanh"] is True
    with pytest.raises(GradvizError, match="no parameter 'q'"):
        record("repeated-layer", params={"q": 1})
    with pytest.raises(GradvizError, match="takes a int"):
        record("repeated-layer", params={"k": "many"})


@pytest.mark.parametrize("name", list(MODELS))
def test_seed_changes_values_and_is_reproducible(name):
    a, b, c = record(name, params={"seed": 1}), record(name, params={"seed": 1}), record(name, params={"seed": 2})
    leaf = next(k for k, v in a.leaves.items() if v.grad is not None)
    np.testing.assert_array_equal(a.grad_of(leaf), b.grad_of(leaf))
    assert not np.array_equal(a.grad_of(leaf), c.grad_of(leaf))
