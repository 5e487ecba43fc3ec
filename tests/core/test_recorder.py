"""The recording itself: graph structure, slots, ids, order, accumulation, budget, sources."""
import os

import numpy as np
import pytest
import torch

from gradviz.core import record
from gradviz.core.errors import GraphTooLarge
from graph_reference import recorded_edges, torch_edges


def test_x_times_x_keeps_both_edges_to_one_accumulate_grad():
    def build():
        x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
        return (x * x).sum(), {"x": x}

    rec = record(build)
    acc = [n for n in rec.nodes if n.kind == "leaf"]
    assert len(acc) == 1 and acc[0].leaf == "x"
    mul = next(n for n in rec.nodes if n.name == "MulBackward0")
    slots = sorted(slot for s, d, slot in rec.edges if s == mul.id and d == acc[0].id)
    assert slots == [0, 1]
    assert rec.graph.number_of_edges(mul.id, acc[0].id) == 2
    info = rec.leaves["x"]
    # d(x*x)/dx = x + x: two contributions of x each, summed once by the engine
    assert [c.slot for c in info.contributions] == [0, 1]
    for c in info.contributions:
        np.testing.assert_array_equal(c.value.value, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(info.grad.value, [2.0, 4.0, 6.0])
    assert rec.backward_order.count(acc[0].id) == 1


def test_a_plus_a_two_slots():
    def build():
        a = torch.randn(2, 2, requires_grad=True)
        return (a + a).sum(), {"a": a}

    rec = record(build)
    add = next(n for n in rec.nodes if n.name == "AddBackward0")
    assert sorted(slot for s, d, slot in rec.edges if s == add.id) == [0, 1]
    np.testing.assert_array_equal(rec.grad_of("a"), np.full((2, 2), 2.0))


def test_every_torch_edge_is_in_the_graph_and_nothing_else():
    torch.manual_seed(0)

    def build():
        torch.manual_seed(0)
        lin = torch.nn.Linear(3, 3)
        x = torch.randn(2, 3)
        h = torch.tanh(lin(x))
        h = lin(h) * h
        return (h.exp().mean() + lin(h).pow(2).sum()), lin

    rec = record(build)
    loss, _ = build()
    assert recorded_edges(rec) == torch_edges(loss)


def test_ids_are_stable_across_runs():
    a, b = record("rnn-unrolled"), record("rnn-unrolled")
    assert [(n.id, n.name, n.kind, n.use, n.leaf) for n in a.nodes] == [
        (n.id, n.name, n.kind, n.use, n.leaf) for n in b.nodes]
    assert a.edges == b.edges and a.backward_order == b.backward_order
    assert a.nodes[0].id == 0 and a.root == 0


def test_backward_order_runs_each_node_after_its_senders():
    rec = record("rnn-unrolled", params={"T": 4})
    pos = {n: i for i, n in enumerate(rec.backward_order)}
    assert len(pos) == len(rec.backward_order), "every node runs once"
    for s, d, _ in rec.edges:
        assert pos[s] < pos[d]


def test_reused_module_uses_are_numbered_and_sources_point_at_the_script(tmp_path):
    script = tmp_path / "model.py"
    script.write_text(
        "import torch\n"
        "def build():\n"
        "    layer = torch.nn.Linear(2, 2)\n"
        "    x = torch.ones(1, 2)\n"
        "    h = layer(x)\n"
        "    h = torch.tanh(h)\n"
        "    h = layer(h)\n"
        "    return h.sum(), layer\n")
    rec = record(str(script))
    uses = sorted((n.use, n.uses) for n in rec.nodes if n.module == "Linear" and n.name == "AddmmBackward0")
    assert uses == [(1, 2), (2, 2)]
    tanh = next(n for n in rec.nodes if n.name == "TanhBackward0")
    assert tanh.source == f"{script}:6"
    assert {"weight", "bias"} <= set(rec.leaves)
    assert next(e for e in rec.forward if e.op == "tanh").source.endswith("model.py:6")


def test_unnamed_leaves_are_named_after_their_module_or_first_use():
    def build():
        torch.manual_seed(0)
        l1, l2 = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
        a = torch.randn(1, 2, requires_grad=True)
        b = torch.randn(1, 2)
        return l2(l1(a * b)).sum()

    rec = record(build)
    names = set(rec.leaves)
    assert {"Linear1.weight", "Linear1.bias", "Linear2.weight", "Linear2.bias", "input0"} <= names
    inputs = [n for n in rec.nodes if n.kind == "input"]
    assert [n.name for n in inputs] == ["input1"]


def test_named_leaf_that_does_not_reach_the_loss_has_grad_none():
    def build():
        w = torch.randn(3, requires_grad=True)
        unused = torch.randn(3, requires_grad=True)
        return w.sum(), {"w": w, "unused": unused}

    rec = record(build)
    assert rec.leaves["unused"].grad is None and rec.leaves["unused"].node is None
    assert rec.leaves["w"].grad is not None


def test_existing_grad_is_the_start_of_the_running_sum():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    w.grad = torch.tensor([10.0, 20.0])

    def build():
        return (w * 3).sum() + (w * w).sum(), {"w": w}

    rec = record(build)
    info = rec.leaves["w"]
    np.testing.assert_array_equal(info.initial_grad.value, [10.0, 20.0])
    np.testing.assert_allclose(info.grad.value, [10 + 3 + 2, 20 + 3 + 4])
    np.testing.assert_allclose(info.contributions[-1].running_sum.value, info.grad.value)
    first = info.contributions[0]
    np.testing.assert_allclose(first.running_sum.value, info.initial_grad.value + first.value.value)


def test_broadcast_gradient_is_summed_to_the_leaf_shape():
    def build():
        b = torch.zeros(3, requires_grad=True)
        x = torch.ones(4, 3)
        return (x + b).sum(), {"b": b}

    rec = record(build)
    (c,) = rec.leaves["b"].contributions
    assert c.value.shape == (3,)
    np.testing.assert_array_equal(c.value.value, [4.0, 4.0, 4.0])


def test_memory_budget_keeps_statistics_and_says_what_it_dropped():
    rec = record("mlp", budget_bytes=200)
    assert rec.dropped["tensors"] > 0 and rec.dropped["bytes"] > 0
    dropped = [t for e in rec.forward for t in e.outputs if t.value is None]
    assert dropped and all(set(t.stats) == {"min", "max", "mean", "norm"} for t in dropped if t.stats)
    full = record("mlp")
    assert full.dropped["tensors"] == 0


def test_no_values_keeps_shapes_only():
    rec = record("mlp", keep_values=False)
    assert all(t.value is None for e in rec.forward for t in e.outputs)
    assert rec.leaves["fc1.weight"].grad.shape == (8, 4)


def test_graph_over_the_limit_is_refused_with_the_limit():
    with pytest.raises(GraphTooLarge, match="more than 10 nodes") as err:
        record("rnn-unrolled", max_nodes=10)
    assert "--max-nodes" in err.value.hint


def test_recording_is_data_only():
    rec = record("repeated-layer")
    for n in rec.nodes:
        for v in n.saved.values():
            assert not isinstance(v, torch.Tensor)
    assert all(isinstance(t.value, np.ndarray) for e in rec.forward for t in e.outputs)


def test_progress_and_cancel():
    from gradviz.core import Cancelled

    seen = []
    record("mlp", progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(Cancelled):
        record("rnn-unrolled", params={"T": 50}, cancel=lambda: True)


def test_custom_function_apply_is_restored_after_recording():
    before = torch.autograd.Function.__dict__["apply"]
    record("linear-function")
    assert torch.autograd.Function.__dict__["apply"] is before


def test_recording_works_on_cuda_tensors_where_available():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    def build():
        x = torch.randn(3, device="cuda", requires_grad=True)
        return (x * x).sum(), {"x": x}
    rec = record(build)
    assert rec.leaves["x"].grad.device.startswith("cuda")


def test_no_values_still_refuses_a_nan_gradient():
    from gradviz.core.errors import NonFiniteError

    def build():
        x = torch.tensor([0.0, 1.0], requires_grad=True)
        return torch.sqrt(x).sum(), {"x": x}

    with pytest.raises(NonFiniteError, match="x.grad holds NaN or Inf") as err:
        record(build, keep_values=False)
    assert "values kept" in err.value.hint
    # with values the first node that made it is named
    with pytest.raises(NonFiniteError, match="SqrtBackward0"):
        record(build)


def test_recording_a_saved_recording_says_how_to_open_it(tmp_path):
    from gradviz.core.errors import GradvizError
    from gradviz.core.storage import save_recording

    path = tmp_path / "run.gradviz"
    save_recording(record("mlp"), path)
    with pytest.raises(GradvizError, match="is a saved recording") as err:
        record(str(path))
    assert "load_recording" in err.value.hint


@pytest.mark.skipif(not hasattr(torch.compiler, "set_stance"), reason="torch < 2.6 has no force_eager stance")
def test_a_torch_compiled_module_is_recorded_op_by_op(recwarn):
    # compiled, its ops would hide in one opaque CompiledFunction node; recorded, it runs eagerly
    lin = torch.nn.Linear(3, 2)
    fast = torch.compile(lin, backend="eager")

    def build():
        return torch.tanh(fast(torch.randn(4, 3))).sum(), {}

    rec = record(build)
    names = [n.name for n in rec.nodes]
    assert "AddmmBackward0" in names and "TanhBackward0" in names
    assert not any("Compiled" in name for name in names)
    addmm = next(n for n in rec.nodes if n.name == "AddmmBackward0")
    assert (addmm.module, addmm.use, addmm.uses) == ("Linear", 1, 1)
    # no warning about the recorder's own global module hooks
    assert not [w for w in recwarn if "global hooks" in str(w.message)]


def test_torch_compile_called_inside_build_runs_eagerly():
    def build():
        lin = torch.compile(torch.nn.Linear(3, 2))
        double = torch.compile(mode="reduce-overhead")(lambda t: t * 2)
        return double(lin(torch.randn(4, 3))).sum(), {}

    rec = record(build)
    names = [n.name for n in rec.nodes]
    assert "AddmmBackward0" in names and "MulBackward0" in names


def test_recording_a_model_that_never_compiles_does_not_import_dynamo():
    # importing torch._dynamo takes 1.5 s: only a model that compiles should pay for it
    code = ("import sys; from gradviz.core import record; record('mlp'); "
            "print('torch._dynamo' in sys.modules)")
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(
                             os.path.abspath(__file__))))})
    assert out.stdout.strip() == "False", out.stderr[-2000:]


