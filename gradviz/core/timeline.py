"""One timeline of forward then backward steps, with the state of every node at each step.

Step 0 is the start (nothing computed); steps 1..F are the forward ops in order; steps F+1..F+B are
the backward nodes in the order the engine ran them. `Timeline.state_at(i)` is the state after step i.
Random access replays at most `CHECKPOINT_EVERY` step deltas from the nearest stored checkpoint;
`Stepper` moves one step at a time in O(changed nodes) and emits `step_changed` to its views.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from .events import Signal
from .recording import Recording
from .tensors import TensorData

__all__ = ["Step", "StepState", "Timeline", "Stepper", "NOT_REACHED", "COMPUTED", "BACKWARD_DONE",
           "CHECKPOINT_EVERY"]

NOT_REACHED, COMPUTED, BACKWARD_DONE = 0, 1, 2
CHECKPOINT_EVERY = 64


@dataclass(frozen=True)
class Step:
    """One step of the timeline.

    Attributes
    ----------
    index : int
    phase : str
        ``"start"``, ``"forward"`` or ``"backward"``.
    event : int
        Index into the recording's forward or backward events (-1 at the start).
    node : int or None
        The node this step computes (forward) or runs (backward).
    """

    index: int
    phase: str
    event: int
    node: int | None

    def describe(self, rec: Recording) -> str:
        """The step in one line of plain words, in the current language (`gradviz.core.explain`)."""
        from .explain import explain

        return explain(rec, self)


@dataclass
class LeafState:
    """A leaf's gradient at one step: contributions arrived so far and its ``.grad``."""

    name: str
    arrived: int
    total: int
    buffer: TensorData | None
    grad: TensorData | None
    accumulated: bool


@dataclass
class StepState:
    """Everything a view shows at one step.

    Attributes
    ----------
    step : Step
    status : numpy.ndarray of int8, shape (N,)
        Per node: 0 not reached, 1 computed in forward, 2 ran in backward.
    pending : numpy.ndarray of int32, shape (N,)
        Per node: gradients it still waits for (the engine's dependency count).
    flowing : list of (int, int, int, TensorData or None)
        Gradient edges carrying a gradient at this step: ``(sender, receiver, slot, gradient)``.
    """

    step: Step
    status: np.ndarray
    pending: np.ndarray
    flowing: list = field(default_factory=list)
    _timeline: "Timeline | None" = field(default=None, repr=False)

    @property
    def current(self) -> int | None:
        """The node this step computes or runs."""
        return self.step.node

    @property
    def phase(self) -> str:
        return self.step.phase

    def computed(self) -> np.ndarray:
        """Ids of nodes that have a value (computed in forward, leaves and inputs included)."""
        return np.flatnonzero(self.status >= COMPUTED)

    def ran_backward(self) -> np.ndarray:
        """Ids of nodes that have run in backward."""
        return np.flatnonzero(self.status == BACKWARD_DONE)

    def leaf(self, name: str) -> LeafState:
        """The state of leaf `name`'s gradient at this step."""
        return self._timeline.leaf_state(name, self.step)

    def leaves(self) -> dict[str, LeafState]:
        """The state of every leaf's gradient at this step."""
        return {name: self.leaf(name) for name in self._timeline.rec.leaves}


