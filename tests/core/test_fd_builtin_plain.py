"""A built-in model's finite differences re-run on the tensors it made once, with no function mode (issue 16).

`BuiltinRunner.for_reruns` makes a built-in model's tensors and modules once per dtype
(`gradviz.core.models.Made`) and runs the model on them each time, so `PerturbedLoss` finds the
same sources in every run (the same tensors, or new views such as ``xs[t]`` of the same elements)
and runs the model as plain torch. The recording's own runner knows where the recorded sources lay
in what it made, and finds them in what it makes for the re-runs before the first one. The losses must be those of the general path, which builds the
model anew in every run and finds its sources through `SourceFinder`, bit for bit; and a wrong
gradient must still fail.
"""
import numpy as np
import pytest
import torch

from gradviz.core import record, run_checks
from gradviz.core.fdrerun import PerturbedLoss, direction_move, element_move, same_memory
from gradviz.core.models import MODELS
from gradviz.core.rerun import rerun_of
from gradviz.core.sandbox import Sandbox
from gradviz.core.targets import BuiltinRunner, MadeOnceRunner

CASES = [("rnn-unrolled", {"T": 6}), ("mlp", {}), ("repeated-layer", {"k": 3, "n": 2, "tanh": True}),
         ("sum-xy-plus-z", {}), ("linear-function", {"batch": 2})]


class FreshRunner(BuiltinRunner):
    """A built-in model built anew in every re-run: the general path, as a user's ``build()`` is run."""

    def for_reruns(self):
        return self


class KeepsNothing(MadeOnceRunner):
    """Makes the model once, but vouches for no memory: the second run goes through the mode and checks."""

    def keeps(self, t):
        return False


class Checked(BuiltinRunner):
    """A built-in model whose re-runs are made once but checked through the mode (`KeepsNothing`)."""

    def for_reruns(self):
        return KeepsNothing(self)


def _moves(rec):
    """No move, then each leaf that requires grad moved along a direction and by one element, both ways."""
    moves = [(None, None)]
    for name, info in rec.leaves.items():
        if not info.requires_grad or name not in rec.leaf_order:
            continue
        i = rec.leaf_order.index(name)
        n = int(np.prod(info.tensor.shape))
        d = np.linspace(-1.0, 1.0, n) * 1e-3
        moves += [(i, direction_move(d)), (i, direction_move(-d)), (i, element_move(n - 1, 1e-3))]
    return moves


def _losses(rec, runner, moves):
    loss = PerturbedLoss(rec, runner)
    with Sandbox(modules=rerun_of(rec).modules, cast64=True):
        return loss, [loss(i, m, torch.float64) for i, m in moves]


@pytest.mark.parametrize("name,params", CASES)
def test_builtin_reruns_go_plain_with_the_losses_of_the_general_path(name, params):
    rec = record(name, params=params)
    moves = _moves(rec)
    # the recording's runner knows where the recorded sources lay in what it made: every run is plain
    made_once, plain = _losses(rec, rerun_of(rec).runner, moves)
    assert made_once.plain and made_once.plain_runs == len(moves)
    # a new runner knows nothing yet: the first run, through the mode, finds the sources, all in the
    # tensors it made; every later run is plain torch
    found, plain_after = _losses(rec, BuiltinRunner(MODELS[name], params), moves)
    assert found.plain and found.plain_runs == len(moves) - 1
    fresh, general = _losses(rec, FreshRunner(MODELS[name], params), moves)
    assert not fresh.plain and fresh.plain_runs == 0
    assert plain == general and plain_after == general  # bit for bit, in float64
    assert len(set(plain)) > len(moves) // 2  # (the moves do move the loss)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_builtin_model_keeps_the_contract_of_made(name):
    """Its loss reads the tensors it made and writes none before reading: the check run agrees.

    (A runner that keeps nothing: the second run goes through the mode and checks, at each source's
    first use, that it meets the same memory holding the value set before the run.)
    """
    rec = record(name)
    checked, losses = _losses(rec, Checked(MODELS[name], {}), _moves(rec)[:3])
    assert checked.plain and checked.plain_runs == 1
    trusted, again = _losses(rec, BuiltinRunner(MODELS[name], {}), _moves(rec)[:3])
    assert trusted.plain_runs == 2 and again == losses


