"""The smallest text a Scene draws: the one rule the app's zoom and every export's scale read.

Every text is `FONT_PX` at scale 1 (label lines, badges, fold marks, gradient values: `SMALL_FONT_PX`
is the same size) except a node's name, which shrinks to fit its box (`MIN_NAME_PX` at the least). A
picture at scale ``s`` is legible when ``s * smallest_text_px(scene)`` is at least the legible size
(9 px for an export; on screen, the app's own legible size, which follows the system font).
"""
from __future__ import annotations

import numpy as np

from .text import FONT_PX, MIN_NAME_PX, SMALL_FONT_PX

__all__ = ["EXACT_NODES", "smallest_text_px"]

EXACT_NODES = 5000  # up to this many nodes the smallest name is measured by default; above, its bound is taken


def smallest_text_px(scene, exact_nodes: int | None = EXACT_NODES) -> float:
    """The smallest font `scene` draws, in scene pixels: label lines, badges, fold marks and every name.

    Parameters
    ----------
    scene : Scene or None
    exact_nodes : int or None
        Names are measured node by node (each is made once and cached by the Scene) on graphs of up
        to this many nodes, every graph when None; a larger graph takes the bound a name never
        shrinks below (`MIN_NAME_PX`).
    """
    small = min(FONT_PX, SMALL_FONT_PX)
    if scene is None or not len(scene):
        return small
    n = len(scene)
    if exact_nodes is not None and n > exact_nodes:
        return min(small, MIN_NAME_PX)
    names = np.fromiter((scene.name_px(g) for g in range(n)), dtype=float, count=n)
    return float(min(small, names.min()))
