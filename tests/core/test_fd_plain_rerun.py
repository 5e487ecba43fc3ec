"""Finite differences re-run a model with no torch function mode when its sources persist (issue 16).

A model and data made outside ``build()`` are the same tensors in every run: `PerturbedLoss` then
sets them (and moves the leaf) before the run and calls the model as plain torch, after one run
through `SourceFinder` showed that this evaluates the same function. A model whose sources are new
in each run, or change before their first use, keeps the function mode.
"""
import numpy as np
import torch

from gradviz.core import record, run_checks
from gradviz.core.fdrerun import PerturbedLoss, element_move
from gradviz.core.rerun import rerun_of
from gradviz.core.sandbox import Sandbox


def fd_rows(table):
    return {r.leaf: r for r in table.rows if r.kind == "finite-diff"}


def _persistent_model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    y = torch.randn(10, 1, dtype=torch.float64)

    def build():
        return torch.nn.functional.mse_loss(net(x), y), net

    return build


def _losses(rec, moves):
    """The loss at each (leaf index, move), through the function mode, then with none if it may.

    (The first run finds the sources; the second, through the mode too, decides.)
    """
    rerun = rerun_of(rec)
    loss = PerturbedLoss(rec, rerun.runner)
    with Sandbox(modules=rerun.modules, cast64=True):
        through_mode = [loss(i, m, torch.float64) for i, m in moves]
        assert loss.plain_runs == 0
        plain = loss.plain
        again = [loss(i, m, torch.float64) for i, m in moves]
    return loss, plain, through_mode, again


def test_persistent_sources_rerun_with_no_mode_and_the_same_losses():
    rec = record(_persistent_model())
    moves = [(None, None)] + [(rec.leaf_order.index("0.weight"), element_move(k, d)) for k in (0, 4)
                              for d in (1e-3, -1e-3)]
    loss, plain, _, _ = _losses(rec, moves[:2])
    assert plain and loss.plain_runs == 2
    rerun = rerun_of(rec)
    with Sandbox(modules=rerun.modules, cast64=True):
        again = [loss(i, m, torch.float64) for i, m in moves]
        # each move as the first run of its own: through the mode
        through_mode = [PerturbedLoss(rec, rerun.runner)(i, m, torch.float64) for i, m in moves]
    assert loss.plain_runs == 2 + len(moves)
    # bit for bit: the same function at the same points
    assert through_mode == again
    assert len(set(again)) == len(moves)  # (the moves do move the loss)


def test_sources_made_in_build_keep_the_mode():
    def build():
        # a model and data made anew in every run, sliced as an unrolled RNN slices its inputs
        cell = torch.nn.RNNCell(3, 4).double()
        xs = torch.randn(4, 2, 3, dtype=torch.float64)
        h = torch.zeros(2, 4, dtype=torch.float64)
        for t in range(xs.shape[0]):
            h = cell(xs[t], h)
        return h.pow(2).mean(), cell

    rec = record(build)
    loss, plain, through_mode, again = _losses(rec, [(None, None)] * 2)
    assert not plain and loss.plain_runs == 0 and through_mode == again


def test_a_source_that_changes_before_its_first_use_keeps_the_mode():
    x = torch.linspace(-1.0, 1.0, 8, dtype=torch.float64)
    w = torch.linspace(0.5, 1.5, 8, dtype=torch.float64, requires_grad=True)

    def build():
        x.add_(1.0)  # a new x in every run: only at its first use is it where it was recorded
        return (w * x).sin().sum(), {"w": w}

    rec = record(build)
    loss, plain, _, _ = _losses(rec, [(None, None)] * 2)
    assert not plain
    # set before the run, it would have been moved on by one: the check would fail falsely
    (row,) = fd_rows(run_checks(rec)).values()
    assert row.status == "pass", row


def test_plain_reruns_still_catch_a_wrong_gradient_and_pass_a_right_one():
    build = _persistent_model()
    rec = record(build)
    rows = fd_rows(run_checks(rec))
    assert all(r.status == "pass" and r.max_abs < 1e-7 for r in rows.values()), rows

    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64)

    def hooked():
        out = lin(x)
        # a hook that changes one element of the gradient by 0.2%
        out.register_hook(lambda g: g * torch.tensor([1.0, 1.002, 1.0], dtype=g.dtype))
        return out.tanh().sum(), lin

    wrong = record(hooked)
    loss, plain, _, _ = _losses(wrong, [(None, None)] * 2)
    assert plain
    rows = fd_rows(run_checks(wrong, fd_max_elements=0))
    assert len(rows) == 2 and all(r.status == "fail" for r in rows.values()), rows
    # the reference for the right gradient, without gradviz: torch in float64
    w = lin.weight.detach().clone().requires_grad_()
    (expected,) = torch.autograd.grad(torch.nn.functional.linear(x, w, lin.bias.detach()).tanh().sum(), w)
    (name,) = [n for n in wrong.leaves if n.endswith("weight")]
    got = wrong.leaves[name].grad.value
    assert not np.allclose(got, expected.numpy(), rtol=1e-4, atol=0)  # the hook did change it
