"""The panels' plots: themed, titles elided to fit with the whole title as tooltip, ticks that never collide.

`QtPlot` is a pyqtgraph `PlotWidget` whose title is set with `set_title` (in the application font's
size, so it scales with the system font) and cut with "…" to the plot's width when it must be (the
tooltip has it whole), and whose whole-number ticks (`set_integer_ticks`) are spaced by the width of
their labels: they are laid out again whenever the plot is resized.
"""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QApplication

from .theme import get_theme

__all__ = ["QtPlot", "panel_plot", "style_plot", "nice_step", "integer_ticks_of"]

_STEPS = (1, 2, 5)


def nice_step(n: int, fit: int) -> int:
    """The smallest step of 1, 2, 5, 10, 20, 50 ... that puts at most `fit` ticks on 0 .. n-1."""
    scale = 1
    while True:
        for s in _STEPS:
            if (n - 1) // (s * scale) + 1 <= max(2, fit):
                return s * scale
        scale *= 10


def _title_font() -> QFont:
    f = QFont(QApplication.font())
    f.setPointSizeF(max(8.0, f.pointSizeF() - 1) if f.pointSizeF() > 0 else 9.0)
    return f


def style_plot(w: pg.PlotWidget, theme: str) -> None:
    """Give plot `w` the colours of `theme`: background, axes, tick labels, title."""
    th = get_theme(theme)
    w.setBackground(th["plot_bg"])
    for ax in ("left", "bottom"):
        w.getAxis(ax).setPen(pg.mkPen(th["plot_fg"]))
        w.getAxis(ax).setTextPen(pg.mkPen(th["plot_fg"]))
    if isinstance(w, QtPlot):
        w.title_color = th["plot_fg"]
        w.fit_title()


class QtPlot(pg.PlotWidget):
    """A themed plot whose title and ticks fit its width (see the module)."""

    def __init__(self, theme: str = "light", parent=None):
        super().__init__(parent)
        self.full_title = ""
        self.title_color = get_theme(theme)["plot_fg"]
        self._ticks_n = 0
        style_plot(self, theme)

    def set_title(self, text: str) -> None:
        """Show `text` as the title, elided to the plot's width (the tooltip has it whole)."""
        self.full_title = text
        self.fit_title()

    def fit_title(self) -> None:
        if not self.full_title:
            if self.getPlotItem().titleLabel.text:
                self.setTitle(None)
            self.setToolTip("")
            return
        f = _title_font()
        room = max(20, self.width() - 16)
        shown = QFontMetrics(f).elidedText(self.full_title, Qt.TextElideMode.ElideRight, room)
        self.setTitle(shown, size=f"{f.pointSizeF():g}pt", color=self.title_color)
        self.setToolTip(self.full_title if shown != self.full_title else "")

    def set_integer_ticks(self, n: int) -> None:
        """Ticks on whole numbers 0 .. n-1 along the bottom axis, as many as their labels leave room for."""
        self._ticks_n = n
        self.fit_ticks()

    def fit_ticks(self) -> None:
        n, axis = self._ticks_n, self.getAxis("bottom")
        if n <= 0:
            axis.setTicks(None)
            return
        fm = QFontMetrics(axis.style.get("tickFont") or axis.font())
        label = fm.horizontalAdvance(str(n - 1)) + fm.horizontalAdvance("00")  # a label and a gap
        length = max(40, self.getPlotItem().vb.width() or self.width() - 60)
        step = nice_step(n, int(length // label))
        major = list(range(0, n, step))
        if (n - 1) - major[-1] >= step / 2:
            major.append(n - 1)  # the last step, when it does not crowd the tick before it
        elif major[-1] != n - 1 and len(major) > 1:
            major[-1] = n - 1
        axis.setTicks([[(float(i), str(i)) for i in major], []])

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if "full_title" not in self.__dict__:
            return  # pyqtgraph lays itself out before __init__ has run
        self.fit_title()
        if self._ticks_n:
            self.fit_ticks()


def integer_ticks_of(w) -> list[int]:
    """The whole numbers ticked on the bottom axis of `w` now (for tests)."""
    levels = getattr(w.getAxis("bottom"), "_tickLevels", None) or [[]]
    return [int(v) for v, _ in levels[0]]


def panel_plot(theme: str) -> QtPlot:
    """A `QtPlot` for a dock: themed, at least 90 px tall."""
    w = QtPlot(theme)
    w.setMinimumHeight(90)
    return w
