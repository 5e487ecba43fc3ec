"""Every step of a timeline explained in one line of plain words, in the current language.

The step caption, the event list, `gradviz steps` and lessons all show these lines::

    forward 2/3: linear (layer · use 2/2) computes a 4×3 tensor
    forward 4/6: tanh 2 of 2 in RepeatedLayerNet computes [-0.452, -0.00268, -0.451]
    backward 4/10: MmBackward0 (layer · use 2/3) sends 0.7486 to layer.weight, which waits for 1 more
    backward 10/10: AccumulateGrad writes layer.weight.grad: a 4×3 tensor, the sum of its 3 contributions

What a receiver still waits for is the engine's dependency count after the step: its gradient edges
whose sender has not run yet (read from the recording's backward order, no timeline needed).
"""
from __future__ import annotations

import weakref

from .i18n import language, tr
from .labels import node_title, place_of, where
from .recording import Recording
from .tensors import TensorData
from .valuetext import SMALL, format_shape, format_tensor

__all__ = ["explain", "explain_step", "value_text", "leaf_buffer_text", "summary_text"]

_CACHE: "weakref.WeakKeyDictionary[Recording, tuple]" = weakref.WeakKeyDictionary()


def value_text(t: TensorData | None) -> str:
    """A value as a sentence says it: ``0.7486``, ``[1, 2, 3]``, ``a 4×3 tensor``, ``nothing (None)``."""
    if t is None:
        return tr("nothing (None)")
    if t.value is not None and t.numel <= SMALL:
        return format_tensor(t)
    return tr("a {shape} tensor", shape=format_shape(t.shape))


def _tables(rec: Recording) -> tuple[dict, dict]:
    """(first backward event of each node, senders of each node), computed once per recording."""
    got = _CACHE.get(rec)
    if got is None:
        first: dict[int, int] = {}
        for ev in rec.backward:
            first.setdefault(ev.node, ev.index)
        senders: dict[int, list[int]] = {}
        for s, d, _slot in rec.edges:
            senders.setdefault(d, []).append(s)
        got = _CACHE[rec] = (first, senders)
    return got


def _waits_after(rec: Recording, node: int, event: int) -> int:
    """Gradients `node` still waits for after backward event `event`: edges whose sender runs later."""
    first, senders = _tables(rec)
    return sum(1 for s in senders.get(node, ()) if first.get(s, 1 << 60) > event)


def _name(rec: Recording, nid: int) -> str:
    """A node as a sentence names it: a leaf by its name, an op by its name and id."""
    node = rec.nodes[nid]
    if node.kind in ("leaf", "input") and node.leaf:
        return node.leaf
    return tr("{name} (node {id})", name=node_title(node), id=nid)


def _who(rec: Recording, nid: int) -> str:
    """A node with where it ran: ``MmBackward0 (layer · use 2/3)``."""
    node = rec.nodes[nid]
    place = where(rec, node)
    return f"{node_title(node)} ({place})" if place else node_title(node)


def leaf_buffer_text(arrived: int, total: int, buffer: TensorData | None) -> tuple[str, str]:
    """The two label lines of a leaf whose AccumulateGrad has not run: the buffer, and how many arrived."""
    return (tr("buffer {value}", value=format_tensor(buffer)),
            tr("{arrived} of {total} arrived", arrived=arrived, total=total))


def explain_step(rec: Recording, step) -> str:
    """What `step` (a `gradviz.core.timeline.Step`) does, in one line, without its counter."""
    if step.phase == "start":
        return tr("nothing computed yet: step forward to run the model")
    if step.phase == "forward":
        ev = rec.forward[step.event]
        out = ev.outputs[0] if ev.outputs else None
        place, spot = "", None
        if ev.node is not None:
            place, spot = where(rec, ev.node), place_of(rec, ev.node)
        elif ev.module:
            place = ev.module
        # "tanh 2 of 2 in Net" names the op already
        who = place if spot is not None and spot.of > 1 else (f"{ev.op} ({place})" if place else ev.op)
        return tr("{who} computes {value}", who=who, value=value_text(out))
    ev = rec.backward[step.event]
    node = rec.nodes[step.node]
    if node.kind == "leaf":
        info = rec.leaves.get(node.leaf) if node.leaf else None
        name = node.leaf or node.name
        grad = value_text(info.grad) if info is not None else value_text(None)
        n = len(info.contributions) if info is not None else 0
        if n > 1:
            return tr("AccumulateGrad writes {leaf}.grad: {grad}, the sum of its {n} contributions",
                      leaf=name, grad=grad, n=n)
        return tr("AccumulateGrad writes {leaf}.grad: {grad}", leaf=name, grad=grad)
    parts = []
    for dst, slot in sorted(((d, slot) for s, d, slot in rec.edges if s == step.node), key=lambda e: e[1]):
        g = ev.grad_inputs[slot] if slot < len(ev.grad_inputs) else None
        waits = _waits_after(rec, dst, step.event)
        if waits:
            parts.append(tr("{value} to {receiver}, which waits for {n} more",
                            value=value_text(g), receiver=_name(rec, dst), n=waits))
        else:
            parts.append(tr("{value} to {receiver}, which is now ready", value=value_text(g),
                            receiver=_name(rec, dst)))
    if not parts:
        return tr("{who} runs; no gradient goes further", who=_who(rec, step.node))
    return tr("{who} sends {what}", who=_who(rec, step.node), what=tr("; ").join(parts))


def explain(rec: Recording, step) -> str:
    """`step` in one line with its counter: ``backward 4/10: MmBackward0 (…) sends 0.7486 to …``."""
    text = explain_step(rec, step)
    if step.phase == "start":
        return tr("start: {text}", text=text)
    if step.phase == "forward":
        return tr("forward {i}/{n}: {text}", i=step.event + 1, n=len(rec.forward), text=text)
    return tr("backward {i}/{n}: {text}", i=step.event + 1, n=len(rec.backward), text=text)


def summary_text(rec: Recording) -> str:
    """`Recording.summary` in the current language."""
    if language() == "en":
        return rec.summary()
    return tr("{target}: {f} forward ops, {n} nodes, {e} edges, {b} backward steps, {l} leaves",
              target=rec.target, f=len(rec.forward), n=len(rec.nodes), e=len(rec.edges), b=len(rec.backward),
              l=len(rec.leaves))
