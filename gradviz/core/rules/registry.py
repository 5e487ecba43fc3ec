"""The registry of local backward rules, their input, and the numpy helpers every rule uses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["RuleInput", "rule", "has_rule", "rule_names", "apply_rule"]


@dataclass
class RuleInput:
    """What a rule sees of one autograd node (see the module docstring)."""

    name: str
    saved: dict[str, object] = field(default_factory=dict)
    grad_outputs: list[np.ndarray | None] = field(default_factory=list)
    input_meta: list[tuple[tuple[int, ...], str] | None] = field(default_factory=list)


RuleFn = Callable[[RuleInput], "list[np.ndarray | None]"]
_RULES: dict[str, RuleFn] = {}


def rule(*names: str) -> Callable[[RuleFn], RuleFn]:
    """Register the decorated function as the backward rule of the node classes ``names``."""

    def deco(fn: RuleFn) -> RuleFn:
        for n in names:
            _RULES[n] = fn
        return fn

    return deco


def has_rule(name: str) -> bool:
    """Whether a manual rule exists for the node class ``name``."""
    return name in _RULES


def rule_names() -> list[str]:
    """Sorted names of all node classes with a manual rule."""
    return sorted(_RULES)


def apply_rule(inp: RuleInput) -> list[np.ndarray | None] | None:
    """Run the rule for ``inp.name``; ``None`` when no rule exists.

    Returns one entry per ``input_meta`` slot: a float64 array shaped as that slot says, or ``None``
    where the slot is ``None`` or the rule cannot compute it.

    Raises
    ------
    ValueError
        When a rule returns an array whose shape differs from the slot's shape (a bug in the rule).
    """
    fn = _RULES.get(inp.name)
    if fn is None:
        return None
    if all(g is None for g in inp.grad_outputs):
        return [None] * len(inp.input_meta)  # nothing arrived: torch sends nothing on either
    raw = fn(inp)
    out: list[np.ndarray | None] = []
    for i, meta in enumerate(inp.input_meta):
        value = raw[i] if i < len(raw) else None
        if meta is None or value is None:
            out.append(None)
            continue
        arr = _f(value)
        shape = tuple(map(int, meta[0]))
        if arr.shape != shape:
            raise ValueError(f"rule {inp.name}: slot {i} has shape {arr.shape}, expected {shape}")
        out.append(arr)
    return out


# ----------------------------------------------------------------------------------------- helpers

_U64 = 1 << 64


def _int(v):
    """Undo the unsigned wrap of a saved negative int (also inside tuples)."""
    if isinstance(v, tuple):
        return tuple(_int(x) for x in v)
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= (1 << 63):
        return int(v) - _U64
    return v


def _f(x) -> np.ndarray:
    # float64; complex stays complex (gradviz.core.complex_rules evaluates some rules in complex)
    x = np.asarray(x)
    if x.dtype == np.float64:
        return x  # (the common case: nothing to convert)
    return x.astype(np.complex128 if x.dtype.kind == "c" else np.float64, copy=False)


def _g(inp: RuleInput, i: int = 0) -> np.ndarray | None:
    go = inp.grad_outputs[i] if i < len(inp.grad_outputs) else None
    return None if go is None else _f(go)


def _s(inp: RuleInput, key: str):
    """A saved value: arrays as float64, everything else as saved (with negative ints restored)."""
    v = inp.saved.get(key)
    if isinstance(v, np.ndarray):
        return _f(v)
    return _int(v)


def _want(inp: RuleInput, i: int) -> bool:
    return i < len(inp.input_meta) and inp.input_meta[i] is not None


def _shape(inp: RuleInput, i: int) -> tuple[int, ...]:
    return tuple(map(int, inp.input_meta[i][0]))


def _sum_to(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back to ``shape``: drop leading dims, sum dims that were size 1."""
    a = _f(a)
    shape = tuple(shape)
    if a.shape == shape:
        return a  # nothing was broadcast
    lead = a.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"cannot sum a gradient of shape {a.shape} to {shape}")
    if lead > 0:
        a = a.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and a.shape[i] != 1)
    if axes:
        a = a.sum(axis=axes, keepdims=True)
    if a.shape != shape:
        raise ValueError(f"cannot sum a gradient of shape {a.shape} to {shape}")
    return a


def _slots(inp: RuleInput, *fns: Callable[[], np.ndarray]) -> list[np.ndarray | None]:
    """Evaluate the slot formulas only for slots torch sends a gradient along, summed to their shape."""
    out = []
    for i, f in enumerate(fns):
        out.append(_sum_to(f(), _shape(inp, i)) if _want(inp, i) else None)
    return out


def _dims(dim, ndim: int) -> tuple[int, ...]:
    """Normalise a saved reduction ``dim`` (None/() mean all dims) to sorted non-negative axes."""
    dim = _int(dim)
    if dim is None or dim == ():
        return tuple(range(ndim))
    if not isinstance(dim, tuple):
        dim = (dim,)
    return tuple(sorted(d % ndim if ndim else 0 for d in dim))


def _np_dtype(s: str):
    s = str(s).replace("torch.", "")
    try:
        return np.dtype(s)
    except TypeError:
        return None  # e.g. bfloat16: numpy cannot round to it


def _unreduce(g: np.ndarray, sizes: tuple[int, ...], dim, keepdim: bool) -> np.ndarray:
    """Put back the reduced dims of ``g`` (size 1) so it broadcasts against ``sizes``."""
    axes = _dims(dim, len(sizes))
    if not keepdim:
        for a in axes:
            g = np.expand_dims(g, a)
    return g
