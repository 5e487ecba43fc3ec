"""Read the tensors and values an autograd node saved for its backward pass."""
from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["read_saved", "saved_attribute_names", "plain_value"]

_ATTR_CACHE: dict[type, tuple[str, ...]] = {}
_CUSTOM_CACHE: dict[type, bool] = {}
_INT64_WRAP = 2**63


def saved_attribute_names(fn: Any) -> tuple[str, ...]:
    """Return the ``_saved_*`` attribute names of a node's class, cached per class.

    Parameters
    ----------
    fn : torch.autograd.graph.Node
        An autograd node (a ``grad_fn``).
    """
    cls = type(fn)
    names = _ATTR_CACHE.get(cls)
    if names is None:
        names = tuple(a for a in dir(fn) if a.startswith("_saved_"))
        _ATTR_CACHE[cls] = names
    return names


def _is_custom(fn: Any) -> bool:
    """Whether `fn` is a custom ``torch.autograd.Function``'s node (its class knows the Function)."""
    cls = type(fn)
    custom = _CUSTOM_CACHE.get(cls)
    if custom is None:
        custom = _CUSTOM_CACHE[cls] = hasattr(fn, "_forward_cls")  # (a class attribute)
    return custom and hasattr(fn, "saved_tensors")


def plain_value(value: Any) -> Any:
    """Turn a saved non-tensor value into plain Python (ints, floats, bools, str, tuples, None).

    SymInts become ints, ``torch.Size`` and lists become tuples, dtypes and layouts become strings.
    """
    if type(value) is tuple and all(type(v) is int and v < _INT64_WRAP for v in value):
        return value  # the common case: sizes, strides, dims
    if isinstance(value, int) and not isinstance(value, bool) and value >= _INT64_WRAP:
        # torch hands saved int64 values such as dim=-1 back as unsigned 64-bit numbers
        return value - 2**64
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return {torch.SymInt: int, torch.SymFloat: float, torch.SymBool: bool}[type(value)](value)
    if isinstance(value, (tuple, list, torch.Size)):
        return tuple(plain_value(v) for v in value)
    if isinstance(value, (torch.dtype, torch.layout, torch.device, torch.memory_format)):
        return str(value)
    if isinstance(value, complex):
        return value
    return repr(value)


def read_saved(fn: Any, capture: Callable | None = None) -> dict[str, Any]:
    """Return what a node saved for backward, keyed by name without the ``_saved_`` prefix.

    Tensors stay tensors (detached); every other value becomes plain Python (see `plain_value`).
    A custom ``torch.autograd.Function`` node's ``ctx.save_for_backward`` tensors come back as
    ``saved_tensors[0]``, ``saved_tensors[1]``, ... Reading must happen before backward frees them.
    With `capture`, each detached tensor ``t`` is ``capture(t, True)`` instead (the recorder's
    snapshot, taken in this order: the order of the names).

    Raises
    ------
    RuntimeError
        Torch's own error when a saved tensor was modified in place after it was saved.
    """
    out: dict[str, Any] = {}
    for attr in saved_attribute_names(fn):
        try:
            value = getattr(fn, attr)
        except RuntimeError as exc:
            if "modified by an inplace operation" in str(exc):
                raise
            continue
        key = attr[7:]  # (without "_saved_")
        if isinstance(value, torch.Tensor):
            out[key] = value.detach() if capture is None else capture(value.detach(), True)
        elif isinstance(value, (tuple, list)) and value and (value[0] is None or isinstance(value[0], torch.Tensor)) \
                and all(isinstance(v, torch.Tensor) or v is None for v in value) and any(
                isinstance(v, torch.Tensor) for v in value):
            # a list of tensors (cat inputs, index lists with None for ':'): one entry per item
            for i, v in enumerate(value):
                out[f"{key}[{i}]"] = None if v is None else (
                    v.detach() if capture is None else capture(v.detach(), True))
        else:
            out[key] = plain_value(value)
    if _is_custom(fn):
        for i, t in enumerate(fn.saved_tensors):
            if t is not None:
                out[f"saved_tensors[{i}]"] = t.detach() if capture is None else capture(t.detach(), True)
    return out
