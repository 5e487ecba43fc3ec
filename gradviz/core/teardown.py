"""Free a recorded autograd graph one node at a time, consumers first, so that no free recurses.

PyTorch frees a graph iteratively only while its nodes have no Python wrapper. Touching
``tensor.grad_fn`` or ``node.next_functions`` gives a node a wrapper that the node then keeps alive
(and is kept alive by) for the rest of its life, and freeing such a node frees its producers through
their wrappers, one C stack frame chain per node: a recording of ~70,000 nodes or more overflows the
8 MB main stack (a thread's stack sooner) and the process dies with SIGSEGV.

`GraphKeeper` collects a strong reference to every node the recorder touched, in an order where each
node comes before the nodes it consumed (a topological order of the backward graph). Once every other
reference is gone, dropping the kept references in that order frees exactly one node per drop: its
consumers are already gone and its producers are still held.
"""
from __future__ import annotations

import traceback
from collections import deque
from typing import Any, Callable, Iterable

__all__ = ["GraphKeeper", "clear_exception_frames"]


class GraphKeeper:
    """Holds what references a graph being recorded, then frees the graph without recursion.

    Usage: ``hold(obj, roots)`` for each object that references graph nodes (``roots()`` yields the
    nodes it references), optionally ``walked(fns, order)`` with the nodes already walked from the
    loss, and ``release()`` once every other reference to the graph is gone.
    """

    def __init__(self) -> None:
        self._held: list[tuple[Any, Callable[[], Iterable] | None]] = []
        self._walked: tuple[list, list[int]] | None = None

    def hold(self, obj: Any, roots: Callable[[], Iterable] | None = None) -> None:
        """Keep `obj` alive until `release`; ``roots()`` names the graph nodes it references."""
        self._held.append((obj, roots))

    def walked(self, fns: list, order: list[int]) -> None:
        """The nodes reachable from the loss (`fns`) and a consumers-first order of their indices."""
        self._walked = (fns, order)

    def release(self) -> None:
        """Drop everything held; the graph's nodes are freed consumers first, one per step."""
        roots: list = []
        for i in range(len(self._held)):
            if self._held[i][1] is not None:
                roots.extend(self._held[i][1]())
        order = consumers_first(roots, self._walked)
        # nothing below frees a node: every node is in `order` (no local variable may still
        # reference a held object here, or it would free the graph on return, recursively)
        self._held.clear()
        self._walked = None
        roots.clear()
        for i in range(len(order)):
            order[i] = None


def consumers_first(roots: Iterable, walked: tuple[list, list[int]] | None = None) -> list:
    """Every node reachable from `roots` (and `walked`), each before the nodes it consumed.

    Parameters
    ----------
    roots : iterable of autograd nodes
        Nodes (``grad_fn`` objects, None ignored) to start from.
    walked : (list of nodes, list of int), optional
        Nodes already known to be closed under ``next_functions`` with a consumers-first order of
        their indices; only nodes outside them are walked.
    """
    known: set = set()
    tail: list = []
    if walked is not None:
        fns, order = walked
        known = set(fns)
        tail = [fns[i] for i in order]
        if len(tail) < len(fns):  # an order that left nodes out: keep them, last
            seen = set(order)
            tail += [fn for i, fn in enumerate(fns) if i not in seen]
    ids: dict = {}
    nodes: list = []
    for r in roots:
        if r is not None and r not in known and r not in ids:
            ids[r] = len(nodes)
            nodes.append(r)
    # walk the new part of the graph: ids in discovery order, the consumer count of each node
    consumers: list[int] = [0] * len(nodes)
    out: list[list[int]] = [[] for _ in nodes]
    queue = deque(range(len(nodes)))
    while queue:
        i = queue.popleft()
        for nxt, _ in nodes[i].next_functions:
            if nxt is None or nxt in known:
                continue
            j = ids.get(nxt)
            if j is None:
                j = ids[nxt] = len(nodes)
                nodes.append(nxt)
                consumers.append(0)
                out.append([])
                queue.append(j)
            out[i].append(j)
            consumers[j] += 1
    # Kahn's algorithm: a node is ready once all its consumers are placed
    ready = deque(i for i in range(len(nodes)) if consumers[i] == 0)
    head: list = []
    while ready:
        i = ready.popleft()
        head.append(nodes[i])
        for j in out[i]:
            consumers[j] -= 1
            if consumers[j] == 0:
                ready.append(j)
    if len(head) < len(nodes):  # a cycle cannot happen in autograd; keep any node left over anyway
        placed = set(head)
        head += [n for n in nodes if n not in placed]
    ids.clear()
    nodes.clear()
    return head + tail


def clear_exception_frames(exc: BaseException | None) -> None:
    """Drop the local variables of the finished frames in `exc`'s tracebacks (its causes and contexts too).

    An exception raised while a model ran keeps the model's frames, and the tensors in them, alive;
    cleared first, those tensors stop holding the graph before it is freed in order.
    """
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if e.__traceback__ is not None:
            traceback.clear_frames(e.__traceback__)
        stack += [e.__cause__, e.__context__]
