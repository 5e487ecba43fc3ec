"""Where each op ran, in words that read right: the module line of a node's label.

A module that runs one op per call (``nn.Linear``, ``nn.Tanh``) *is* that op: its node reads ``layer``,
and ``layer · use 2/3`` only where the module ran more than once in the forward pass. An op run directly
in a larger module's forward (``torch.tanh`` inside ``RepeatedLayerNet.forward``) reads ``in
RepeatedLayerNet`` with its place in that forward: ``tanh 2 of 2`` when the same op ran several times
in that call, else ``after layer · use 1`` (the module call that ran just before it), so two calls of
one function in one forward can be told apart. Ops outside every module get their place among
themselves (``tanh 2 of 3``).

Everything here is read from the recording's forward events (each knows its innermost module and
which call of it); no model code runs.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

from .i18n import tr
from .recording import GraphNode, Recording

__all__ = ["Place", "places", "place_of", "where", "node_title", "label_lines"]


@dataclass(frozen=True)
class Place:
    """Where one forward op ran.

    Attributes
    ----------
    module : str or None
        The innermost module that ran it.
    use, uses : int or None
        Which call of that module, and how many calls it had in the forward pass.
    direct : bool
        The op ran directly in a larger module's forward (not as the whole of a one-op module).
    op : str
        The op's name.
    nth, of : int
        Its number among the ops of the same name in the same module call (or outside every module).
    after : (str, int or None) or None
        The module call that ran just before it inside that forward (``("layer", 1)``; the use is None
        for a module called once), when it is the only op of its name there.
    """

    module: str | None
    use: int | None
    uses: int | None
    direct: bool
    op: str
    nth: int
    of: int
    after: tuple | None = None

    def module_text(self) -> str:
        """``layer``, ``layer · use 2/3``, or ``""`` outside every module."""
        if not self.module:
            return ""
        if self.uses and self.uses > 1 and self.use:
            return tr("{module} · use {use}/{uses}", module=self.module, use=self.use, uses=self.uses)
        return self.module

    def spot(self) -> str:
        """The op's place in its forward: ``tanh 2 of 2``, ``after layer · use 1``, or ``""``."""
        if self.of > 1:
            return tr("{op} {nth} of {of}", op=self.op, nth=self.nth, of=self.of)
        if self.direct and self.after:
            module, use = self.after
            call = tr("{module} · use {use}", module=module, use=use) if use else module
            return tr("after {call}", call=call)
        return ""

    def text(self) -> str:
        """The whole place in one line (what a label's module line says before it is cut to a box)."""
        if not self.module:
            return self.spot()
        if not self.direct:
            return self.module_text()
        spot = self.spot()
        if spot:
            return tr("{spot} in {module}", spot=spot, module=self.module_text())
        return tr("in {module}", module=self.module_text())


_CACHE: "weakref.WeakKeyDictionary[Recording, list]" = weakref.WeakKeyDictionary()


def places(rec: Recording) -> list[Place]:
    """The `Place` of every forward event of `rec`, in event order (computed once per recording)."""
    cached = _CACHE.get(rec)
    if cached is not None:
        return cached
    events = rec.forward
    # per module: its calls; per call: its direct ops in order
    calls_of: dict[str, int] = {}
    ops_in_call: dict[tuple, list[int]] = {}
    for ev in events:
        key = (ev.module, ev.use) if ev.module else (None, None)
        ops_in_call.setdefault(key, []).append(ev.index)
        if ev.module and ev.use:
            calls_of[ev.module] = max(calls_of.get(ev.module, 0), ev.use)
    parents = (rec.meta or {}).get("module_parents")
    if isinstance(parents, dict):
        # a module that called other modules runs its own ops directly in its forward
        multi = {p for p in parents.values() if p}
    else:  # a recording made before parents were kept: a module with one op per call is that op
        parents = {}
        multi = {key[0] for key, ids in ops_in_call.items() if key[0] and len(ids) > 1}

    def inside(name: str | None, outer: str) -> bool:
        # whether module `name` ran inside `outer`'s forward (through its callers)
        seen = 0
        while name is not None and seen < 64:
            if name == outer:
                return True
            name, seen = parents.get(name), seen + 1
        return False

    # each op's rank among the ops of its kind in its call, and how many there are: one pass per call
    # (ops outside every module form one long call: 4,000 tanh of a reused layer, not 4,000^2 steps)
    nth_of: dict[int, int] = {}
    count: dict[tuple, int] = {}
    for key, ids in ops_in_call.items():
        for i in ids:
            k = (key, events[i].op)
            count[k] = nth_of[i] = count.get(k, 0) + 1
    out: list[Place] = []
    for ev in events:
        key = (ev.module, ev.use) if ev.module else (None, None)
        nth, of = nth_of[ev.index], count[(key, ev.op)]
        direct = bool(ev.module) and ev.module in multi
        after = None
        if direct and of == 1 and ev.index > 0:
            prev = events[ev.index - 1]
            if prev.module and (prev.module, prev.use) != key and (not parents or inside(prev.module, ev.module)):
                n = calls_of.get(prev.module, 1)
                after = (prev.module, prev.use if n > 1 else None)
        uses = calls_of.get(ev.module) if ev.module else None
        out.append(Place(ev.module, ev.use if ev.module else None, uses, direct, ev.op, nth, of, after))
    _CACHE[rec] = out
    return out


def place_of(rec: Recording, node: GraphNode | int) -> Place | None:
    """The place of the forward op that made `node`, or None (leaves, inputs, nodes with no op)."""
    if isinstance(node, int):
        node = rec.nodes[node]
    if node.kind in ("leaf", "input") or node.forward_event is None or node.forward_event >= len(rec.forward):
        return None
    return places(rec)[node.forward_event]


def where(rec: Recording, node: GraphNode | int) -> str:
    """`node`'s place in one line (``layer · use 2/3``, ``tanh 2 of 2 in RepeatedLayerNet``), or ``""``."""
    place = place_of(rec, node)
    return place.text() if place is not None else ""


def node_title(node: GraphNode) -> str:
    """A node's name as its label's first line: the leaf's name, a custom Function with its backend."""
    if node.kind in ("leaf", "input") and node.leaf:
        return node.leaf
    if node.kind == "custom" and node.backend:
        return f"{node.name} [{node.backend}]"
    return node.name


def label_lines(rec: Recording, node: GraphNode | int) -> list[str]:
    """A node's label before values: its name and, for an op, where it ran (one line)."""
    if isinstance(node, int):
        node = rec.nodes[node]
    lines = [node_title(node)]
    text = where(rec, node)
    if text:
        lines.append(text)
    return lines
