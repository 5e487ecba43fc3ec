"""Moving a Scene from step to step: only the nodes a step changed and the edges they send along.

`Stepping.update` copies a step's state into the Scene's arrays with numpy masks and gathers (a jump
that changes every node runs no Python loop over them), sets each edge's flow state and makes the
arrows of the gradients sent at the step, their values placed where they cover no node.
"""
from __future__ import annotations

import numpy as np

from ..edges import edge_route
from ..timeline import BACKWARD_DONE, StepState
from .items import DONE, FLOWING, IDLE, FlowEdge
from .text import FONT_PX, format_tensor, text_width

__all__ = ["Stepping"]


def _unique(ids: np.ndarray, n: int) -> np.ndarray:
    """The sorted distinct values of `ids` (all in ``range(n)``): a sort for a few, a mask over `n` for many."""
    if len(ids) < 256:
        return np.unique(ids)
    mask = np.zeros(n, dtype=bool)
    mask[ids] = True
    return np.flatnonzero(mask)


class Stepping:
    """The Scene's step: `update` and the arrows of the gradients flowing (a part of `Scene`)."""

    def update(self, state: StepState, changed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """Show `state`: copy the `changed` recording nodes' state (every node when None) into the arrays.

        Returns
        -------
        groups : numpy.ndarray
            Drawn nodes whose look changed (their boxes, labels or badges).
        rows : numpy.ndarray
            Drawn edges whose flow state changed.
        everything : bool
            True when the whole drawing changed (a first state, or the phase changed: every waiting
            node's badge), so a view repaints all of it.
        """
        everything = changed is None or state.phase != self.phase
        g_of, rec = self.group_of, self.recording
        if changed is None:
            groups = np.flatnonzero(self.proxy_of < 0)
            ids = np.arange(len(rec.nodes))
        else:
            ids = np.asarray(changed, dtype=np.int64)
            groups = _unique(g_of[ids], len(self.members)) if self.rolled else ids
        if self.rolled and len(groups):
            # every member of each changed group, gathered group after group (a CSR of the members)
            starts, counts = self._member_start[groups], self._member_count[groups]
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            ms = self._member_ids[np.repeat(starts, counts) + offsets]
            first = np.cumsum(counts) - counts
            self.status[groups] = np.maximum.reduceat(state.status[ms], first)
            self.pending[groups] = np.add.reduceat(state.pending[ms], first)
        elif not self.rolled:
            self.status[groups] = state.status[groups]
            self.pending[groups] = state.pending[groups]
        linked = groups[self._has_proxy[groups]]
        if len(linked):  # a proxy shows its true node's state
            proxies = np.concatenate([self._proxies[int(t)] for t in linked.tolist()])
            self.status[proxies] = self.status[self.proxy_of[proxies]]
            self.pending[proxies] = self.pending[self.proxy_of[proxies]]
            groups = np.concatenate([groups, proxies])
        self.style[groups] = self.kind[groups].astype(np.int16) * 3 + np.minimum(self.status[groups], 2)
        # forgotten lines and badges are made again when drawn (the phase changed: every node's badges)
        self.invalidate_labels(slice(None) if everything else groups)
        # edges a gradient has passed along: their sender ran backward (counted per drawn edge, as one
        # drawn edge of a rolled graph stands for several)
        counts = self._out_start[ids + 1] - self._out_start[ids]
        if counts.sum():
            starts = np.repeat(self._out_start[ids], counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            ks = self._out_edges[starts + offsets]
            sent = state.status[self._edge_src[ks]] == BACKWARD_DONE
            delta = sent.astype(np.int32) - self._edge_sent[ks]
            self._edge_sent[ks] = sent
            rows = self.edge_of[ks]
            np.add.at(self._row_sent, rows, delta)
        else:
            rows = np.zeros(0, dtype=np.int64)
        old_flow = self._flow_rows
        self.state, self.phase = state, state.phase
        self.current = int(g_of[state.current]) if state.current is not None else -1
        # a gradient inside one drawn box (a collapsed block's own edges) is not drawn as an arrow
        inside = [self.collapsed and g_of[s] == g_of[d] for s, d, _slot, _g in state.flowing]
        self.flowing = [self._flow_edge(s, d, slot, grad)
                        for (s, d, slot, grad), skip in zip(state.flowing, inside) if not skip]
        self._flow_rows = np.asarray([self.edge_of[self._edge_index(s, d, slot)]
                                      for (s, d, slot, _), skip in zip(state.flowing, inside) if not skip],
                                     dtype=np.int64)
        rows = _unique(np.concatenate([rows, old_flow, self._flow_rows]), len(self.adj))
        self.edge_state[rows] = np.where(self._row_sent[rows] > 0, DONE, IDLE)
        self.edge_state[self._flow_rows] = FLOWING
        return groups, rows, everything

    def _edge_index(self, s: int, d: int, slot: int) -> int:
        """Index into ``recording.edges`` of the gradient edge (s, d, slot)."""
        edges = self.recording.edges
        for k in self._out_edges[self._out_start[s]:self._out_start[s + 1]].tolist():
            if edges[k][1] == d and edges[k][2] == slot:
                return k
        raise KeyError((s, d, slot))

    def _flow_edge(self, s: int, d: int, slot: int, grad) -> FlowEdge:
        """The arrow of the gradient sent from recording node s to d: route, head and value box."""
        gs, gd = int(self.group_of[s]), int(self.group_of[d])
        text = format_tensor(grad) if grad is not None else "None"
        if self.layout is not None:
            row = int(self.edge_of[self._edge_index(s, d, slot)])
            gs, gd = (int(v) for v in self.adj[row])  # the receiver drawn may be a proxy of d's node
            route = edge_route(self.layout, row)
        else:
            route = np.asarray([self.pos[gs], self.pos[gd]], dtype=float)
        a, b = route[-2], route[-1]
        v = b - a
        length = float(np.hypot(*v)) or 1.0
        u = v / length
        w, h = self.size[gd]
        # the head's tip on the receiver's border, 16 px long and 16 wide
        cut = min(abs(w / 2 / u[0]) if u[0] else 1e9, abs(h / 2 / u[1]) if u[1] else 1e9)
        tip = b - u * (cut + 2)
        nrm = np.array([-u[1], u[0]])
        head = np.asarray([tip, tip - u * 16 + nrm * 8, tip - u * 16 - nrm * 8])
        # the value halfway along: on the middle bend point, or the middle of the middle leg
        half = len(route) // 2
        mid = route[half] if len(route) % 2 else (route[half - 1] + route[half]) / 2
        bw = text_width(text, FONT_PX, bold=True) + 14
        box = self._free_label_box(float(mid[0]), float(mid[1]), float(bw), 20.0)
        return FlowEdge(gs, gd, int(slot), text, route, head, box)

    def _free_label_box(self, cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
        """A `w` x `h` box for a gradient's value centred at (cx, cy), moved up or down by whole lines
        (at most six) to the nearest place where it covers no node's box: a value wider than the gap
        between two layers sits above or below the nodes it would hide, never on their borders."""
        p, half = self.pos, self.size / 2
        reach = 6 * (h + 4) + h / 2 + 2
        near = self.nodes_in(cx - w / 2 - 2, cy - reach, cx + w / 2 + 2, cy + reach)
        lo, hi = p[near] - half[near] - 2, p[near] + half[near] + 2  # 2 px clear of every border
        for k in (0, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6, 6):
            x, y = cx - w / 2, cy - h / 2 + k * (h + 4)
            if not np.any((lo[:, 0] < x + w) & (x < hi[:, 0]) & (lo[:, 1] < y + h) & (y < hi[:, 1])):
                return (x, y, w, h)
        return (cx - w / 2, cy - h / 2, w, h)
