"""What a step repaints in the graph view: the changed nodes and edges that are in view, nothing else.

What a step or a jump costs is what is in view, not the graph: the Scene updates the arrays of the
nodes the step changes with numpy operations (a jump across a 200,000-node graph changes most of
them: masks, no Python loop, no sort), then `repaint_changed` repaints only the changed nodes and edges
that are in view -- a rectangle each while they are few (`FULL_REPAINT`), else the visible part at once;
changes off screen get no rectangle at all (Qt paints them when they scroll in). The Scene's grid
index (`Scene.nodes_in`, `Scene.segments_in`) finds what is in view for that.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF

from gradviz.core.scene import Scene

from .graph_item import QtGraphItem

__all__ = ["repaint_changed", "FULL_REPAINT"]

FULL_REPAINT = 300  # more changed nodes or edges in view than this: repaint the visible part, not each rectangle


def repaint_changed(it: QtGraphItem, scene: Scene, vis: QRectF, groups: np.ndarray, rows: np.ndarray,
                    everything: bool, old_current: int, old_flow: list) -> tuple:
    """Repaint the changed nodes (`groups`) and edges (`rows`) of `scene` that are in `vis` (the view's
    scene rectangle): a rectangle of item `it` each while they are few, else the visible part at once.

    Those out of view get no rectangle (Qt paints them when they scroll in); a jump's many changes are
    matched against what the Scene's grid finds in view, so its cost is the view's, not the graph's.

    Returns
    -------
    tuple
        ``(changed nodes in view, changed edges in view, whole view at once)``: what was chosen.
    """
    if everything:  # every node's look changed: the part in view, at once
        it.update(vis.adjusted(-20, -20, 20, 20))
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), True
    x0, y0, x1, y1 = vis.left() - 100, vis.top() - 40, vis.right() + 100, vis.bottom() + 40
    groups = np.concatenate([groups, [g for g in (old_current, scene.current) if g >= 0]]).astype(np.int64)
    if len(groups) + len(rows) <= FULL_REPAINT:  # a few: test each
        p, half = scene.pos[groups], scene.size[groups] / 2
        groups = groups[(p[:, 0] + half[:, 0] >= x0) & (p[:, 0] - half[:, 0] <= x1)
                        & (p[:, 1] + half[:, 1] >= y0) & (p[:, 1] - half[:, 1] <= y1)]
        # an edge is in view when the rectangle between its two nodes is
        a, b = scene.pos[scene.adj[rows, 0]], scene.pos[scene.adj[rows, 1]]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        rows = rows[(hi[:, 0] >= x0) & (lo[:, 0] <= x1) & (hi[:, 1] >= y0) & (lo[:, 1] <= y1)]
    else:  # many (a jump): what is in view (the Scene's grid), kept where it changed
        changed = np.zeros(len(scene), dtype=bool)
        changed[groups] = True
        shown = scene.nodes_in(x0, y0, x1, y1)
        groups = shown[changed[shown]]
        changed = np.zeros(len(scene.adj), dtype=bool)
        changed[rows] = True
        shown = np.unique(scene.seg_edge[scene.segments_in(x0, y0, x1, y1)])
        rows = shown[changed[shown]]
    full = len(groups) + len(rows) > FULL_REPAINT
    if full:
        it.update(vis.adjusted(-20, -20, 20, 20))  # the part in view: cheaper than a rectangle per item
        return groups, rows, full
    for g in np.unique(groups).tolist():
        it.update(it.node_rect(g, 14))
    for s, d in scene.adj[rows].tolist():
        it.update(it.edge_rect(s, d))
    for f in old_flow:
        it.update(QRectF(*f.label_box).adjusted(-4, -4, 4, 4))
    return groups, rows, full
