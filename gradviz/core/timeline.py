"""One timeline of forward then backward steps, with the state of every node at each step.

Step 0 is the start (nothing computed); steps 1..F are the forward ops in order; steps F+1..F+B are
the backward nodes in the order the engine ran them. `Timeline.state_at(i)` is the state after step i.

Memory and time stay linear in the graph: what every step changes is kept once, as flat numpy arrays
(the nodes each forward op makes, the nodes each backward step runs and the receivers of their
gradients), and full copies of the state are kept at no more than `MAX_CHECKPOINTS` + 1 steps (every
``max(CHECKPOINT_EVERY, steps / MAX_CHECKPOINTS)`` steps), so the copies total at most a fixed multiple
of one state. Random access copies the nearest checkpoint and replays the steps after it in a few
vectorised numpy operations; `Stepper` moves one step at a time in O(changed nodes) and emits
`step_changed` to its views.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .events import Signal
from .explain import explain
from .sandbox import gc_paused
from .recording import Recording
from .tensors import TensorData

__all__ = ["Step", "StepState", "Timeline", "Stepper", "NOT_REACHED", "COMPUTED", "BACKWARD_DONE",
           "CHECKPOINT_EVERY", "MAX_CHECKPOINTS"]

NOT_REACHED, COMPUTED, BACKWARD_DONE = 0, 1, 2
CHECKPOINT_EVERY = 64  # the closest two checkpoints ever are
MAX_CHECKPOINTS = 32  # full copies of the state kept after the start's


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


class _Steps(Sequence):
    """The steps of a timeline as a sequence, each `Step` made when asked for (a list of a few
    hundred thousand frozen dataclasses costs seconds to build)."""

    def __init__(self, fw_event, fw_node, bw_event, bw_node):
        self._fw_event, self._fw_node, self._bw_event, self._bw_node = fw_event, fw_node, bw_event, bw_node
        self._first_backward = 1 + len(fw_event)
        self._len = self._first_backward + len(bw_event)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._len))]
        i = int(i)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"step {i} is outside 0..{self._len - 1}")
        if i == 0:
            return Step(0, "start", -1, None)
        if i < self._first_backward:
            node = int(self._fw_node[i - 1])
            return Step(i, "forward", int(self._fw_event[i - 1]), None if node < 0 else node)
        q = i - self._first_backward
        return Step(i, "backward", int(self._bw_event[q]), int(self._bw_node[q]))


def _first_steps(nodes: np.ndarray, offset: int, n: int) -> np.ndarray:
    """Per node id, `offset` plus the first position of it in `nodes` (-1 where absent)."""
    out = np.full(n, -1, dtype=np.int64)
    valid = np.flatnonzero(nodes >= 0)
    ids, first = np.unique(nodes[valid], return_index=True)
    out[ids] = valid[first] + offset
    return out


class Timeline:
    """The steps of a recording and fast access to the state at any of them.

    Parameters
    ----------
    rec : Recording

    Attributes
    ----------
    steps : sequence of Step
    first_backward : int
        The first backward step (``len(steps)`` when backward never ran).
    dependencies : numpy.ndarray of int32
        Per node, the gradients it waits for before backward starts (its in-degree).
    interval : int
        Steps between two stored checkpoints.
    """

    def __init__(self, rec: Recording):
        # (hundreds of thousands of small objects that live as long as the timeline: a collection
        # triggered by them would traverse the whole recording and free nothing)
        with gc_paused():
            self._build(rec)

    def _build(self, rec: Recording) -> None:
        self.rec = rec
        n = len(rec.nodes)
        n_forward, n_backward = len(rec.forward), len(rec.backward)
        self.first_backward = 1 + n_forward
        fw_node = np.fromiter((-1 if ev.node is None else ev.node for ev in rec.forward), np.int64, n_forward)
        self._ran = np.fromiter((ev.node for ev in rec.backward), np.int64, n_backward)
        self.steps = _Steps(np.fromiter((ev.index for ev in rec.forward), np.int64, n_forward), fw_node,
                            np.fromiter((ev.index for ev in rec.backward), np.int64, n_backward), self._ran)
        steps = self.steps

        # edges as arrays, grouped by sender in the recording's order (a CSR table): the receivers
        # and slots of node v are out_dst[out_ptr[v]:out_ptr[v + 1]]
        e = np.asarray(rec.edges, dtype=np.int64).reshape(-1, 3)
        by_src = np.argsort(e[:, 0], kind="stable")
        self._out_dst = e[by_src, 1]
        self._out_slot = e[by_src, 2]
        self._out_ptr = np.concatenate([[0], np.cumsum(np.bincount(e[:, 0], minlength=n))])
        self.dependencies = np.bincount(e[:, 1], minlength=n).astype(np.int32)

        # forward: the nodes each forward step brings into being (its op's own node and nodes made
        # inside it), grouped by step: those of steps a+1..b are made_ids[made_ptr[a]:made_ptr[b]]
        position = {ev.index: p for p, ev in enumerate(rec.forward)}
        base = np.full(n, NOT_REACHED, dtype=np.int8)
        made_node, made_pos = [], []
        for node in rec.nodes:
            p = None if node.kind in ("leaf", "input") else position.get(node.forward_event)
            if p is None:
                base[node.id] = COMPUTED
            else:
                made_node.append(node.id)
                made_pos.append(p)
        made_node = np.asarray(made_node, dtype=np.int64)
        made_pos = np.asarray(made_pos, dtype=np.int64)
        order = np.argsort(made_pos, kind="stable")
        self._made_ids = made_node[order]
        self._made_ptr = np.concatenate([[0], np.cumsum(np.bincount(made_pos, minlength=n_forward))])

        # backward: the node each backward step runs, and the receivers of the gradients it sends,
        # grouped by step: those of backward steps a+1..b are sent_to[sent_ptr[a]:sent_ptr[b]]
        counts = self._out_ptr[self._ran + 1] - self._out_ptr[self._ran]
        self._sent_ptr = np.concatenate([[0], np.cumsum(counts)])
        if len(self._ran):
            # out_dst gathered sender by sender: the ranges [out_ptr[v], out_ptr[v+1]) concatenated
            starts = np.repeat(self._out_ptr[self._ran] - self._sent_ptr[:-1], counts)
            self._sent_to = self._out_dst[starts + np.arange(self._sent_ptr[-1])]
        else:
            self._sent_to = np.zeros(0, dtype=np.int64)

        # checkpoints: full copies of (status, pending) after steps 0, K, 2K, ...
        self.interval = max(CHECKPOINT_EVERY, -(-len(steps) // MAX_CHECKPOINTS))
        self._checkpoints: list[tuple[np.ndarray, np.ndarray]] = []
        status, pending = base, self.dependencies.copy()
        for k in range(0, len(steps), self.interval):
            if k:
                self._replay(k - self.interval, k, status, pending)
            self._checkpoints.append((status.copy(), pending.copy()))

        self._leaf_events = {name: [c.backward_event for c in info.contributions]
                             for name, info in rec.leaves.items()}
        # the first step at which each node is computed (forward) or runs (backward), -1 for none
        self._first_step = {"forward": _first_steps(fw_node, 1, n),
                            "backward": _first_steps(self._ran, self.first_backward, n)}

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def checkpoint_bytes(self) -> int:
        """Bytes held by the stored copies of the state."""
        return sum(s.nbytes + p.nbytes for s, p in self._checkpoints)

    @property
    def nbytes(self) -> int:
        """Bytes held by the step tables and the checkpoints (the Step objects not counted)."""
        tables = (self._out_dst, self._out_slot, self._out_ptr, self.dependencies, self._made_ids,
                  self._made_ptr, self._ran, self._sent_ptr, self._sent_to)
        return self.checkpoint_bytes + sum(a.nbytes for a in tables)

    def _replay(self, a: int, b: int, status: np.ndarray, pending: np.ndarray) -> None:
        """Apply steps a+1..b to (status, pending) in place.

        Forward steps only raise nodes to COMPUTED and come before every backward step, so a run of
        steps is applied as one assignment per phase; each gradient sent lowers its receiver's
        waiting count by one (a receiver reached twice waits for two fewer).
        """
        fb = self.first_backward
        lo, hi = max(a + 1, 1), min(b, fb - 1)  # forward steps lo..hi are forward positions lo-1..hi-1
        if hi >= lo:
            status[self._made_ids[self._made_ptr[lo - 1]:self._made_ptr[hi]]] = COMPUTED
        lo, hi = max(a + 1, fb) - fb, b - fb + 1  # backward positions lo..hi-1
        if hi > lo:
            status[self._ran[lo:hi]] = BACKWARD_DONE
            sent = self._sent_to[self._sent_ptr[lo]:self._sent_ptr[hi]]
            if len(sent) * 8 > len(pending):
                pending -= np.bincount(sent, minlength=len(pending)).astype(pending.dtype)
            else:
                np.subtract.at(pending, sent, 1)

    def _apply(self, step: Step, status: np.ndarray, pending: np.ndarray) -> np.ndarray:
        """Apply one step's change in place; return the ids of the nodes it changed."""
        i = step.index
        self._replay(i - 1, i, status, pending)
        if step.phase == "forward":
            p = i - 1
            return self._made_ids[self._made_ptr[p]:self._made_ptr[p + 1]]
        if step.phase == "backward":
            q = i - self.first_backward
            return np.concatenate([[step.node], self._sent_to[self._sent_ptr[q]:self._sent_ptr[q + 1]]])
        return np.zeros(0, dtype=np.int64)

    def state_at(self, i: int) -> StepState:
        """The state after step `i` (negative counts from the end)."""
        if i < 0:
            i += len(self.steps)
        if not 0 <= i < len(self.steps):
            raise IndexError(f"step {i} is outside 0..{len(self.steps) - 1}")
        k = i // self.interval
        status, pending = (a.copy() for a in self._checkpoints[k])
        self._replay(k * self.interval, i, status, pending)
        return self._state(i, status, pending)

    def _state(self, i: int, status: np.ndarray, pending: np.ndarray) -> StepState:
        step = self.steps[i]
        flowing = []
        if step.phase == "backward":
            ev = self.rec.backward[step.event]
            lo, hi = self._out_ptr[step.node], self._out_ptr[step.node + 1]
            for dst, slot in zip(self._out_dst[lo:hi].tolist(), self._out_slot[lo:hi].tolist()):
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
            acc_step = self.step_of(info.node, "backward")
            accumulated = acc_step is not None and acc_step <= step.index
        grad = info.grad if accumulated else info.initial_grad
        return LeafState(name, arrived, len(events), buffer, grad, accumulated)

    def step_of(self, node: int, phase: str = "backward") -> int | None:
        """The step at which `node` runs in `phase` (``"forward"`` or ``"backward"``), if it does."""
        hit = int(self._first_step[phase][node])
        hit = None if hit < 0 else hit
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
            changed = tl._apply(tl.steps[i], status, pending).astype(np.int64)
            new = tl._state(i, status, pending)
            extra = [c for c in (old.current, new.current) if c is not None]
            if extra:
                changed = np.union1d(changed, extra)  # (a step changes a few nodes: small sets)
        else:
            new = tl.state_at(i)
            # a jump: a mask over every node, not a sort of the (up to all) changed ids
            diff = (new.status != old.status) | (new.pending != old.pending)
            for c in (old.current, new.current):
                if c is not None:
                    diff[c] = True
            changed = np.flatnonzero(diff)
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
