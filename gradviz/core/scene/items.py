"""What a Scene is drawn with: node and edge styles, badges, gradient arrows, outlines, edge flow states.

Plain frozen records the Scene hands to every painter (the app, the image exporters, DOT): a painter
reads their colours, rectangles and text and draws them, nothing more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..timeline import COMPUTED
from .text import SMALL_FONT_PX
from .theme import KINDS, blend

__all__ = ["NodeStyle", "EdgeStyle", "Badge", "FlowEdge", "Outline", "node_styles", "IDLE", "FLOWING", "DONE",
           "EDGE_STATES"]

IDLE, FLOWING, DONE = 0, 1, 2  # an edge's flow state: no gradient yet, one on it this step, one passed
EDGE_STATES = ("idle", "flowing", "done")
_STATUS_TEXT = ("not reached", "computed", "ran backward")


@dataclass(frozen=True)
class NodeStyle:
    """How a node of one kind at one status is drawn.

    ``shape`` is ``"rounded"`` (an op or input box), ``"double"`` (a custom Function: a box in a box) or
    ``"pill"`` (a leaf); ``coarse`` is the flat colour of the box when zoomed out past reading.
    """

    kind: str
    status: int
    fill: str
    border: str
    text: str
    border_width: float
    dashed: bool
    shape: str
    coarse: str

    @property
    def status_text(self) -> str:
        return _STATUS_TEXT[self.status]


@dataclass(frozen=True)
class EdgeStyle:
    """How an edge is drawn: colour, width in pixels (at any zoom) and whether it is dashed."""

    color: str
    width: float
    dashed: bool = False


@dataclass(frozen=True)
class Badge:
    """A small rounded tab on a node's border with a word on it (top-left at ``x, y``)."""

    x: float
    y: float
    w: float
    h: float
    text: str
    fill: str
    text_color: str
    radius: float
    px: float = SMALL_FONT_PX  # the text's pixel size


@dataclass(frozen=True)
class FlowEdge:
    """A gradient sent at this step: drawn as a thick route with an arrow head and its value on it.

    ``sender``/``receiver`` are drawn nodes; ``route`` (K, 2) runs from the sender's centre to the
    receiver's; ``head`` (3, 2) is the arrow head's triangle; ``label_box`` (x, y, w, h) the value's box.
    """

    sender: int
    receiver: int
    slot: int
    text: str
    route: np.ndarray
    head: np.ndarray
    label_box: tuple


@dataclass(frozen=True)
class Outline:
    """A highlight drawn around a node (the current step's node, the selection)."""

    group: int
    x: float
    y: float
    w: float
    h: float
    color: str
    width: float
    radius: float
    dashed: bool


def node_styles(th: dict) -> tuple:
    """The 12 node styles of a theme: index ``kind * 3 + status``."""
    out = []
    for kind in KINDS:
        fills, border = th[kind][:3], th[kind][3]
        # a node not reached yet: its border faded into the background (70/255 opaque)
        dim = blend(border, th["background"], 70 / 255)
        for status in range(3):
            reached = status >= COMPUTED
            out.append(NodeStyle(kind, status, fills[status], border if reached else dim,
                                 th["text"] if reached and kind != "input" else th["text_dim"],
                                 3.0 if kind == "custom" else 2.0, kind == "input",
                                 {"leaf": "pill", "custom": "double"}.get(kind, "rounded"),
                                 border if status else fills[0]))
    return tuple(out)
