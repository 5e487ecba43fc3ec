"""The loss at a moved point: the model re-run with its sources at their recorded values, one leaf moved.

Finite differences need ``L(x + d)`` for a few moves ``d`` of one leaf ``x``, every other input of the
model exactly where it was recorded. Each evaluation calls the model again under
`gradviz.core.sources.SourceFinder` (through `gradviz.core.recorder.leaf_first_use_order`), which
numbers the source tensors of the fresh run in order of first use, as ``Recording.leaf_order`` does:
each is set to its recorded value (a float64 re-run draws other random numbers than the recorded
float32 one), and the one being checked is moved in place before the op that first uses it runs.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .recorder import leaf_first_use_order
from .recording import Recording

__all__ = ["PerturbedLoss", "element_move", "direction_move"]


class PerturbedLoss:
    """Evaluate a recorded model's loss with one source tensor moved.

    Parameters
    ----------
    rec : Recording
        Gives the recorded value of each source tensor (``rec.source_values``).
    runner : Runner
        Calls the model again.

    Attributes
    ----------
    dtypes : dict of int to torch.dtype
        The dtype each source had in the last run: a leaf the script makes in its own dtype
        (``dtype=torch.float32``) stays so in a float64 re-run.
    runs : int
        How many times the model ran.
    """

    def __init__(self, rec: Recording, runner):
        self.runner = runner
        self.sources = rec.source_values
        self.dtypes: dict[int, torch.dtype] = {}
        self.runs = 0
        self._recorded: dict[int, torch.Tensor | None] = {}

    def _recorded_value(self, idx: int) -> torch.Tensor | None:
        """Source `idx`'s recorded value as a tensor (made once, copied into every re-run)."""
        if idx not in self._recorded:
            data = self.sources[idx] if idx < len(self.sources) else None
            value = None if data is None else data.value
            self._recorded[idx] = None if value is None else torch.from_numpy(np.array(value))
        return self._recorded[idx]

    def __call__(self, leaf_index: int | None, move: Callable[[torch.Tensor], None] | None,
                 dtype: torch.dtype | None) -> float:
        """The loss with source `leaf_index` moved in place by ``move(tensor)``, in default `dtype`.

        ``move`` runs under ``torch.no_grad()`` after the source got its recorded value; None
        leaves every source at its recorded value.
        """
        dtypes = self.dtypes

        def on_leaf(t, idx):
            dtypes[idx] = t.dtype
            with torch.no_grad():
                # evaluate at exactly the recorded point: a float64 re-run may draw other random values
                value = self._recorded_value(idx)
                if value is not None and value.shape == t.shape:
                    t.copy_(value)
                if idx == leaf_index and move is not None:
                    move(t)

        self.runs += 1
        out = leaf_first_use_order(self.runner, on_leaf, dtype=dtype)
        built = self.runner.normalise(out)
        return float(built.loss.detach().to(torch.float64).cpu())


def element_move(flat_index: int, delta) -> Callable[[torch.Tensor], None]:
    """A move that adds `delta` to one element (in row-major order) of the tensor."""

    def move(t: torch.Tensor) -> None:
        if t.is_contiguous():
            t.view(-1)[flat_index] += delta
        else:
            t[np.unravel_index(flat_index, tuple(t.shape))] += delta

    return move


def direction_move(step: np.ndarray) -> Callable[[torch.Tensor], None]:
    """A move that adds `step` (flat, one entry per element in row-major order) to the tensor."""

    def move(t: torch.Tensor) -> None:
        t.add_(torch.from_numpy(step).reshape(t.shape).to(t.dtype))

    return move
