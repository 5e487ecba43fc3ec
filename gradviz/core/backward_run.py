"""Walk the autograd graph from the loss and run backward with a recording hook on every node.

Both steps have two paths with one result: the compiled helper's (`gradviz.core.fastpath`: the
walk and the hooks in C++, no Python call per node while backward runs) and plain Python's (a
Python post hook per node, which the engine calls with every gradient wrapped in a Python tensor).
The helper is used when it is loaded; the recording is the same either way
(tests/core/test_fastpath.py compares them).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch

from . import fastpath
from .capture import LIMIT_HINT
from .errors import Cancelled, GradvizError, GraphTooLarge
from .recording import BackwardEvent, GraphNode
from .tensors import TensorData, TensorStore

__all__ = ["walk_graph", "run_backward"]


def _too_large(max_nodes: int) -> GraphTooLarge:
    return GraphTooLarge(f"the autograd graph has more than {max_nodes:,} nodes (the limit)", hint=LIMIT_HINT)


def _poller(cancel: Callable[[], bool] | None, errors: list) -> Callable[[], bool] | None:
    """`cancel` for the helper: never raises (what it raised is kept in `errors`; True then)."""
    if cancel is None:
        return None

    def poll() -> bool:
        try:
            return bool(cancel())
        except BaseException as exc:  # raised again by the caller, once the helper has stopped
            errors.append(exc)
            return True

    return poll


def _stopped(errors: list) -> BaseException:
    return errors[0] if errors else Cancelled()


def _nodes(names: list[str]) -> list[GraphNode]:
    nodes = []
    classes: dict[str, tuple[str, str]] = {}  # torch's name -> (name without namespace, kind)
    for i, raw in enumerate(names):
        known = classes.get(raw)
        if known is None:
            torch_name = raw.rsplit("::", 1)[-1]
            known = classes[raw] = (torch_name, "leaf" if torch_name == "AccumulateGrad" else "op")
        # (by position: id, name, kind, torch_name; keyword arguments cost twice as much per node)
        nodes.append(GraphNode(i, known[0], known[1], known[0]))
    return nodes


def walk_graph(root_fn: Any, max_nodes: int, cancel: Callable[[], bool] | None) -> tuple:
    """Breadth-first walk from the loss's node: ids in discovery order, one edge per slot.

    Returns
    -------
    (nodes, fn_ids, edges, fns)
        A `GraphNode` per node, the node of each id (``fns``) and the id of each node (``fn_ids``),
        and the edges ``(consumer id, producer id, next_functions slot)``.
    """
    if root_fn is None:
        raise GradvizError("the loss has no autograd graph", hint="make sure some tensor has requires_grad=True")
    lib = fastpath.helper()
    if lib is not None:
        errors: list = []
        out = lib.walk(root_fn, max_nodes, _poller(cancel, errors))
        if out is None:
            raise _stopped(errors)
        fns, edges, names, complete = out
        if not complete:
            raise _too_large(max_nodes)
        return _nodes(names), dict(zip(fns, range(len(fns)))), edges, fns
    fn_ids: dict[Any, int] = {root_fn: 0}
    fns = [root_fn]
    edges: list[tuple[int, int, int]] = []
    # breadth first: `fns` is the queue too (nodes are taken in the order they were found)
    src = 0
    while src < len(fns):
        slot = 0
        for nxt, _ in fns[src].next_functions:
            if nxt is not None:
                dst = fn_ids.get(nxt)
                if dst is None:
                    dst = len(fns)
                    if dst >= max_nodes:
                        raise _too_large(max_nodes)
                    fn_ids[nxt] = dst
                    fns.append(nxt)
                edges.append((src, dst, slot))
            slot += 1
        src += 1
        if cancel is not None and (len(fns) & 1023) == 0 and cancel():
            raise Cancelled()
    return _nodes([fn.name() for fn in fns]), fn_ids, edges, fns


def run_backward(loss: torch.Tensor, fns: list, keep_values: bool, store: TensorStore,
                 cancel: Callable[[], bool] | None) -> list[BackwardEvent]:
    """Run ``loss.backward()`` and return each node's run, in the order the engine ran them.

    With values, the gradients are held until backward ends (holding them also stops the engine
    from accumulating into them in place, so values stay as sent) and snapshotted then, in groups
    of one shape; without values, only shapes are taken and no gradient is held. Torch's errors
    (an in-place change of a saved tensor) come out as they are.
    """
    lib = fastpath.helper()
    if lib is not None:
        return _run_compiled(lib, loss, fns, keep_values, store, cancel)
    raw: list[tuple[int, Any, Any]] = []
    handles = []
    capture = store.capture

    def make_hook(node_id):
        def hook(grad_inputs, grad_outputs):
            if keep_values:
                raw.append((node_id, grad_inputs, grad_outputs))
            else:
                raw.append((node_id, [capture(g) for g in grad_inputs], [capture(g) for g in grad_outputs]))
            if cancel is not None and (len(raw) & 255) == 0 and cancel():
                raise Cancelled()
        return hook

    for i, fn in enumerate(fns):
        handles.append(fn.register_hook(make_hook(i)))
    try:
        torch.autograd.backward(loss)
    finally:
        for h in handles:
            h.remove()
    if not keep_values:
        return [BackwardEvent(i, node_id, gout, gin) for i, (node_id, gin, gout) in enumerate(raw)]
    # one snapshot per gradient, copied in groups of one shape (nothing changes them now), in
    # the order one by one would take them: each step's outputs' gradients, then its inputs'
    flat: list = []
    for _, gin, gout in raw:
        flat.extend(gout)
        flat.extend(gin)
    counts = [(node_id, len(gin), len(gout)) for node_id, gin, gout in raw]
    raw.clear()
    return _events(counts, store.capture_many(flat), True)


def _run_compiled(lib, loss, fns, keep_values, store, cancel) -> list[BackwardEvent]:
    errors: list = []
    hooks = lib.Hooks(fns, keep_values, _poller(cancel, errors))
    try:
        torch.autograd.backward(loss)
    except RuntimeError as exc:
        if lib.CANCELLED in str(exc):
            raise _stopped(errors) from None
        raise
    finally:
        hooks.remove()
    if keep_values:
        # each gradient once, in capture order (each step's grad_outputs, then its grad_inputs): the
        # helper's own gradients taken in C++, the others by capture_many, in order
        more = functools.partial(store.capture_many, stack=lib.stack, stats=lib.stats_rows)
        return hooks.take_events(store, TensorData, BackwardEvent, more)
    # shapes only, each snapshot numbered in the order the Python hook takes them (grad_inputs first)
    return hooks.take_events(store, TensorData, BackwardEvent)


def _events(counts: list, snaps: list, outputs_first: bool) -> list[BackwardEvent]:
    """Cut the snapshots of all steps into `BackwardEvent` s (``counts``: node, #grad_inputs, #grad_outputs)."""
    backward = []
    at = 0
    for i, (node_id, n_in, n_out) in enumerate(counts):
        first = n_out if outputs_first else n_in
        mid = at + first
        end = mid + (n_in if outputs_first else n_out)
        if outputs_first:
            backward.append(BackwardEvent(i, node_id, snaps[at:mid], snaps[mid:end]))
        else:
            backward.append(BackwardEvent(i, node_id, snaps[mid:end], snaps[at:mid]))
        at = end
    return backward