@pytest.mark.parametrize("bad_at", [0, 7, 199])
def test_no_values_names_the_first_leaf_whose_gradient_is_not_finite_among_many(bad_at, monkeypatch):
    """Many leaves' gradients are tested together (in joined chunks); the message still names the first bad one."""
    from gradviz.core import recorder
    from gradviz.core.errors import NonFiniteError

    monkeypatch.setattr(recorder, "_FINITE_JOIN", 50)  # (several chunks of the 200 leaves)

    def build():
        ws = {f"w{i}": torch.full((3,), 1.0 + i, requires_grad=True) for i in range(200)}
        # sqrt(0) at the bad leaf and at the one after it: an infinite gradient there
        ws[f"w{bad_at}"].data[1] = 0.0
        if bad_at + 1 < 200:
            ws[f"w{bad_at + 1}"].data[2] = 0.0
        loss = sum(torch.sqrt(w).sum() for w in ws.values())
        return loss, ws

    with pytest.raises(NonFiniteError, match=rf"error: w{bad_at}\.grad holds NaN or Inf"):
        record(build, keep_values=False)


def test_all_finite_joins_by_dtype_and_finds_a_nan_in_any_chunk():
    from gradviz.core.recorder import _all_finite

    ts = [torch.ones(5), torch.ones(3, dtype=torch.float64), torch.ones(2, 2)]
    assert _all_finite(ts)
    assert _all_finite([])
    for i in range(3):
        bad = [t.clone() for t in ts]
        bad[i].view(-1)[-1] = float("nan") if i != 1 else float("-inf")
        assert not _all_finite(bad)
    # gradients that are not contiguous (a transposed view) are read as they are laid out
    strided = torch.ones(3, 4).t()
    assert _all_finite([torch.ones(2), strided])
    strided[3, 1] = float("inf")
    assert not _all_finite([torch.ones(2), strided])
