"""Find a model's source tensors again in a fresh run, at a fraction of a recording's cost.

Finite differences re-run the model dozens of times, each time with every source tensor (made by
no op of the run: leaves and inputs that need no grad) set to its recorded value and one element
moved. A source is known by its position in order of first use in an op that joins the graph, the
order `record` keeps in ``Recording.leaf_order``. `SourceFinder` numbers sources exactly as the
recorder's forward capture does, and does nothing else: no events, no values, no source lines, no
module tracking, no Python wrappers for autograd nodes (so torch frees each re-run's graph itself,
iteratively).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from .capture import tensors_in

__all__ = ["SourceFinder"]

_grad_enabled = torch.is_grad_enabled

# the recorder's rule: these never count as ops (attribute access, printing, truth tests)
SKIP_FUNCS = {"__get__", "__set__", "__repr__", "__format__", "__bool__", "__len__", "__hash__"}


class SourceFinder(TorchFunctionMode):
    """A torch function mode that calls ``on_leaf(tensor, index)`` when a source is first used.

    Parameters
    ----------
    on_leaf : callable
        Called with each source tensor and its index, before the op that first uses it runs
        again on the value ``on_leaf`` may have written into it.
    """

    def __init__(self, on_leaf: Callable):
        super().__init__()
        self.on_leaf = on_leaf
        self.seen: list = []  # the sources in order (kept alive, so their ids stay theirs)
        self._seen_ids: set[int] = set()  # (ids: hashing a tensor is a Python call)
        self._depth = 0

    # --- what the sandbox installs (gradviz.core.sandbox.Sandbox applies and restores them) ------
    def wrap_apply(self, orig: Callable) -> Callable:
        """``Function.apply`` that scans a custom Function's inputs (torch function modes do not
        see those calls), as the recorder's does."""
        finder = self

        def apply(cls, *args, **kwargs):
            if finder._depth:
                return orig(cls, *args, **kwargs)
            if torch.is_grad_enabled():
                finder._scan(tensors_in(args) + tensors_in(kwargs))
            finder._depth += 1
            try:
                return orig(cls, *args, **kwargs)
            finally:
                finder._depth -= 1

        return apply

    def wrap_register_hook(self, orig: Callable) -> Callable:
        """``Tensor.register_hook`` unchanged: a re-run notes no hooks."""
        return orig

    def on_module_pre(self, module, args):
        """Modules are not followed in a re-run."""

    def on_module_post(self, module, args, output):
        """Modules are not followed in a re-run."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        if self._depth:
            return func(*args, **kwargs)
        self._depth += 1
        try:
            out = func(*args, **kwargs)
        finally:
            self._depth -= 1
        # the recorder's rule: an op under grad mode whose result joins the graph
        if not _grad_enabled():
            return out
        if isinstance(out, Tensor):
            if out.is_leaf:
                return out
        elif all(t.is_leaf for t in tensors_in(out)):
            return out
        ins = [a for a in args if isinstance(a, Tensor)]
        if len(ins) < len(args) and any(isinstance(a, (list, tuple, dict)) for a in args):
            ins = tensors_in(args)
        if kwargs:
            ins += tensors_in(kwargs)
        seen = self._seen_ids
        if all(id(t) in seen or not t.is_leaf for t in ins):
            return out
        # (an attribute view such as w.T is a use of its source, as the recorder counts it)
        if self._scan(ins):
            # a source got its recorded value: run the op again on it
            self._depth += 1
            try:
                out = func(*args, **kwargs)
            finally:
                self._depth -= 1
        return out

    def _scan(self, ins) -> bool:
        new = False
        seen, ids = self.seen, self._seen_ids
        self._depth += 1
        try:
            for t in ins:
                if t.is_leaf and id(t) not in ids:
                    ids.add(id(t))
                    seen.append(t)
                    new = True
                    self.on_leaf(t, len(seen) - 1)
        finally:
            self._depth -= 1
        return new
