"""The data a recording holds: forward events, the unrolled graph, backward events, leaves.

A `Recording` is plain data: it holds no live tensors and no autograd graph, so it can be viewed,
stepped, checked, saved and exported after the model has gone. What re-runs the model lives apart,
in a `gradviz.core.rerun.Rerun`.

Its ``save``, ``export`` and ``_repr_svg_`` methods call into the I/O layer (storage, exporters),
which sits above this module and imports it. So that this module never imports upward, the I/O
layer registers its functions here with `io_function` when it is imported, and ``gradviz.core``
imports it: any code that can hold a Recording has imported ``gradviz.core`` first.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .tensors import TensorData

__all__ = ["short_source", "ForwardEvent", "GraphNode", "BackwardEvent", "Contribution", "LeafInfo", "Recording",
           "io_function"]

# "save", "export", "repr_svg": filled by the I/O layer (gradviz.core.storage, gradviz.core.exporters)
_IO: dict[str, Callable] = {}


def io_function(name: str) -> Callable[[Callable], Callable]:
    """Register the decorated function as the I/O layer's `name` (``"save"``, ``"export"``, ``"repr_svg"``)."""
    def register(fn: Callable) -> Callable:
        _IO[name] = fn
        return fn
    return register


def _io(name: str) -> Callable:
    fn = _IO.get(name)
    if fn is None:  # only when gradviz.core was bypassed (gradviz.core/__init__ imports the I/O layer)
        raise RuntimeError(f"the I/O layer has not registered {name!r}: import gradviz.core")
    return fn


def short_source(source: str | None, empty: str = "") -> str:
    """A ``file:line`` shown relative to the working folder when it lies below it."""
    if not source:
        return empty
    path, _, line = source.rpartition(":")
    try:
        rel = os.path.relpath(path)
        path = rel if not rel.startswith("..") else path
    except ValueError:  # another drive on Windows
        pass
    return f"{path}:{line}"


@dataclass(eq=False)
class ForwardEvent:
    """One op of the forward pass, in execution order.

    Attributes
    ----------
    index : int
        Position in the forward pass.
    op : str
        The op's name (``"mul"``, ``"linear"``, ``"LinearFunction"``, ``"gradviz.linear.default"``).
    inputs : list of TensorData
        The tensor arguments, in argument order.
    outputs : list of TensorData
        The tensor results.
    source : str or None
        The user's ``file:line`` that called the op.
    module : str or None
        Path of the innermost module that ran the op (``"layer"``), if any.
    use : int or None
        Which call of that module (1-based).
    node : int or None
        The graph node this op created, if it created one.
    inplace : bool
        Whether the op modified its first argument in place.
    input_nodes : list of int or None
        For each tensor input, the graph node that produced it (its grad_fn, leaf or input node).
    """

    index: int
    op: str
    inputs: list
    outputs: list
    source: str | None = None
    module: str | None = None
    use: int | None = None
    node: int | None = None
    inplace: bool = False
    input_nodes: list = field(default_factory=list)


@dataclass(eq=False)
class GraphNode:
    """One node of the unrolled autograd graph.

    Attributes
    ----------
    id : int
        Stable id: breadth-first order from the loss's node (0), then input nodes.
    name : str
        Torch's node class name without namespace (``"MulBackward0"``, ``"AccumulateGrad"``), or the
        custom Function's display name (``"LinearFunction"``).
    kind : str
        ``"op"``, ``"custom"``, ``"leaf"`` (AccumulateGrad) or ``"input"`` (a tensor that needs no grad).
    torch_name : str
        The node class name exactly as torch has it.
    """

    id: int
    name: str
    kind: str
    torch_name: str = ""
    module: str | None = None
    use: int | None = None
    uses: int | None = None
    backend: str | None = None
    source: str | None = None
    forward_event: int | None = None
    leaf: str | None = None
    function: str | None = None
    saved: dict = field(default_factory=dict)
    tensor: TensorData | None = None
    device: str | None = None

    @property
    def label(self) -> str:
        """Text for a drawing: the name, the module use, the backend."""
        text = self.leaf if self.kind in ("leaf", "input") and self.leaf else self.name
        if self.kind == "custom" and self.backend:
            text = f"{self.name} [{self.backend}]"
        if self.module is not None and self.use is not None and self.uses:
            text += f"\n{self.module} · use {self.use}/{self.uses}"
        return text


@dataclass(eq=False)
class BackwardEvent:
    """One run of a node during backward, in PyTorch's execution order.

    Attributes
    ----------
    index : int
        Position in the backward pass.
    node : int
        The node that ran.
    grad_outputs : list of TensorData or None
        The gradients that arrived at the node (summed by the engine when several producers sent one).
    grad_inputs : list of TensorData or None
        The gradients the node sent on, one per slot of its next_functions (empty for AccumulateGrad).
    """

    index: int
    node: int
    grad_outputs: list
    grad_inputs: list