@pytest.mark.parametrize("own", [True, False])
def test_a_run_in_another_dtype_finds_its_sources_again(own):
    rec = record("mlp")
    moves = _moves(rec)[:3]
    loss = PerturbedLoss(rec, rerun_of(rec).runner if own else BuiltinRunner(MODELS["mlp"], {}))
    with Sandbox(modules=rerun_of(rec).modules, cast64=True):
        in64 = [loss(i, m, torch.float64) for i, m in moves]
        in32 = [loss(i, m, None) for i, m in moves]
    # (a new runner's first run in each dtype goes through the mode)
    assert loss.runs == 6 and loss.plain_runs == (6 if own else 4)
    assert np.allclose(in32, in64, rtol=1e-5) and in32 != in64


def test_a_source_outside_what_the_model_made_leaves_the_runner_without_places():
    rec = record("rnn-unrolled", params={"T": 3})
    runner = rerun_of(rec).runner
    assert len(runner.source_places) == len(rec.leaf_order) == 3 + 4 + 2  # xs[0..2], the cell's 4, h0, target
    made = runner.for_reruns()
    (xs1,) = [t for name, t in zip(rec.leaf_order, made.sources(torch.float64)) if name == "xs[1]"]
    assert xs1.dtype == torch.float64 and torch.equal(xs1, made._make(torch.float64).leaves["xs"][1])
    runner.call()  # (a run: what it made is what the next note of sources is about)
    runner.note_sources([made._make(torch.float64).leaves["h0"]])  # (not a tensor that run made)
    assert runner.source_places is None and runner.for_reruns().sources(torch.float64) is None


def test_a_view_of_the_same_elements_is_the_same_memory_and_other_views_are_not():
    xs = torch.arange(24, dtype=torch.float64).reshape(4, 2, 3)
    kept = xs[1]
    assert same_memory(kept, xs[1]) and same_memory(kept, kept)
    assert not same_memory(kept, xs[2]) and not same_memory(kept, xs[1].clone())
    assert not same_memory(kept, xs[1, :1]) and not same_memory(kept, xs[1].t())  # (other shape, other strides)
    assert not same_memory(kept, xs[1].view(torch.int64)) and not same_memory(None, kept)
    z = torch.zeros(3, dtype=torch.complex128)
    assert same_memory(z, z.view(3)) and not same_memory(z, z.conj())
    empty = xs[:0]
    assert same_memory(empty, empty) and not same_memory(empty, xs[:0])


@pytest.mark.parametrize("name,params", [("rnn-unrolled", {"T": 40}), ("mlp", {}),
                                         ("repeated-layer", {"k": 3, "n": 2, "tanh": True})])
def test_a_wrong_gradient_of_a_builtin_model_fails_and_the_right_one_passes(name, params):
    rec = record(name, params=params)
    rows = {r.leaf: r for r in run_checks(rec).rows if r.kind == "finite-diff"}
    assert rows and all(r.status == "pass" for r in rows.values()), rows
    # one element of one recorded gradient off by 0.5%: the random direction alone must see it (every
    # re-run of the recording's own runner is plain torch)
    leaf = [n for n, info in rec.leaves.items() if info.requires_grad][-1]
    grad = np.array(rec.leaves[leaf].grad.value)
    flat = grad.reshape(-1)
    k = int(np.argmax(np.abs(flat)))
    flat[k] *= 1.005
    rec.leaves[leaf].grad.value = grad
    rows = {r.leaf: r for r in run_checks(rec, fd_max_elements=0).rows if r.kind == "finite-diff"}
    assert rows[leaf].status == "fail", rows[leaf]
    assert all(r.status == "pass" for n, r in rows.items() if n != leaf), rows
