"""Gradient flow: how large the gradient is at every backward step, node and module use.

The norm of a node's incoming gradient is the L2 norm of all its ``grad_outputs`` taken together,
``sqrt(sum_i ||g_i||^2)`` (a node with one output: just ``||g||``). A recorded gradient whose values
were dropped for the memory budget contributes the ``norm`` of its statistics; a node whose gradients
were not recorded at all has NaN. For a module used several times (an unrolled RNN cell, a repeated
layer), the gradient that reaches use ``u`` is the incoming gradient of the first node of that use to
run in backward.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .recording import Recording
from .tensors import TensorData

__all__ = ["FlowStep", "UseFlow", "GradientFlow", "gradient_flow", "tensor_norm"]


def tensor_norm(t: TensorData | None) -> float:
    """The L2 norm of a tensor snapshot (from its values, or its statistics when values were dropped)."""
    if t is None:
        return float("nan")
    if t.value is not None:
        v = np.asarray(t.value)
        if v.dtype.kind not in "fciub":
            return float("nan")
        return float(np.linalg.norm(v.astype(np.float64).reshape(-1)))
    if t.stats:
        return float(t.stats.get("norm", float("nan")))
    return float("nan")


def _incoming_norm(grads: list | None) -> float:
    """sqrt of the summed squared norms of the gradients that arrived (None ones carry nothing)."""
    norms = [tensor_norm(g) for g in (grads or []) if g is not None]
    if not norms:
        return float("nan")
    return float(math.sqrt(sum(n * n for n in norms)))


@dataclass(frozen=True)
class FlowStep:
    """The gradient arriving at one backward step.

    Attributes
    ----------
    index : int
        The backward step (0 is the loss node), the index into ``Recording.backward``.
    node : int
        The node that ran at this step.
    name : str
        The node's name (``"MmBackward0"``).
    module : str or None
    use : int or None
        The module and which use of it the node belongs to.
    norm : float
        L2 norm of the node's incoming gradient (NaN when not recorded).
    """

    index: int
    node: int
    name: str
    module: str | None
    use: int | None
    norm: float


@dataclass(frozen=True)
class UseFlow:
    """The gradient reaching one use of a reused module (its first node to run in backward)."""

    module: str
    use: int
    node: int
    norm: float


@dataclass
class GradientFlow:
    """Gradient norms of one recording, per backward step, per node, per module use and per leaf.

    Attributes
    ----------
    steps : list of FlowStep
        In backward order.
    uses : list of UseFlow
        Sorted by module, then use; only modules used more than once.
    leaves : dict of str to float or None
        Each leaf's final ``.grad`` norm (None: the leaf got no gradient).
    """

    steps: list[FlowStep] = field(default_factory=list)
    uses: list[UseFlow] = field(default_factory=list)
    leaves: dict[str, float | None] = field(default_factory=dict)

    @property
    def nodes(self) -> np.ndarray:
        """Node ids in backward order (int64)."""
        return np.array([s.node for s in self.steps], dtype=np.int64)

    @property
    def norms(self) -> np.ndarray:
        """Incoming gradient norm per backward step (float64)."""
        return np.array([s.norm for s in self.steps], dtype=np.float64)

    @property
    def use_nodes(self) -> np.ndarray:
        return np.array([u.node for u in self.uses], dtype=np.int64)

    @property
    def use_norms(self) -> np.ndarray:
        return np.array([u.norm for u in self.uses], dtype=np.float64)

    def by_node(self) -> dict[int, float]:
        """Incoming gradient norm per node id (every node runs at most once in backward)."""
        return {s.node: s.norm for s in self.steps}

    def to_json(self) -> dict:
        """JSON-ready data; NaN norms as null."""
        def num(x: float | None) -> float | None:
            return x if x is not None and math.isfinite(x) else None

        return {
            "steps": [{"index": s.index, "node": s.node, "name": s.name, "module": s.module, "use": s.use,
                       "norm": num(s.norm)} for s in self.steps],
            "uses": [{"module": u.module, "use": u.use, "node": u.node, "norm": num(u.norm)} for u in self.uses],
            "leaves": {k: num(v) for k, v in self.leaves.items()},
        }

    def format(self) -> str:
        """A readable table: one line per backward step, then per module use and per leaf."""
        def num(x: float | None) -> str:
            if x is None:
                return "None (no gradient)"
            return "not recorded" if not math.isfinite(x) else f"{x:.6g}"

        lines = ["gradient norm per backward step (the gradient arriving at the node):",
                 f"  {'step':>4}  {'node':>5}  {'name':28s} {'module/use':18s} norm"]
        for s in self.steps:
            where = f"{s.module} use {s.use}" if s.module and s.use else ""
            lines.append(f"  {s.index:>4}  {s.node:>5}  {s.name:28s} {where:18s} {num(s.norm)}")
        if self.uses:
            lines += ["", "gradient norm per module use (reaching the use):",
                      f"  {'module':18s} {'use':>4}  {'node':>5}  norm"]
            lines += [f"  {u.module:18s} {u.use:>4}  {u.node:>5}  {num(u.norm)}" for u in self.uses]
        if self.leaves:
            lines += ["", "leaf gradient norms (.grad):"]
            width = max(len(k) for k in self.leaves)
            lines += [f"  {k:{width}s}  {num(v)}" for k, v in self.leaves.items()]
        return "\n".join(lines)


def gradient_flow(rec: Recording) -> GradientFlow:
    """Compute the gradient norms of `rec` from its recorded backward events.

    Parameters
    ----------
    rec : Recording

    Returns
    -------
    GradientFlow
    """
    steps = []
    first_of_use: dict[tuple[str, int], FlowStep] = {}
    for i, ev in enumerate(rec.backward):
        node = rec.nodes[ev.node]
        step = FlowStep(i, ev.node, node.name, node.module, node.use, _incoming_norm(ev.grad_outputs))
        steps.append(step)
        if node.module is not None and node.use is not None and (node.uses or 1) > 1:
            first_of_use.setdefault((node.module, node.use), step)
    uses = [UseFlow(m, u, first_of_use[(m, u)].node, first_of_use[(m, u)].norm) for m, u in sorted(first_of_use)]
    leaves = {name: None if info.grad is None else tensor_norm(info.grad) for name, info in rec.leaves.items()}
    return GradientFlow(steps, uses, leaves)