class Timeline:
    """The steps of a recording and fast access to the state at any of them.

    Parameters
    ----------
    rec : Recording
    """

    def __init__(self, rec: Recording):
        self.rec = rec
        n = len(rec.nodes)
        steps = [Step(0, "start", -1, None)]
        for ev in rec.forward:
            steps.append(Step(len(steps), "forward", ev.index, ev.node))
        self.first_backward = len(steps)
        for ev in rec.backward:
            steps.append(Step(len(steps), "backward", ev.index, ev.node))
        self.steps = steps
        self._out_edges: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        indeg = np.zeros(n, dtype=np.int32)
        for s, d, slot in rec.edges:
            self._out_edges[s].append((d, slot))
            indeg[d] += 1
        self.dependencies = indeg
        # nodes each forward op brings into being (its own node and nodes made inside it)
        made_by: dict[int, list[int]] = {}
        base = np.full(n, NOT_REACHED, dtype=np.int8)
        for node in rec.nodes:
            if node.kind in ("leaf", "input") or node.forward_event is None:
                base[node.id] = COMPUTED
            else:
                made_by.setdefault(node.forward_event, []).append(node.id)
        self._made_by = made_by
        # checkpoints: (status, pending) after every CHECKPOINT_EVERY-th step
        self._checkpoints: list[tuple[np.ndarray, np.ndarray]] = []
        status, pending = base.copy(), indeg.copy()
        for i, step in enumerate(steps):
            self._apply(step, status, pending)
            if i % CHECKPOINT_EVERY == 0:
                self._checkpoints.append((status.copy(), pending.copy()))
        self._leaf_events = {name: [c.backward_event for c in info.contributions]
                             for name, info in rec.leaves.items()}
        self._node_step = {}
        for step in steps:
            if step.node is not None:
                self._node_step.setdefault((step.phase, step.node), step.index)

    def __len__(self) -> int:
        return len(self.steps)

    def _apply(self, step: Step, status: np.ndarray, pending: np.ndarray) -> list[int]:
        """Apply one step's change in place; return the nodes it changed."""
        if step.phase == "forward":
            ids = self._made_by.get(step.event, [])
            status[ids] = COMPUTED
            return list(ids)
        if step.phase == "backward":
            node = step.node
            status[node] = BACKWARD_DONE
            changed = [node]
            # the node sends one gradient along each edge: each receiver waits for one fewer
            for dst, _ in self._out_edges[node]:
                pending[dst] -= 1
                changed.append(dst)
            return changed
        return []

    def state_at(self, i: int) -> StepState:
        """The state after step `i` (negative counts from the end)."""
        if i < 0:
            i += len(self.steps)
        if not 0 <= i < len(self.steps):
            raise IndexError(f"step {i} is outside 0..{len(self.steps) - 1}")
        k = i // CHECKPOINT_EVERY
        status, pending = (a.copy() for a in self._checkpoints[k])
        for j in range(k * CHECKPOINT_EVERY + 1, i + 1):
            self._apply(self.steps[j], status, pending)
        return self._state(i, status, pending)

    def _state(self, i: int, status: np.ndarray, pending: np.ndarray) -> StepState:
        step = self.steps[i]
        flowing = []
        if step.phase == "backward":
            ev = self.rec.backward[step.event]
            for dst, slot in self._out_edges[step.node]:
                g = ev.grad_inputs[slot] if slot < len(ev.grad_inputs) else None
                flowing.append((step.node, dst, slot, g))
        return StepState(step, status, pending, flowing, self)

    def leaf_state(self, name: str, step: Step) -> LeafState:
        """How far leaf `name`'s gradient has built up by `step`."""
        info = self.rec.leaves[name]
        events = self._leaf_events[name]
        done = step.event + 1 if step.phase == "backward" else 0
        arrived = bisect_right(events, done - 1) if done else 0
        buffer = info.contributions[arrived - 1].running_sum if arrived else None
        accumulated = False
        if info.node is not None and step.phase == "backward":
            acc_step = self._node_step.get(("backward", info.node))
            accumulated = acc_step is not None and acc_step <= step.index
        grad = info.grad if accumulated else info.initial_grad
        return LeafState(name, arrived, len(events), buffer, grad, accumulated)

    def step_of(self, node: int, phase: str = "backward") -> int | None:
        """The step at which `node` runs in `phase` (``"forward"`` or ``"backward"``), if it does."""
        hit = self._node_step.get((phase, node))
        if hit is None and phase == "forward":
            ev = self.rec.nodes[node].forward_event
            if ev is not None:
                return 1 + ev
        return hit

    def phase_start(self, phase: str) -> int:
        """The first step of ``"forward"``, ``"backward"`` or ``"end"`` (the last step)."""
        if phase == "forward":
            return min(1, len(self.steps) - 1)
        if phase == "backward":
            return min(self.first_backward, len(self.steps) - 1)
        if phase == "end":
            return len(self.steps) - 1
        raise ValueError(f"unknown phase {phase!r}: use forward, backward or end")


class Stepper:
    """The current step of a timeline, moved by the user and watched by views.

    Signals
    -------
    step_changed(state: StepState, changed: numpy.ndarray)
        After every move: the new state and the ids of nodes whose state changed.
    """

    def __init__(self, timeline: Timeline, step: int = 0):
        self.timeline = timeline
        self.step_changed = Signal()
        self._state = timeline.state_at(step)

    @property
    def index(self) -> int:
        return self._state.step.index

    @property
    def state(self) -> StepState:
        return self._state

    def __len__(self) -> int:
        return len(self.timeline)

    def set_step(self, i: int) -> StepState:
        """Move to step `i` (clamped to the timeline); adjacent moves cost only the nodes they change."""
        tl = self.timeline
        i = max(0, min(int(i), len(tl) - 1))
        old = self._state
        cur = old.step.index
        if i == cur:
            return old
        if i == cur + 1:
            status, pending = old.status.copy(), old.pending.copy()
            changed = np.asarray(tl._apply(tl.steps[i], status, pending), dtype=np.int64)
            new = tl._state(i, status, pending)
        else:
            new = tl.state_at(i)
            changed = np.flatnonzero((new.status != old.status) | (new.pending != old.pending))
        if old.current is not None:
            changed = np.union1d(changed, [old.current])
        if new.current is not None:
            changed = np.union1d(changed, [new.current])
        self._state = new
        self.step_changed.emit(new, changed)
        return new

    def next(self) -> StepState:
        return self.set_step(self.index + 1)

    def prev(self) -> StepState:
        return self.set_step(self.index - 1)

    def first(self) -> StepState:
        return self.set_step(0)

    def last(self) -> StepState:
        return self.set_step(len(self.timeline) - 1)
