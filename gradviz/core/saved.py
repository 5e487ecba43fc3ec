"""Read the tensors and values an autograd node saved for its backward pass."""
from __future__ import annotations

from typing import Any, Callable

import torch

from . import fastpath
from .tensors import TensorData, TensorStore

__all__ = ["read_saved", "read_saved_nodes", "saved_attribute_names", "plain_value"]

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


def read_saved_nodes(nodes: list, fns: list, store: TensorStore,
                     failed: Callable[[RuntimeError, Any], BaseException]) -> None:
    """Set each node's ``saved`` to `read_saved` of its grad_fn, snapshots taken by `store`; leaves skipped.

    The recorder's compiled helper (`gradviz.core.fastpath`, ``kernels/record_saved.cpp``) reads the
    nodes when it is loaded, with the same result, numbering and order of snapshots; the nodes it
    leaves to Python (custom Functions' nodes, unusual values, a read that raised) and every node
    where it is not loaded are read here by `read_saved`.

    Parameters
    ----------
    nodes : list of GraphNode
        The graph's nodes; ``nodes[i].kind == "leaf"`` ones are skipped, and those past ``len(fns)``.
    fns : list of torch.autograd.graph.Node
        ``fns[i]``: the autograd node of ``nodes[i]``.
    store : TensorStore
        Takes the snapshots (``store.capture(t, True)`` for each detached tensor, in order).
    failed : callable
        ``failed(exc, node)`` gives the exception to raise when reading `node` raised a
        RuntimeError (a saved tensor modified in place).
    """
    capture = store.capture
    lib = fastpath.helper()
    if lib is not None and torch._C._len_torch_function_stack() > 0:
        lib = None  # (a torch function mode would see read_saved's detach(), not the helper's)
    i, n = 0, min(len(nodes), len(fns))  # (as zip: nodes added after the walk have no fn)
    while i < n:
        if lib is not None:
            # (with values each snapshot is store.capture's; without, the helper numbers them on)
            i, uid = lib.read_saved(nodes, fns, i, capture if store.keep_values else None,
                                    store.snapshot_table() if store.keep_values else None, store.last_uid,
                                    saved_attribute_names, plain_value, TensorData)
            if not store.keep_values:
                store.last_uid = uid
            if i >= n:
                break
        node = nodes[i]
        if node.kind != "leaf":
            try:
                # (each saved tensor snapshotted as it is read, in the order of the names)
                node.saved = read_saved(fns[i], capture)
            except RuntimeError as exc:
                raise failed(exc, node) from None
        i += 1
