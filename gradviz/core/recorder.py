"""Record one forward and backward pass exactly: ops, the unrolled graph, backward order, accumulation.

`record` runs a model once under a torch function mode (the forward ops, with their module, use and
source line), walks the autograd graph iteratively from the loss (stable ids, every next_functions
slot kept as its own edge), snapshots what each node saved, then runs backward with a post-hook on
every node, so the backward events come in the order PyTorch's engine really ran them.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
from torch._utils import _flatten_dense_tensors

from . import backends as _backends
from . import fastpath
from .backward_run import run_backward, walk_graph
from .buildresult import BuildResult
from .capture import ForwardCapture
from .errors import Cancelled, GradvizError, InplaceModifiedError, NonFiniteError
from .naming import grad_hooks, module_parents, name_tensors
from .recording import Contribution, GraphNode, LeafInfo, Recording
from .rerun import RecordedRun, Rerun, remember
from .sandbox import Sandbox, promote_to_oldest
from .saved import read_saved_nodes
from .sources import SourceFinder
from .targets import resolve_target
from .teardown import GraphKeeper, clear_exception_frames
from .tensors import DEFAULT_BUDGET_BYTES, TensorData, TensorStore, device_name

# BuildResult and Cancelled lived here once: still importable from here
__all__ = ["record", "record_run", "RecordedRun", "BuildResult", "Cancelled", "DEFAULT_MAX_NODES",
           "leaf_first_use_order"]

DEFAULT_MAX_NODES = 200_000


# ---------------------------------------------------------------------------------------------
# the public entry point

def record(target: Any, *, params: dict | None = None, keep_values: bool = True,
           budget_bytes: int = DEFAULT_BUDGET_BYTES, max_nodes: int = DEFAULT_MAX_NODES,
           check_finite: bool = True, progress: Callable[[float, str], None] | None = None,
           cancel: Callable[[], bool] | None = None) -> Recording:
    """Record one forward and backward pass of `target`.

    Parameters
    ----------
    target : str or callable
        A built-in model name (``"repeated-layer"``), a model script ``"path/to/file.py[:function]"``,
        or a callable taking no arguments that returns the loss, ``(loss, leaves_dict)`` or
        ``(loss, module)``.
    params : dict, optional
        Model parameters (``{"k": 3, "seed": 1}``) for built-in models.
    keep_values : bool
        Keep tensor values (True) or only shapes and dtypes.
    budget_bytes : int
        Memory budget for kept values; past it tensors keep shape, dtype and statistics.
    max_nodes : int
        Refuse graphs with more nodes than this.
    check_finite : bool
        Stop with a `NonFiniteError` naming the first op or node that produced NaN or Inf.
    progress : callable, optional
        ``progress(fraction, message)``, called as recording advances.
    cancel : callable, optional
        Polled while recording; returning True stops it with `Cancelled`.

    Returns
    -------
    Recording
        Data only. What re-runs the model for the checks is remembered for it while it lives
        (`gradviz.core.rerun.rerun_of`), so ``gradviz.run_checks(rec)`` finds it.
    """
    return record_run(target, params=params, keep_values=keep_values, budget_bytes=budget_bytes,
                      max_nodes=max_nodes, check_finite=check_finite, progress=progress,
                      cancel=cancel).recording


def record_run(target: Any, *, params: dict | None = None, keep_values: bool = True,
               budget_bytes: int = DEFAULT_BUDGET_BYTES, max_nodes: int = DEFAULT_MAX_NODES,
               check_finite: bool = True, progress: Callable[[float, str], None] | None = None,
               cancel: Callable[[], bool] | None = None) -> RecordedRun:
    """Record `target` as `record` does, and return the recording with its `Rerun`.

    Takes the same arguments as `record`. The `Rerun` (runner, custom Function replays, modules)
    is also remembered for the recording, as `record` does.

    Returns
    -------
    RecordedRun
        ``.recording`` (the data) and ``.rerun`` (what re-runs the model).
    """
    runner = resolve_target(target, params)
    keeper = GraphKeeper()
    warned: set = set()  # each warning of the model shown once, here and in its re-runs
    try:
        with Sandbox(pause_gc=True, warned=warned):
            try:
                run = _record(runner, keep_values, budget_bytes, max_nodes, check_finite,
                              progress or (lambda f, m: None), cancel, keeper)
            except BaseException as exc:
                # the model's frames in the traceback hold tensors of the graph: drop them first
                clear_exception_frames(exc)
                raise
            finally:
                # free the graph one node at a time (see teardown.py): a recursive free of a large
                # graph overflows the stack. Before the cycle collector runs again: its first pass
                # then looks at the recording only, not at the graph and its tensors too
                keeper.release()
            # the recording lives on: into the collector's oldest generation, not walked by the
            # young collections the allocations after the pause set off
            promote_to_oldest()
        run.rerun.warned = warned
    except BaseException as exc:
        clear_exception_frames(exc)
        raise
    finally:
        keeper.release()  # (nothing left to free unless entering the Sandbox failed)
    remember(run.recording, run.rerun)
    return run


def _record(runner, keep_values, budget_bytes, max_nodes, check_finite, progress, cancel,
            keeper: GraphKeeper) -> RecordedRun:
    t_start = time.perf_counter()
    store = TensorStore(keep_values, budget_bytes)
    cap = ForwardCapture(store, cancel=cancel, max_nodes=max_nodes)
    keeper.hold(cap, cap.graph_roots)
    progress(0.0, "running the forward pass")
    with Sandbox(cap):
        result = runner.call()
    built = runner.normalise(result)
    runner.note_sources(cap.leaf_seen)  # (a built-in model's re-runs find them again without a function mode)
    loss = built.loss
    t_forward = time.perf_counter()

    names = name_tensors(built, cap)
    progress(0.3, "walking the autograd graph")
    nodes, fn_ids, edges, fns = walk_graph(loss.grad_fn, max_nodes, cancel)
    inputs_of, topo = _graph_order(len(nodes), edges)
    keeper.walked(fns, topo)
    # nodes made by ops this thread's capture did not see (another thread, TorchScript)
    unseen = cap.unseen_nodes(fns, {id(t) for t in cap.leaf_seen}, fn_ids, inputs_of)
    walked_leaves = _annotate_nodes(nodes, fns, edges, cap, names, topo, inputs_of)
    del inputs_of
    input_edges = _input_nodes(nodes, fns, fn_ids, cap, names, walked_leaves)
    leaf_node_of = {n.leaf: n.id for n, _ in walked_leaves if n.leaf}
    del walked_leaves

    progress(0.45, "reading saved tensors")
    read_saved_nodes(nodes, fns, store, lambda exc, node: _inplace_error(exc, node, nodes, cap))

    # leaves: tensors named by the user, modules, or order of first use
    leaf_tensors = {names[t]: t for t in names if t.requires_grad and t.grad_fn is None}
    for name, t in built.leaves.items():
        if isinstance(t, torch.Tensor):
            leaf_tensors.setdefault(name, t)
    initial = {name: (t.grad.detach().clone() if t.grad is not None else None) for name, t in leaf_tensors.items()}

    progress(0.55, "running the backward pass")
    # a hook on every node: the backward events come in the order the engine really ran them
    try:
        backward = run_backward(loss, fns, keep_values, store, cancel)
    except RuntimeError as exc:
        if "modified by an inplace operation" in str(exc):
            raise _inplace_error(exc, None, nodes, cap) from None
        raise
    t_backward = time.perf_counter()
    if check_finite:
        if keep_values:
            _check_finite(cap.events, backward, nodes, store.nonfinite())
        else:
            _check_finite_without_values(loss, leaf_tensors)

    progress(0.85, "collecting contributions")
    leaves = _collect_leaves(leaf_tensors, initial, leaf_node_of, edges, backward, store)
    loss_data = store.capture(loss.detach())
    manual = None
    leaf_values = {k: (v.tensor.value if v.tensor is not None else None) for k, v in leaves.items()}
    manual_note = ""
    if all(v is not None for v in leaf_values.values()):
        manual = runner.manual(leaf_values)
    else:
        manual_note = "leaf values were not kept (--no-values or the memory budget)"

    # each custom Function call's replay, by node id in id order (the walked nodes' id is their index)
    replays = {i: cap.replays[fns[i]] for i in sorted(fn_ids[fn] for fn in cap.replays if fn in fn_ids)}
    store.release()
    rec = Recording(
        target=runner.name, params=dict(runner.params), forward=cap.events, nodes=nodes, edges=edges,
        input_edges=input_edges, backward=backward, leaves=leaves, loss=loss_data, root=0,
        keep_values=keep_values, budget_bytes=budget_bytes,
        dropped={"tensors": store.dropped_count, "bytes": store.dropped_bytes},
        meta={"torch": torch.__version__, "manual_note": manual_note, "grad_hooks": grad_hooks(cap, names),
              "module_parents": module_parents(cap),
              "unseen_nodes": unseen,
              "seconds": {"forward": t_forward - t_start,
                                                       "backward": t_backward - t_forward,
                                                       "total": time.perf_counter() - t_start}},
        manual=manual, leaf_order=[names.get(t, f"source{i}") for i, t in enumerate(cap.leaf_seen)],
        source_values=cap.source_data)
    progress(1.0, "done")
    return RecordedRun(rec, Rerun(runner, replays, list(cap.module_order)))


# ---------------------------------------------------------------------------------------------
# graph

def topological_order(n: int, edges, inputs_of: list[list[int]] | None = None) -> list[int]:
    """Node ids with every sender before its receivers (Kahn's algorithm, ties by id).

    `inputs_of` (`producers_of` of the edges), when given, saves building it again.
    """
    import heapq

    out = producers_of(n, edges) if inputs_of is None else inputs_of
    indeg = [0] * n
    for receivers in out:
        for d in receivers:
            indeg[d] += 1
    ready = [i for i in range(n) if indeg[i] == 0]
    heapq.heapify(ready)
    order = []
    pop, push = heapq.heappop, heapq.heappush
    while ready:
        i = pop(ready)
        order.append(i)
        for d in out[i]:
            indeg[d] -= 1
            if indeg[d] == 0:
                push(ready, d)
    return order


_LEAF, _OWN = 1, 2  # (see _annotate_nodes; kernels/record_graph.cpp's settle_events reads them so)


def _annotate_nodes(nodes, fns, edges, cap: ForwardCapture, names: dict, topo: list[int] | None = None,
                    inputs_of: list[list[int]] | None = None) -> list:
    """Give nodes their forward event, module use, source, custom Function and backend.

    Returns the leaf nodes with their variables, ``(node, tensor)`` in id order.

    `nodes` are fresh from the walk (no module, use, uses or device yet). `topo` (a consumers-first
    order) and `inputs_of` (each node's producers, one per edge) are computed from `edges` when not
    given.
    """
    mod_names = getattr(cap, "module_names", {})
    uses = cap.module_uses
    grad_fn_event = cap.grad_fn_event
    custom_types: dict[type, bool] = {}  # node class -> made by a custom autograd Function
    count = len(nodes)
    event_of: list = [None] * count  # each node's forward event, as it is settled
    # per node: _LEAF, _OWN (the node is the output node of its own event) or 0
    fixed = bytearray(count)
    leaves: list = []
    for node, fn in zip(nodes, fns):
        if node.kind == "leaf":
            fixed[node.id] = _LEAF
            var = fn.variable
            leaves.append((node, var))
            node.leaf = names.get(var)
            node.tensor = None
            node.device = device_name(var)
            node.source = None
            continue
        ev_index = grad_fn_event.get(fn)
        if ev_index is not None:
            event_of[node.id] = ev_index
            fixed[node.id] = _OWN
        custom = custom_types.get(type(fn))
        if custom is None:
            custom = custom_types[type(fn)] = hasattr(fn, "_forward_cls")
        if custom:
            node.kind = "custom"
            node.function = fn._forward_cls.__qualname__
            node.name = fn._forward_cls.__name__
    if inputs_of is None:
        inputs_of = producers_of(count, edges)
    if topo is None:
        topo = topological_order(count, edges)
    # nodes made inside a composite op (no event of their own) belong to the earliest op that
    # consumed them; a topological order (every consumer before its inputs) settles that in one pass
    lib = fastpath.helper()
    if lib is not None:
        lib.settle_events(topo, inputs_of, event_of, bytes(fixed))  # (the same pass in one call)
    else:
        for nid in topo:
            ev = event_of[nid]
            if ev is None or fixed[nid] == _LEAF:
                continue
            for child in inputs_of[nid]:
                if not fixed[child]:
                    now = event_of[child]
                    if now is None or ev < now:
                        event_of[child] = ev
    events = cap.events
    event_module = cap.event_module
    plain: set = set()  # node classes no backend describes (the common case: looked up once)
    # per event: what each of its nodes takes from it (source, module, use, uses, device), found once
    settled: list = [None] * len(events)
    for node in nodes:
        nid = node.id
        ev_index = event_of[nid]
        if ev_index is not None and fixed[nid] != _LEAF:
            ev = events[ev_index]
            taken = settled[ev_index]
            if taken is None:
                module = use = uses_m = None  # (a node's own when its event ran in no module)
                mod = event_module[ev_index]
                if mod is not None:
                    m, use = mod
                    module = mod_names.get(m, type(m).__name__)
                    uses_m = uses.get(m)
                    ev.module, ev.use = module, use
                taken = settled[ev_index] = (ev.source, module, use, uses_m,
                                             ev.outputs[0].device if ev.outputs else None)
            # (None where the event has no module or outputs: what a node fresh from the walk has)
            node.forward_event = ev_index
            node.source, node.module, node.use, node.uses, node.device = taken
            if fixed[nid] == _OWN:
                # the op's own output; nodes made inside a composite op have no tensor of their own
                if ev.outputs:
                    node.tensor = ev.outputs[0]
                if ev.node is None:
                    ev.node = nid
        torch_name = node.torch_name
        if torch_name in plain:
            continue
        alias = _backends.describe_node(torch_name, node.device or "cpu")
        if alias is None:
            plain.add(torch_name)  # (no alias for a class on one device: none on any)
            continue
        node.name, node.backend = alias
        node.kind = "custom"
        if node.function is None or node.function.startswith("GeneratedBackwardFor_"):
            # torch.library's generated Function is an implementation detail of the op
            node.function = alias[0]
    return leaves


def _graph_order(count: int, edges) -> tuple[list[list[int]], list[int]]:
    """`producers_of` and `topological_order` of the edges (in one call to the helper when it is loaded)."""
    lib = fastpath.helper()
    if lib is not None:
        return lib.order(count, edges)
    inputs_of = producers_of(count, edges)
    return inputs_of, topological_order(count, edges, inputs_of)


def producers_of(count: int, edges) -> list[list[int]]:
    """Each node's producers, one per edge (next_functions slot), in slot order."""
    inputs_of: list[list[int]] = [[] for _ in range(count)]
    for s, d, _ in edges:
        inputs_of[s].append(d)
    return inputs_of


def _input_nodes(nodes, fns, fn_ids, cap: ForwardCapture, names: dict, leaves: list | None = None) -> list:
    """Add a node for every tensor that needs no grad but fed an op of the graph.

    `leaves`: the leaf nodes with their variables as `_annotate_nodes` returns them (found when not given).
    """
    input_edges: list[tuple[int, int, int]] = []
    # keyed by id(): a tensor's hash is a Python call. The tensors stay alive meanwhile (the leaf
    # variables in `leaves`, the inputs in cap.event_tensors), so no id is reused
    input_ids: dict[int, int] = {}
    if leaves is None:
        leaves = [(n, fns[n.id].variable) for n in nodes if n.kind == "leaf"]
    leaf_ids = {id(v): n.id for n, v in leaves}
    name_of = {id(t): name for t, name in names.items()}  # (`names` holds the tensors meanwhile)

    def input_node(ev, pos: int, t) -> int:
        """The node of input `t` of `ev`, which needs no grad (made at its first use)."""
        nid = input_ids.get(id(t))
        if nid is None:
            nid = len(nodes)
            input_ids[id(t)] = nid
            name = name_of.get(id(t))
            # (id, name, kind, torch_name by position, the rest set: keyword arguments cost more)
            node = GraphNode(nid, f"input{nid}" if name is None else name, "input", "")
            node.leaf, node.tensor, node.device = name, ev.inputs[pos], device_name(t)
            node.source, node.forward_event = ev.source, ev.index
            nodes.append(node)
        return nid

    lib = fastpath.helper()
    if lib is not None:
        # the loop below in one call, but for the inputs that get a node of their own
        events = cap.events
        for e, pos, op_id, t in lib.input_refs(events, cap.event_tensors, fn_ids, leaf_ids):
            ev = events[e]
            nid = ev.input_nodes[pos] = input_node(ev, pos, t)
            input_edges.append((op_id, nid, pos))
        return input_edges
    node_of = fn_ids.get  # (None is no key: None for a tensor without grad_fn)
    for ev, (ins, outs) in zip(cap.events, cap.event_tensors):
        fn = None
        for t in outs:
            fn = t.grad_fn
            if fn is not None:
                break
        op_id = node_of(fn)
        ev.input_nodes = found = []
        pos = -1
        for t in ins:
            pos += 1
            grad_fn = t.grad_fn
            if grad_fn is not None:
                found.append(node_of(grad_fn))
                continue
            if t.requires_grad:
                found.append(leaf_ids.get(id(t)))
                continue
            if op_id is None:
                found.append(None)
                continue
            nid = input_node(ev, pos, t)
            found.append(nid)
            input_edges.append((op_id, nid, pos))
    return input_edges


def _check_finite(events, backward, nodes, bad: set[int]) -> None:
    """Name the first forward op, then the first backward node, that produced NaN or Inf.

    `bad` holds the ids of the snapshots whose values hold NaN or Inf (`TensorStore.nonfinite`).
    """
    if not bad:
        return

    def _finite(data: TensorData | None) -> bool:
        return id(data) not in bad

    for ev in events:
        if not all(_finite(o) for o in ev.outputs):
            if not all(_finite(i) for i in ev.inputs):
                raise NonFiniteError(f"an input of {ev.op} (at {ev.source}) already holds NaN or Inf",
                                     hint="check the values the model starts from")
            raise NonFiniteError(f"NaN or Inf first appears in the forward pass at {ev.op} (at {ev.source})",
                                 hint="look at that op's inputs: log of a non-positive number, division by "
                                      "zero, overflow")
    for ev in backward:
        if not all(_finite(g) for g in ev.grad_inputs):
            n = nodes[ev.node]
            where = f" (made at {n.source})" if n.source else ""
            raise NonFiniteError(f"NaN or Inf first appears in the backward pass at node {n.id} {n.name}{where}",
                                 hint="look at that node's inputs and saved tensors; a forward value at a "
                                      "singularity (sqrt(0), log(0), 0/0) makes an infinite local gradient")


def _check_finite_without_values(loss, leaf_tensors) -> None:
    """Without kept values only the loss and the leaves' gradients can be looked at."""
    hint = "record again with values kept (without --no-values) to find the first op that made it"
    if not bool(torch.isfinite(loss.detach()).all()):
        raise NonFiniteError("the loss is NaN or Inf", hint=hint)
    lib = fastpath.helper()
    if lib is not None:
        tensors = list(leaf_tensors.values())
        found = lib.grads_finite(tensors)
        if found is not None:
            # the floating gradients in CPU memory read in place by the helper, the others joined
            finite, others = found
            if finite and (not others or _all_finite([tensors[i].grad for i in others])):
                return
    # (no helper, a leaf it leaves to Python, or a gradient that is not finite: the first one named)
    grads = [(name, g) for name, t in leaf_tensors.items()
             if (g := t.grad) is not None and g.is_floating_point()]
    if _all_finite([g for _, g in grads]):
        return
    for name, g in grads:  # (the first leaf, in order, whose gradient is not finite)
        if not bool(torch.isfinite(g).all()):
            raise NonFiniteError(f"{name}.grad holds NaN or Inf", hint=hint)


def _all_finite(tensors: list) -> bool:
    """Whether every value of every tensor in `tensors` is finite, tested a group at a time.

    Tensors of one dtype and device are joined, up to `_FINITE_JOIN` values at once, and tested
    together: a model's thousands of small parameter gradients in a few calls, not one each.
    """
    groups: dict = {}
    for g in tensors:
        # (by dtype and device; None for the CPU, without making a device object per tensor)
        groups.setdefault((g.dtype, None if g.is_cpu else g.device), []).append(g)
    with torch.no_grad():
        for group in groups.values():
            chunk, size = [], 0
            for g in group + [None]:
                n = 0 if g is None else g.numel()
                if g is None or (chunk and size + n > _FINITE_JOIN):
                    # (the chunk's values joined into one flat tensor by one call, not a reshape each)
                    if chunk and not bool(torch.isfinite(_flatten_dense_tensors(chunk)).all()):
                        return False
                    chunk, size = [], 0
                if g is not None:
                    chunk.append(g)
                    size += n
    return True


_FINITE_JOIN = 1 << 22  # values joined for one finiteness test (16 MiB of float32)


def _inplace_error(exc: RuntimeError, reader: GraphNode | None, nodes, cap: ForwardCapture) -> GradvizError:
    """Turn torch's "modified by an inplace operation" error into one that names the op and tensor."""
    import re

    text = str(exc)
    m = re.search(r"\[(\S+) \[([\d, ]*)\]\], which is output (\d+) of (\w+)", text)
    producer_name = m.group(4) if m else None
    shape = m.group(2) if m else "?"
    producer = None
    if producer_name is not None:
        # torch names the producer by its node class, with or without the "Backward<N>" suffix
        producer = next((n for n in nodes if n.forward_event is not None and (
            n.torch_name == producer_name or re.fullmatch(re.escape(producer_name) + r"Backward\d*", n.torch_name))),
            None)
    made = ""
    target = None
    if producer is not None:
        ev = cap.events[producer.forward_event]
        made = f"the output of {ev.op} (at {ev.source}), shape ({shape})"
        target_tensors = cap.event_tensors[producer.forward_event][1]
        for later, (ins, _) in zip(cap.events[producer.forward_event + 1:],
                                   cap.event_tensors[producer.forward_event + 1:]):
            if later.inplace and ins and any(ins[0] is t or ins[0].data_ptr() == t.data_ptr()
                                             for t in target_tensors):
                target = later
                break
    elif m:
        made = f"a tensor of shape ({shape}) made by {producer_name}"
    else:
        made = "a tensor"
    who = f" by {reader.name}" if reader is not None else ""
    how = f": {target.op} at {target.source}" if target is not None else ""
    return InplaceModifiedError(
        f"{made} was saved{who} for backward, then modified by an inplace operation{how}",
        hint="use an out-of-place op (y = y + 1 instead of y += 1 or y.add_(1)), or .clone() the tensor "
             "before modifying it")


# ---------------------------------------------------------------------------------------------
# leaves and accumulation

def _collect_leaves(leaf_tensors, initial, leaf_node_of, edges, backward, store) -> dict:
    """Per leaf: the gradient on each incoming edge in the order its producer ran, with running sums."""
    leaves: dict[str, LeafInfo] = {}
    into: dict[int, tuple[LeafInfo, tuple]] = {}  # leaf node id -> (its LeafInfo, its tensor's shape)
    if store.keep_values:
        # (one capture each: capture_many, copying tensors of one shape together, was no faster
        # for 3,240 parameters and their gradients)
        for name, t in leaf_tensors.items():
            nid = leaf_node_of.get(name)
            init = initial.get(name)
            info = LeafInfo(name=name, node=nid, tensor=store.capture(t.detach()),
                            requires_grad=bool(t.requires_grad),
                            initial_grad=store.capture(init) if init is not None else None)
            info.tensor.requires_grad = bool(t.requires_grad)
            info.grad = store.capture(t.grad.detach()) if t.grad is not None else None
            if nid is not None:
                into[nid] = (info, tuple(t.shape))
            leaves[name] = info
    else:
        lib = fastpath.helper()
        made = None if lib is None else lib.leaves_shapes_only(leaf_tensors, initial, leaf_node_of, store,
                                                                TensorData, LeafInfo)
        if made is not None:
            leaves, into = made
        else:  # (no helper, or a leaf the helper leaves to Python: a subclass, a tensor with a grad_fn)
            _leaves_without_values(leaf_tensors, initial, leaf_node_of, store, leaves, into)
    lib = fastpath.helper()
    if lib is not None:
        # the two loops below in one call
        lib.leaf_contributions(edges, backward, into, Contribution, _reduced)
        return leaves
    # only the edges into a leaf's node matter: the slots of each node that feed a leaf
    into_leaf: dict[int, list[tuple[int, LeafInfo, tuple]]] = {}
    for src, dst, slot in edges:
        if dst in into:
            into_leaf.setdefault(src, []).append((slot, *into[dst]))
    if not into_leaf:
        return leaves
    # each leaf's contributions in the order their producers ran (then by slot)
    feeds_of = into_leaf.get
    for ev in backward:
        feeds = feeds_of(ev.node)
        if feeds is None:
            continue
        grads = ev.grad_inputs
        for slot, info, shape in feeds:
            if slot >= len(grads):
                continue
            g = grads[slot]
            if g is None:
                continue
            reduced_from = None
            if tuple(g.shape) != shape:
                # the engine sums a broadcast gradient down to the leaf's shape before it arrives
                reduced_from = tuple(g.shape)
                g = _reduced(g, shape)
            # (by position: producer, slot, value, backward_event, leaf, reduced_from)
            info.contributions.append(Contribution(ev.node, slot, g, ev.index, info, reduced_from))
    return leaves


def _reduced(g: TensorData, shape: tuple) -> TensorData:
    """The snapshot of broadcast gradient `g` summed down to the leaf's `shape` (its value, where kept)."""
    return TensorData(shape, g.dtype, g.device, None if g.value is None else sum_to(g.value, shape))


def _leaves_without_values(leaf_tensors, initial, leaf_node_of, store, leaves, into) -> None:
    """`_collect_leaves`'s snapshots without values, numbered as its captures one by one would be.

    Per leaf, in order: the tensor (its own requires_grad), the gradient it had before backward
    (when it had one), its ``.grad`` after backward (a detached copy's: requires_grad False), all
    described first and made by one `TensorStore.shapes_only`. Fills `leaves` and `into`.
    """
    described: list = []
    add = described.append
    rows: list = []  # per leaf: (name, tensor, node id, requires_grad, has an initial grad, has a grad)
    for name, t in leaf_tensors.items():
        rg = bool(t.requires_grad)
        add((tuple(t.shape), t.dtype, device_name(t), rg))
        init = initial.get(name)
        if init is not None:
            add((tuple(init.shape), init.dtype, device_name(init), init.requires_grad))
        g = t.grad
        if g is not None:
            add((tuple(g.shape), g.dtype, device_name(g), False))
        rows.append((name, t, leaf_node_of.get(name), rg, init is not None, g is not None))
    snaps = iter(store.shapes_only(described))
    for name, t, nid, rg, has_init, has_grad in rows:
        tensor = next(snaps)
        info = LeafInfo(name, nid, tensor, rg, None, next(snaps) if has_init else None)
        if has_grad:
            info.grad = next(snaps)
        if nid is not None:
            into[nid] = (info, tensor.shape)
        leaves[name] = info


def sum_to(value: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a broadcast array down to `shape`, as autograd's ``sum_to`` does."""
    lead = value.ndim - len(shape)
    if lead > 0:
        value = value.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and value.shape[i] != 1)
    if axes:
        value = value.sum(axis=axes, keepdims=True)
    return value.reshape(shape)


def leaf_first_use_order(runner, on_leaf: Callable, dtype=None):
    """Run `runner` once, calling ``on_leaf(tensor, index)`` when each source tensor is first used.

    Source tensors are the ones no op of the run made: leaves and inputs that need no grad. The index
    is the tensor's position in order of first use, the order `record` keeps in
    ``Recording.leaf_order``; finite-difference checks use it to find a tensor again in a fresh run.
    """
    # not the recorder's forward capture: a re-run needs the sources numbered, nothing else
    with Sandbox(SourceFinder(on_leaf), dtype=dtype):
        return runner.call(dtype=dtype)
