"""The loss at a moved point: the model re-run with its sources at their recorded values, one leaf moved.

Finite differences need ``L(x + d)`` for a few moves ``d`` of one leaf ``x``, every other input of the
model exactly where it was recorded. Each evaluation calls the model again under
`gradviz.core.sources.SourceFinder` (as `gradviz.core.recorder.leaf_first_use_order` does), which
numbers the source tensors of the fresh run in order of first use, as ``Recording.leaf_order`` does:
each is set to its recorded value (a float64 re-run draws other random numbers than the recorded
float32 one), and the one being checked is moved in place before the op that first uses it runs.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .recording import Recording
from .sandbox import Sandbox
from .sources import SourceFinder

__all__ = ["PerturbedLoss", "element_move", "direction_move", "same_memory"]


class PerturbedLoss:
    """Evaluate a recorded model's loss with one source tensor moved.

    Runs go through `SourceFinder`, which finds the sources in each fresh run. A model whose
    sources are the same tensors in every run (a model and data made at a script's top level, not
    inside ``build()``; a built-in model, whose runner keeps what it made: ``Runner.for_reruns``)
    and stay as they are set until their first use needs no function mode: the second run sets
    the first run's sources before the model starts and checks, at each first use, that it meets
    the same memory (the same tensor, or a new view such as ``xs[t]`` of the same elements) with
    the value it was given, and no other source. When it does, every later run sets the sources
    (and moves the leaf) before the model starts, and the model runs as plain torch. (The model
    code is deterministic, as every re-run assumes.) When every source of the first run lies in
    memory the runner keeps and its model reads before it writes (``runner.keeps``: a built-in
    model's), the second run is plain already; where the runner knows the sources before the first
    run (``runner.sources``: a built-in model's, from where the recorded run's lay in what it made),
    every run is. A plain run of a model whose loss has the same value with grad off
    (``runner.loss_needs_grad()``: a built-in model's) runs with grad off.

    Parameters
    ----------
    rec : Recording
        Gives the recorded value of each source tensor (``rec.source_values``).
    runner : Runner
        Calls the model again (through ``runner.for_reruns()``).

    Attributes
    ----------
    dtypes : dict of int to torch.dtype
        The dtype each source had in the last run through the mode: a leaf the script makes in its
        own dtype (``dtype=torch.float32``) stays so in a float64 re-run.
    runs : int
        How many times the model ran; ``plain_runs`` of them with no function mode.
    plain : bool
        Whether runs go without a function mode.
    """

    def __init__(self, rec: Recording, runner):
        self.runner = runner.for_reruns()
        self.sources = rec.source_values
        self.dtypes: dict[int, torch.dtype] = {}
        self.runs = self.plain_runs = 0
        self.plain = False
        self._recorded: dict[int, torch.Tensor | None] = {}
        self._objects: dict[int, torch.Tensor] | None = None  # the first run's sources (kept alive)
        self._checked = False
        self._plain_dtype: torch.dtype | None = None  # the dtype the plain runs were found for

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

        ``move`` gets a detached alias of the source after it got its recorded value; None leaves
        every source at its recorded value.
        """
        self.runs += 1
        if self.plain and dtype != self._plain_dtype:
            # (a model found plain in one dtype, then run in another: new tensors, found through the mode)
            self.plain, self._checked, self._objects = False, False, None
        if self._objects is None and not self._checked:
            self._find_before(dtype)
        graph = True
        if self.plain:
            self.plain_runs += 1
            self._set_all(leaf_index, move)
            # only the loss's value is wanted: no graph, where the model's value does not depend on it
            graph = self.runner.loss_needs_grad()
            with Sandbox(dtype=dtype), torch.set_grad_enabled(graph and torch.is_grad_enabled()):
                out = self.runner.call(dtype=dtype)
        else:
            out = self._through_mode(leaf_index, move, dtype)
        built = self.runner.normalise(out, graph=graph)
        return float(built.loss.detach().to(torch.float64).cpu())

    def _find_before(self, dtype) -> None:
        """Take the sources from the runner, if it knows them before the run (``runner.sources``): then
        every run is plain."""
        with Sandbox(dtype=dtype):
            found = self.runner.sources(dtype)
        objects = dict(enumerate(found or []))
        if len(objects) == len(self.sources) and self._all_fit(objects) and \
                all(self.runner.keeps(t) for t in objects.values()):
            self._objects = objects
            self.dtypes.update({idx: t.dtype for idx, t in objects.items()})
            self._checked = self.plain = True
            self._plain_dtype = dtype

    def _through_mode(self, leaf_index: int | None, move, dtype):
        """One run through `SourceFinder`; the second one also asks whether the next may go without."""
        dtypes, objects, verdicts = self.dtypes, {}, {}
        first = self._objects
        check = first is not None and not self._checked and self._all_fit(first)
        if check:
            self._set_all(leaf_index, move)  # (before the model starts, as a run with no mode would)

        def on_leaf(t, idx):
            dtypes[idx] = t.dtype
            objects[idx] = t
            if check:
                # the same memory, still holding what it was given?
                ok = same_memory(first.get(idx), t) and torch.equal(t.detach(),
                                                                     self._expected(t, idx, leaf_index, move))
                verdicts[idx] = ok
                if ok:
                    return
            self._set(t, idx, leaf_index, move)

        def on_undo(t, idx):
            objects.pop(idx, None)
            verdicts.pop(idx, None)

        with Sandbox(SourceFinder(on_leaf, on_undo), dtype=dtype):
            out = self.runner.call(dtype=dtype)
        if first is None:
            self._objects = objects
            # sources that all lie in memory the runner keeps, read before written: no check run needed
            if self._all_fit(objects) and all(self.runner.keeps(t) for t in objects.values()):
                self._checked = self.plain = True
                self._plain_dtype = dtype
        elif check:
            self._checked = True
            self.plain = all(verdicts.values()) and verdicts.keys() == objects.keys() == first.keys()
            self._plain_dtype = dtype
        return out

    def _expected(self, t: torch.Tensor, idx: int, leaf_index: int | None, move) -> torch.Tensor:
        """What source `idx` holds when it was set before the run: its recorded value, moved if the leaf."""
        # (on the source's device, and never the recorded value itself)
        expected = self._recorded_value(idx).to(device=t.device, dtype=t.dtype, copy=True)
        if idx == leaf_index and move is not None:
            move(expected)
        return expected

    def _all_fit(self, objects: dict) -> bool:
        """Whether every source has a recorded value of its shape (a run with no mode sets them all)."""
        for idx, t in objects.items():
            value = self._recorded_value(idx)
            if value is None or value.shape != t.shape:
                return False
        return bool(objects)

    def _set(self, t: torch.Tensor, idx: int, leaf_index: int | None, move) -> None:
        """Give source `idx` (tensor `t`) its recorded value, moved if it is the leaf."""
        # written through a detached alias: no graph, and allowed on a leaf that requires grad
        data = t.detach()
        # evaluate at exactly the recorded point: a float64 re-run may draw other random values
        value = self._recorded_value(idx)
        if value is not None and value.shape == t.shape:
            data.copy_(value)
        if idx == leaf_index and move is not None:
            move(data)

    def _set_all(self, leaf_index: int | None, move) -> None:
        for idx, t in (self._objects or {}).items():
            self._set(t, idx, leaf_index, move)


def same_memory(kept: torch.Tensor | None, t: torch.Tensor) -> bool:
    """Whether `t` reads exactly the elements of `kept`, a tensor that is still alive.

    The same tensor, or a dense view of the same elements: same dtype, device, address of its
    first element, shape and strides, read the same way (no conjugate or negative view of them).
    (`kept` being alive, no new tensor can have been given its memory; a tensor with no elements
    has no address to compare, and only counts if it is `kept` itself.)
    """
    if kept is t:
        return True
    if kept is None or kept.layout != torch.strided or t.layout != torch.strided or kept.numel() == 0 \
            or t.numel() == 0:
        return False
    return (kept.dtype == t.dtype and kept.device == t.device and kept.data_ptr() == t.data_ptr()
            and kept.shape == t.shape and kept.stride() == t.stride() and kept.is_conj() == t.is_conj()
            and kept.is_neg() == t.is_neg())


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
        t.add_(torch.from_numpy(step).reshape(t.shape).to(device=t.device, dtype=t.dtype))

    return move