@dataclass(eq=False)
class Contribution:
    """One gradient that reached a leaf's AccumulateGrad node along one edge.

    Attributes
    ----------
    producer : int
        The node that sent it.
    slot : int
        The slot of the producer's next_functions it went along.
    value : TensorData or None
    backward_event : int
        Index of the producer's backward event.
    reduced_from : tuple or None
        The shape the producer sent, where the engine summed a broadcast gradient down to the leaf's shape.
    running_sum : TensorData or None
        The leaf's starting ``.grad`` (if any) plus every contribution up to this one, in arrival order
        (computed on first access).
    """

    producer: int
    slot: int
    value: TensorData | None
    backward_event: int = -1
    leaf: "LeafInfo | None" = field(default=None, repr=False)
    reduced_from: tuple | None = None
    _running: TensorData | None = field(default=None, repr=False)

    @property
    def running_sum(self) -> TensorData | None:
        if self._running is None and self.leaf is not None:
            self.leaf.compute_running_sums()
        return self._running


@dataclass(eq=False)
class LeafInfo:
    """A named leaf tensor and what backward did to its ``.grad``."""

    name: str
    node: int | None
    tensor: TensorData | None
    requires_grad: bool
    grad: TensorData | None = None
    initial_grad: TensorData | None = None
    contributions: list = field(default_factory=list)

    def compute_running_sums(self) -> None:
        """Fill each contribution's running sum: the engine adds each arriving gradient to its buffer."""
        running = None
        if self.initial_grad is not None and self.initial_grad.value is not None:
            running = self.initial_grad.value
        for c in self.contributions:
            v = None if c.value is None else c.value.value
            if v is None:
                running = None
                break
            running = v.copy() if running is None else running + v
            c._running = TensorData(c.value.shape, c.value.dtype, c.value.device, running)


@dataclass(eq=False)
class Recording:
    """Everything recorded of one forward and backward pass.

    Attributes
    ----------
    target : str
        What was recorded (a built-in model name, a script path, or ``"<callable>"``).
    params : dict
        The model parameters it ran with.
    forward : list of ForwardEvent
    nodes : list of GraphNode
        Indexed by node id.
    edges : list of (int, int, int)
        ``(sender, receiver, slot)``: gradient edges, loss towards leaves; slot indexes the sender's
        next_functions.
    input_edges : list of (int, int, int)
        ``(op node, input node, argument position)``: where a tensor that needs no grad entered an op.
    backward : list of BackwardEvent
    leaves : dict of str to LeafInfo
    loss : TensorData
    """

    target: str
    params: dict
    forward: list
    nodes: list
    edges: list
    input_edges: list
    backward: list
    leaves: dict
    loss: TensorData | None = None
    root: int = 0
    keep_values: bool = True
    budget_bytes: int = 0
    dropped: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    manual: dict | None = None
    leaf_order: list = field(default_factory=list)
    source_values: list = field(default_factory=list)
    _graph: Any = field(default=None, repr=False)

    @property
    def backward_order(self) -> list[int]:
        """Node ids in the order the engine ran them."""
        return [e.node for e in self.backward]

    @property
    def graph(self) -> "networkx.MultiDiGraph":  # noqa: F821
        """The unrolled graph: gradient edges keyed by slot, input edges keyed ``("input", pos)``."""
        if self._graph is None:
            import networkx as nx  # imported on first use: it costs a fifth of a second at start-up

            g = nx.MultiDiGraph()
            for n in self.nodes:
                g.add_node(n.id, name=n.name, kind=n.kind, node=n)
            for s, d, slot in self.edges:
                g.add_edge(s, d, key=slot, slot=slot, flow="grad")
            for s, d, pos in self.input_edges:
                g.add_edge(s, d, key=("input", pos), slot=pos, flow="input")
            self._graph = g
        return self._graph

    def node(self, node_id: int) -> GraphNode:
        """Return the node with id `node_id`."""
        return self.nodes[node_id]

    def find(self, name: str) -> list[GraphNode]:
        """Nodes whose name, leaf name or module contains `name` (case-insensitive)."""
        q = name.lower()
        return [n for n in self.nodes
                if q in n.name.lower() or (n.leaf and q in n.leaf.lower()) or (n.module and q in n.module.lower())]

    def grad_of(self, leaf: str) -> np.ndarray | None:
        """The final ``.grad`` of a named leaf as numpy, or None."""
        info = self.leaves[leaf]
        return None if info.grad is None else info.grad.value

    def save(self, path, checks=None):
        """Save to a ``.gradviz`` file atomically (see `gradviz.core.storage.save_recording`)."""
        return _io("save")(self, path, checks=checks)

    def export(self, path, **options):
        """Export to a file; the format comes from the extension (see `gradviz.core.exporters.export`)."""
        return _io("export")(self, path, **options)

    def _repr_svg_(self) -> str:
        """The graph as SVG text, so Jupyter shows a recording as its drawing."""
        return _io("repr_svg")(self)

    def summary(self) -> str:
        """One line: what was recorded and how big it is."""
        def count(n: int, one: str, many: str) -> str:
            return f"{n} {one if n == 1 else many}"

        return (f"{self.target}: {count(len(self.forward), 'forward op', 'forward ops')}, "
                f"{count(len(self.nodes), 'node', 'nodes')}, {count(len(self.edges), 'edge', 'edges')}, "
                f"{count(len(self.backward), 'backward step', 'backward steps')}, "
                f"{count(len(self.leaves), 'leaf', 'leaves')}")
