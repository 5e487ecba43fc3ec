"""How far the graph may be zoomed out while every label stays readable, from the system font.

A label is legible when its font, times the view's scale, is at least `legible_px()` pixels on
screen: 9 px, or 70 % of the application font's pixel size when that is larger (text scales with
the system font: a 14 pt desktop font asks for larger graph text too). The graph's smallest font is
a node's name shrunk to fit its box (`MIN_NAME_PX` at the least); badges, fold marks and other
label text are `FONT_PX` (`gradviz.core.scene.legible`, the rule exports read too). `legible_scale`
is the zoom at which the smallest one drawn is legible. Below `hidden_px()` on screen, text is left out (shapes only): it could not be read anyway.
"""
from __future__ import annotations

from PySide6.QtGui import QFontInfo
from PySide6.QtWidgets import QApplication

from gradviz.core.scene import Scene
from gradviz.core.scene.legible import EXACT_NODES, smallest_text_px

__all__ = ["MIN_LEGIBLE_PX", "HIDDEN_PX", "legible_px", "hidden_px", "smallest_font_px", "legible_scale",
           "EXACT_NODES"]

MIN_LEGIBLE_PX = 9.0  # no label opens smaller than this on screen
HIDDEN_PX = 6.0  # text that would be smaller than this on screen is not drawn


def _app_font_px() -> float:
    """The application font's size in pixels (13.3 for 10 pt at 96 dpi); 13.3 without an application."""
    app = QApplication.instance()
    if app is None:
        return 13.3
    return float(QFontInfo(QApplication.font()).pixelSize())


def legible_px() -> float:
    """The smallest on-screen size of a graph label at the opening zoom, in pixels."""
    return max(MIN_LEGIBLE_PX, 0.7 * _app_font_px())


def hidden_px() -> float:
    """Graph text smaller than this on screen is left out (the nodes stay, as shapes)."""
    return max(HIDDEN_PX, 0.45 * _app_font_px())


def smallest_font_px(scene: Scene | None) -> float:
    """The smallest font the graph draws, in scene pixels (`gradviz.core.scene.legible.smallest_text_px`,
    the rule every export reads too): names measured on graphs of up to `EXACT_NODES` nodes."""
    return smallest_text_px(scene, EXACT_NODES)


def legible_scale(scene: Scene | None) -> float:
    """The view scale at which the smallest font of `scene` is `legible_px()` on screen."""
    return legible_px() / smallest_font_px(scene)
