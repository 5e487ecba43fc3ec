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

from .capture import _INPLACE_NAMES, tensors_in

__all__ = ["SourceFinder"]

_grad_enabled = torch.is_grad_enabled

# the recorder's rule: these never count as ops (attribute access, printing, truth tests)
SKIP_FUNCS = {"__get__", "__set__", "__repr__", "__format__", "__bool__", "__len__", "__hash__"}


# calls that (nearly) never join the graph: what a tensor is (not its values), comparisons, copies with no
# grad. Only a hint: their new sources are numbered after the call, like any call's that is not plain
_NEVER_JOIN = {"dim", "size", "numel", "nelement", "ndimension", "stride", "storage_offset", "element_size",
               "is_contiguous", "is_floating_point", "is_complex", "data_ptr", "get_device", "type", "item",
               "tolist", "numpy", "detach", "equal", "allclose", "isclose", "eq", "ne", "gt", "lt", "ge", "le",
               "__eq__", "__ne__", "__gt__", "__lt__", "__ge__", "__le__", "isnan", "isinf", "isfinite",
               "argmax", "argmin", "argsort", "nonzero", "count_nonzero", "tensor", "as_tensor", "zeros_like",
               "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like"}


# Tensor methods that return no tensor (a number, a size, a flag): such a call never joins the graph and
# numbers no source (the mode's full path ends at "not joined" for them), so the mode just runs it
_NO_TENSOR = frozenset(getattr(Tensor, name) for name in (
    "dim", "size", "numel", "nelement", "ndimension", "stride", "storage_offset", "element_size", "is_contiguous",
    "is_floating_point", "is_complex", "data_ptr", "get_device") if hasattr(Tensor, name))


def _plain_op(func, kwargs) -> bool:
    """Whether a call is an op that reads its inputs, writes none of them, and may join the graph.

    Not: in-place ops (by the recorder's rule of names), ``out=`` and ``inplace=True``, attribute
    access (``w.data = ...`` is a ``__set__``), torch's private helpers, and calls that never join
    the graph (``size``, comparisons, ``*_like``).
    """
    if "out" in kwargs or kwargs.get("inplace"):
        return False
    name = getattr(func, "__name__", None) or str(func)
    if name in SKIP_FUNCS or name in _NEVER_JOIN or name in _INPLACE_NAMES or \
            (name.endswith("_") and not name.endswith("__")):
        return False
    return not (name.startswith("_") and not name.startswith("__"))


class SourceFinder(TorchFunctionMode):
    """A torch function mode that calls ``on_leaf(tensor, index)`` when a source is first used.

    Parameters
    ----------
    on_leaf : callable
        Called with each source tensor and its index, before the op that first uses it runs on
        the value ``on_leaf`` may have written into it. A plain op's new sources are numbered
        before it runs; when it then joins no graph (a comparison, say), they were not used yet:
        their numbers are taken back, and what ``on_leaf`` wrote is undone.
    on_undo : callable, optional
        Called with the tensor and index of each number taken back, last first.
    """

    def __init__(self, on_leaf: Callable, on_undo: Callable | None = None):
        super().__init__()
        self.on_leaf = on_leaf
        self.on_undo = on_undo
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

    # modules are not followed in a re-run: the sandbox installs no module hooks (a module call
    # with global hooks takes torch's slow path)
    on_module_pre = on_module_post = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        if self._depth:
            return func(*args, **kwargs)
        if func in _NO_TENSOR:
            self._depth += 1
            try:
                return func(*args, **kwargs)
            finally:
                self._depth -= 1
        grad = _grad_enabled()
        early = None
        plain = new = False
        if grad:
            # an op on a tensor that requires grad nearly always joins the graph: when its tensors
            # are plain arguments, number its new sources and give them their values now, so that
            # the op runs once, on those values
            new = needs = False
            plain = True  # every tensor is a positional argument
            seen = self._seen_ids
            for a in args:
                if isinstance(a, Tensor):
                    if a.requires_grad:
                        needs = True
                    if a.is_leaf and id(a) not in seen:
                        new = True
                elif isinstance(a, (list, tuple, dict)):
                    plain = False  # (tensors in lists: numbered after the op, in the recorder's order)
                    break
            if kwargs and plain:
                plain = not any(isinstance(v, (Tensor, list, tuple, dict)) for v in kwargs.values())
            if new and needs and plain and _plain_op(func, kwargs):
                # (not an op that writes its inputs: a source written in place is no leaf afterwards)
                early = self._scan_early([a for a in args if isinstance(a, Tensor)])
        self._depth += 1
        try:
            out = func(*args, **kwargs)
        except BaseException:
            if early:
                self._undo(early)
            raise
        finally:
            self._depth -= 1
        # the recorder's rule: an op under grad mode whose result joins the graph
        if not grad:
            return out
        if isinstance(out, Tensor):
            joined = not out.is_leaf
        else:
            joined = not all(t.is_leaf for t in tensors_in(out))
        if early:
            if joined and all(t.is_leaf for t, _ in early):
                return out
            # it did not join (a comparison, a size): the sources were not used yet; as they were
            self._undo(early)
            self._depth += 1
            try:
                out = func(*args, **kwargs)
            finally:
                self._depth -= 1
            joined = not out.is_leaf if isinstance(out, Tensor) else not all(t.is_leaf for t in tensors_in(out))
        if not joined or (plain and not new):
            return out  # (no new source among plain arguments: nothing to number)
        ins = self._inputs(args, kwargs)
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

    @staticmethod
    def _inputs(args, kwargs) -> list:
        """The tensors an op is given, in the order the recorder numbers new sources."""
        ins = [a for a in args if isinstance(a, Tensor)]
        if len(ins) < len(args) and any(isinstance(a, (list, tuple, dict)) for a in args):
            ins = tensors_in(args)
        if kwargs:
            ins += tensors_in(kwargs)
        return ins

    def _scan_early(self, ins) -> list:
        """Number the new sources among `ins` before the op runs; what `_undo` needs to take it back."""
        ids = self._seen_ids
        kept = []
        self._depth += 1
        try:
            for t in ins:
                if t.is_leaf and id(t) not in ids and all(t is not k for k, _ in kept):
                    kept.append((t, t.detach().clone()))
        finally:
            self._depth -= 1
        self._scan([t for t, _ in kept])
        return kept

    def _undo(self, kept: list) -> None:
        """Take back `_scan_early`: the sources lose their numbers and get their values back."""
        start = len(self.seen) - len(kept)
        del self.seen[start:]
        self._depth += 1
        try:
            for k in reversed(range(len(kept))):
                t, value = kept[k]
                self._seen_ids.discard(id(t))
                t.detach().copy_(value)  # (through a detached alias: no graph, allowed on a leaf)
                if self.on_undo is not None:
                    self.on_undo(t, start + k)
        finally:
            self._depth -= 1

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
