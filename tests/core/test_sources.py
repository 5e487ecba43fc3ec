"""`SourceFinder` numbers a fresh run's source tensors exactly as the recorder did (issue 16).

Finite differences find each source of a re-run by its number; `SourceFinder` numbers the new
sources of a plain op before the op runs (so that it runs once) and takes the numbers back when the
op does not join the graph. Re-run in the recorded dtype, every built-in model and every script of
tests/core/scripts (views, in-place ops, modules, complex tensors, double backward, hooks) must meet
the recorded sources in the recorded order: same shape, same value at first use.
"""
import os

import numpy as np
import pytest
import torch

from gradviz.core import record
from gradviz.core.models import MODELS
from gradviz.core.rerun import rerun_of
from gradviz.core.sandbox import Sandbox
from gradviz.core.sources import SourceFinder

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")
TARGETS = sorted(MODELS) + [os.path.join(SCRIPTS, n) for n in sorted(os.listdir(SCRIPTS))
                            if n.endswith(".py") and not n.startswith("threads")]


@pytest.mark.parametrize("target", TARGETS, ids=os.path.basename)
def test_a_rerun_meets_the_recorded_sources_in_the_recorded_order(target):
    rec = record(target)
    rerun = rerun_of(rec)
    met = _numbered(rerun)
    assert len(met) == len(rec.source_values) == len(rec.leaf_order)
    for (idx, shape, value, _), data in zip(met, rec.source_values):
        assert shape == tuple(data.shape), (idx, rec.leaf_order[idx])
        if data.value is not None:
            np.testing.assert_array_equal(value.numpy(), np.asarray(data.value), err_msg=rec.leaf_order[idx])


def test_numbers_given_before_an_op_that_does_not_join_are_taken_back():
    w = torch.linspace(-1.0, 1.0, 5, requires_grad=True)
    x = torch.linspace(0.0, 2.0, 5)

    def build():
        # an op on a tensor that requires grad whose result joins no graph (integers): not a use
        n = torch.bucketize(w, x).sum()
        return (w * x).sum() + n * 0.0, {"w": w}

    rec = record(build)
    rerun = rerun_of(rec)
    taken_back = []
    met = _numbered(rerun, taken_back)
    # bucketize took numbers for w and x, and gave them back (last first), values as they were
    assert [i for i, _ in taken_back] == [1, 0] and taken_back[0][1] is x and taken_back[1][1] is w
    # each number in the recorded order, given to the tensor the recorder gave it to
    assert len(met) == len(rec.leaf_order) and met[0][3] is w and met[1][3] is x
    np.testing.assert_array_equal(w.detach().numpy(), np.linspace(-1.0, 1.0, 5, dtype=np.float32))


def _numbered(rerun, taken_back=None) -> list:
    """(index, shape, value, tensor) of each source a re-run numbers for good, in order, at first use."""
    met = {}

    def on_leaf(t, idx):
        met[idx] = (idx, tuple(t.shape), t.detach().cpu().clone(), t)

    def on_undo(t, idx):
        del met[idx]
        if taken_back is not None:
            taken_back.append((idx, t))

    with Sandbox(SourceFinder(on_leaf, on_undo), modules=rerun.modules, warned=rerun.warned):
        rerun.runner.call()
    assert sorted(met) == list(range(len(met)))
    return [met[i] for i in range(len(met))]
