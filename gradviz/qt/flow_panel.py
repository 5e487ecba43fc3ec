"""The Gradient flow dock: the gradient norm per node along the backward order, and per module use."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QWidget

from gradviz.core.flow import GradientFlow
from gradviz.core.timeline import StepState

from .i18n import tr
from .plots import panel_plot, style_plot
from .theme import get_theme

__all__ = ["QtGradientFlow"]


class QtGradientFlow(QWidget):
    """Gradient norm per node along the backward order, and per module use (time step)."""

    node_picked = Signal(int)

    def __init__(self, parent=None, theme: str = "light"):
        super().__init__(parent)
        self.theme = theme
        lay = QHBoxLayout(self)
        self.plot = panel_plot(theme)
        lay.addWidget(self.plot, 1)
        self.use_plot = panel_plot(theme)
        lay.addWidget(self.use_plot, 1)
        self.retranslate()
        self.nodes = np.zeros(0, dtype=np.int64)
        self.norms = np.zeros(0)
        self.use_nodes = np.zeros(0, dtype=np.int64)
        self.use_norms = np.zeros(0)
        self._cursor = None
        self._pending_state = None
        self._cursor_timer = QTimer(self)
        self._cursor_timer.setSingleShot(True)
        self._cursor_timer.setInterval(40)
        self._cursor_timer.timeout.connect(self._on_cursor_timer)
        self._flow: GradientFlow | None = None

    def set_theme(self, theme: str) -> None:
        """Restyle both plots in `theme` at once (background, axes, curves)."""
        self.theme = theme
        for w in (self.plot, self.use_plot):
            style_plot(w, theme)
        if self._flow is not None:
            state = self._pending_state
            self.set_flow(self._flow)
            if state is not None:
                self.set_state(state)

    def retranslate(self) -> None:
        """Re-read the titles and axis labels in the current language."""
        self.plot.set_title(tr("gradient norm per node (backward order)"))
        self.plot.setLabel("bottom", tr("backward step"))
        self.plot.setLabel("left", tr("norm"))
        self.use_plot.set_title(tr("gradient norm per time step (module use)"))
        self.use_plot.setLabel("bottom", tr("module use"))

    def set_flow(self, flow: GradientFlow | None) -> None:
        """Plot `flow` (the core's gradient norms, `Session.flow()`); None clears the plots."""
        th = get_theme(self.theme)
        self._flow = flow
        self.plot.clear()
        self.use_plot.clear()
        self._cursor = None
        if flow is None:
            self.plot.set_integer_ticks(0)
            self.nodes, self.norms = np.zeros(0, dtype=np.int64), np.zeros(0)
            self.use_nodes, self.use_norms = np.zeros(0, dtype=np.int64), np.zeros(0)
            return
        self.nodes, self.norms = flow.nodes, flow.norms
        self.use_nodes, self.use_norms = flow.use_nodes, flow.use_norms
        curve = self.plot.plot(np.arange(len(self.nodes)), self.norms, pen=pg.mkPen(th["plot_line"], width=1))
        if len(self.nodes) <= 2000:
            spots = pg.ScatterPlotItem(x=np.arange(len(self.nodes)), y=self.norms, data=self.nodes, size=7,
                                       brush=pg.mkBrush(th["plot_line"]), pen=None, hoverable=True)
            spots.sigClicked.connect(self._on_clicked)
            self.plot.addItem(spots)
        else:  # thousands of points: click the curve, the nearest backward step is picked
            curve.curve.setClickable(True, width=8)
            curve.sigClicked.connect(self._on_curve_clicked)
        self.plot.set_integer_ticks(len(self.nodes))
        self._cursor = pg.InfiniteLine(0, angle=90, pen=pg.mkPen(th["plot_line2"], width=2))
        self._cursor.setVisible(False)
        self.plot.addItem(self._cursor)
        # per module use: the gradient that arrives at the use (its first node to run in backward)
        if len(flow.uses):
            xs = np.array([u.use for u in flow.uses], dtype=float)
            self.use_plot.plot(xs, self.use_norms, pen=pg.mkPen(th["plot_line2"], width=1.5))
            us = pg.ScatterPlotItem(x=xs, y=self.use_norms, data=self.use_nodes, size=8,
                                    brush=pg.mkBrush(th["plot_line2"]), pen=None, hoverable=True)
            us.sigClicked.connect(self._on_clicked)
            if len(xs) <= 20:
                self.use_plot.getAxis("bottom").setTicks([[(x, str(int(x))) for x in sorted(set(xs.tolist()))]])
            self.use_plot.addItem(us)
        self.use_plot.setVisible(bool(len(flow.uses)))

    def set_state(self, state: StepState) -> None:
        if self._cursor is None:
            return
        self._pending_state = state
        if not self._cursor_timer.isActive():
            self._cursor_timer.start()

    def _on_cursor_timer(self) -> None:
        """Move the step marker at most 25 times a second: the plot need not repaint at every step."""
        state = self._pending_state
        if self._cursor is None or state is None:
            return
        if state.phase == "backward":
            self._cursor.setVisible(True)
            self._cursor.setValue(state.step.event)
        else:
            self._cursor.setVisible(False)

    def _on_curve_clicked(self, curve, ev) -> None:
        x = self.plot.getPlotItem().vb.mapSceneToView(ev.scenePos()).x()
        self.pick_index(int(np.clip(round(x), 0, len(self.nodes) - 1)))

    def _on_clicked(self, item, points, ev=None) -> None:
        if len(points):
            self.node_picked.emit(int(points[0].data()))

    def pick_index(self, i: int) -> None:
        """Act as if point `i` of the per-node plot was clicked."""
        self.node_picked.emit(int(self.nodes[i]))
