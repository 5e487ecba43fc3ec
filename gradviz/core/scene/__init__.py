"""One step of a recording as every picture draws it: `build_scene` -> `Scene` (Qt-free, array-based).

`build` holds the Scene's arrays and geometry, `node_text` its label lines, `decorations` its badges,
fold marks and outlines, `stepping` its step update and gradient arrows, `items` the styles and
records painters read; `legible` the smallest text drawn (the one legibility rule); `theme` the one
colour table (light, dark); `text` the formatters (`format_tensor`, `format_shape`) and the
font-metrics-free width model that cuts label lines to their box; `grid` the rectangle index.
"""
from .build import (DONE, EDGE_STATES, FLOWING, IDLE, Badge, EdgeStyle, FlowEdge, NodeStyle, Outline, Scene,
                    build_scene)
from .text import elide, format_shape, format_tensor, text_width
from .theme import KINDS, THEMES, get_theme, theme_names

__all__ = ["Scene", "build_scene", "NodeStyle", "EdgeStyle", "Badge", "FlowEdge", "Outline", "IDLE", "FLOWING",
           "DONE", "EDGE_STATES", "KINDS", "THEMES", "get_theme", "theme_names", "format_tensor", "format_shape",
           "text_width", "elide"]
