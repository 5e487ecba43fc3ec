"""The Accumulation panel: a leaf's ``.grad`` building up, at one element of a tensor of any shape.

Pick an element (click a cell of the leaf's heat map, or type its index) and see each contribution's
value there and the running sum, as numbers, a table and a plot whose line is exactly the cumulative
sum of its bars (`gradviz.core.accumulation`); per contribution a small heat map of the whole tensor.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                               QSizePolicy, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from gradviz.core.accumulation import (ElementAccumulation, accumulation_at, as_grid, grid_cell_to_index,
                                       index_text, index_to_grid_cell, parse_index)
from gradviz.core.errors import GradvizError
from gradviz.core.recording import Recording
from gradviz.core.timeline import StepState

from .i18n import tr
from .plots import QtPlot, style_plot
from .theme import get_theme

__all__ = ["QtAccumulation", "MAX_MAPS"]

MAX_MAPS = 12  # small heat maps drawn, one per contribution (the first ones)
_CMAP = "CET-D1"


_style_plot = style_plot


def _image(grid: np.ndarray) -> pg.ImageItem:
    """A diverging heat map of `grid` (rows down, columns across), zero in the middle colour."""
    img = pg.ImageItem(np.asarray(grid, dtype=np.float32).T)
    lim = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    img.setLookupTable(pg.colormap.get(_CMAP).getLookupTable(nPts=256))
    img.setLevels((-(lim or 1.0), lim or 1.0))
    return img


class QtAccumulation(QWidget):
    """A leaf's ``.grad`` building up: per contribution its value at the picked element, the running sum,
    a bar-and-line plot, the leaf's heat map to pick an element, and a small heat map per contribution."""

    leaf_picked = Signal(str)
    element_picked = Signal(tuple)

    def __init__(self, parent=None, theme: str = "light"):
        super().__init__(parent)
        self.theme = theme
        self._rec: Recording | None = None
        self._state: StepState | None = None
        self.data: ElementAccumulation | None = None
        self._arrived: int | None = None
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.leaf_label = QLabel(tr("leaf"))
        self.leaf_combo = QComboBox()
        self.leaf_combo.currentTextChanged.connect(self._on_leaf_changed)
        self.element_label = QLabel(tr("element"))
        self.index_edit = QLineEdit()
        self.index_edit.setPlaceholderText("0, 1")
        self.index_edit.setMaximumWidth(110)
        self.index_edit.editingFinished.connect(self._on_index_typed)
        top.addWidget(self.leaf_label)
        top.addWidget(self.leaf_combo, 1)
        top.addWidget(self.element_label)
        top.addWidget(self.index_edit)
        lay.addLayout(top)
        self.equation = QLabel("")
        self.equation.setWordWrap(True)
        self.equation.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.equation)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.hide()
        lay.addWidget(self.error)
        # the leaf's final .grad as a heat map: a click picks the element
        self.leaf_map = pg.PlotWidget()
        self.leaf_map.setFixedHeight(120)
        self.leaf_map.invertY(True)
        self.leaf_map.hideAxis("left")
        self.leaf_map.hideAxis("bottom")
        self.leaf_map.setMouseEnabled(False, False)
        self.leaf_map.scene().sigMouseClicked.connect(self._on_map_clicked)
        lay.addWidget(self.leaf_map)
        self.table = QTableWidget(0, 4)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        lay.addWidget(self.table, 1)
        self.plot = QtPlot(theme)
        self.plot.setMinimumHeight(150)  # room for the vertical axis's label under the title
        self.plot.setLabel("bottom", tr("contribution"))
        lay.addWidget(self.plot, 1)
        # one small heat map per contribution (the whole tensor it carried)
        self.maps = pg.GraphicsLayoutWidget()
        self.maps.setFixedHeight(84)
        self.maps.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        lay.addWidget(self.maps)
        self._bars = self._line = self._marker = None
        self.set_theme(theme)

    # -- view of the core ---------------------------------------------------------------------
    def set_recording(self, rec: Recording | None) -> None:
        self._rec = rec
        self._state = None
        self.leaf_combo.blockSignals(True)
        self.leaf_combo.clear()
        if rec is not None:
            names = [n for n, info in rec.leaves.items() if info.contributions or info.node is not None]
            self.leaf_combo.addItems(names)
        self.leaf_combo.blockSignals(False)
        self._build()

    def set_leaf(self, name: str) -> None:
        """Show leaf `name`."""
        i = self.leaf_combo.findText(name)
        if i >= 0:
            self.leaf_combo.setCurrentIndex(i)

    def leaf(self) -> str:
        return self.leaf_combo.currentText()

    def set_state(self, state: StepState) -> None:
        """Follow `state`: the contributions that have arrived by this step."""
        self._state = state
        name = self.leaf_combo.currentText()
        if self._rec is not None and name in self._rec.leaves and self.data is not None:
            self._show_arrived(state.leaf(name).arrived)

    def set_element(self, index: tuple) -> None:
        """Show element `index` of the current leaf."""
        self._build(tuple(index))
        self.element_picked.emit(tuple(index))

    def set_theme(self, theme: str) -> None:
        """Restyle every plot and heat map in `theme` at once."""
        self.theme = theme
        for w in (self.plot, self.leaf_map):
            _style_plot(w, theme)
        self.maps.setBackground(get_theme(theme)["plot_bg"])
        self.error.setStyleSheet(f"color: {get_theme(theme)['error_fg']}")
        if self._rec is not None:
            self._build(self.data.index if self.data is not None else None)

    def retranslate(self) -> None:
        """Re-read every text in the current language."""
        self.leaf_label.setText(tr("leaf"))
        self.element_label.setText(tr("element"))
        self.plot.setLabel("bottom", tr("contribution"))
        if self._rec is not None:
            self._build(self.data.index if self.data is not None else None)

    # -- user input ------------------------------------------------------------------------------
    def _on_leaf_changed(self, name: str) -> None:
        self._build()
        self.leaf_picked.emit(name)

    def _on_index_typed(self) -> None:
        if self.data is None:
            return
        try:
            index = parse_index(self.index_edit.text(), self.data.shape)
        except GradvizError as exc:
            self.error.setText(str(exc.args[0]))
            self.error.show()
            return
        self.error.hide()
        if index != self.data.index:
            self.set_element(index)

    def _on_map_clicked(self, ev) -> None:
        if self.data is None or self._leaf_image is None:
            return
        p = self._leaf_image.mapFromScene(ev.scenePos())
        rows, cols = as_grid(np.zeros(self.data.shape)).shape
        col, row = int(np.floor(p.x())), int(np.floor(p.y()))
        if 0 <= row < rows and 0 <= col < cols:
            self.pick_cell(row, col)

    def pick_cell(self, row: int, col: int) -> None:
        """Pick the element drawn at (`row`, `col`) of the leaf's heat map."""
        if self.data is not None:
            self.set_element(grid_cell_to_index(self.data.shape, row, col))

    # -- drawing ---------------------------------------------------------------------------------
    def _build(self, index: tuple | None = None) -> None:
        """Fill the heat maps, table and plot for the current leaf at element `index`."""
        rec, name = self._rec, self.leaf_combo.currentText()
        self.table.clearSpans()
        self.table.setRowCount(0)
        self.plot.clear()
        self.leaf_map.clear()
        self.maps.clear()
        self._arrived = None
        self._leaf_image = None
        self.data = None
        if rec is None or not name or name not in rec.leaves:
            self.equation.setText("")
            return
        try:
            data = self.data = accumulation_at(rec, name, index)
        except GradvizError:
            data = self.data = accumulation_at(rec, name, None)
        th = get_theme(self.theme)
        self._dim = QBrush(QColor(th["text_dim"]))
        self._normal = self.table.palette().text()
        at = index_text(data.index)
        self.index_edit.setText(", ".join(str(i) for i in data.index))
        self.index_edit.setEnabled(bool(data.shape))
        info = rec.leaves[name]
        if info.grad is not None and info.grad.value is not None:
            self._leaf_image = _image(as_grid(info.grad.value))
            self.leaf_map.addItem(self._leaf_image)
            r, c = index_to_grid_cell(data.shape, data.index)
            self._marker = pg.ScatterPlotItem([c + 0.5], [r + 0.5], symbol="s", size=12, brush=None,
                                              pen=pg.mkPen(th["current"], width=2.5))
            self.leaf_map.addItem(self._marker)
            self.leaf_map.setToolTip(tr("click a cell to pick its element"))
        self.leaf_map.setVisible(self._leaf_image is not None and bool(data.shape))
        # short headers that fit their columns (the element is in the line above and in the tooltips)
        self.table.setHorizontalHeaderLabels(["#", tr("from"), tr("value"), tr("running sum")])
        for j, tip in ((2, tr("value at {index}", index=at)), (3, tr("running sum at {index}", index=at))):
            self.table.horizontalHeaderItem(j).setToolTip(tip)
        self._cells = data.rows()
        n = len(self._cells)
        self.table.setRowCount(n + 1)
        for i, cells in enumerate(self._cells):
            for j in range(4):
                item = QTableWidgetItem(cells[j])
                item.setToolTip(cells[j])
                self.table.setItem(i, j, item)
        total = QTableWidgetItem(f"= {name}.grad{at if data.shape else ''}")
        total.setToolTip(total.text())
        bold = QFont(total.font())
        bold.setBold(True)
        total.setFont(bold)
        self.table.setItem(n, 0, total)
        self.table.setSpan(n, 0, 1, 3)
        g = QTableWidgetItem("")
        g.setFont(bold)
        self.table.setItem(n, 3, g)
        # the plot: each contribution's value at the element (bars) and their running sum (the line)
        self._xs = np.arange(1, n + 1, dtype=float)
        self._bars = pg.BarGraphItem(x=self._xs[:0], height=data.values[:0], width=0.5,
                                     brush=pg.mkBrush(th["plot_line2"]))
        self.plot.addItem(self._bars)
        self._line = self.plot.plot([], [], pen=pg.mkPen(th["plot_line"], width=2.5),
                                    symbol="o" if n <= 50 else None, symbolBrush=th["plot_line"])
        self.plot.addLine(y=0, pen=pg.mkPen(th["text_dim"], width=1))
        if n:
            self.plot.setXRange(0.4, n + 0.6)
            step = max(1, int(np.ceil(n / 12)))
            self.plot.getAxis("bottom").setTicks([[(int(x), str(int(x))) for x in self._xs[::step]]])
        # the element in the title (room to spare, elided if not); the vertical axis says just "value"
        self.plot.setLabel("left", tr("value"))
        self.plot.set_title(tr("value at {index}", index=at) if data.shape else "")
        # a small heat map of each contribution's whole tensor
        if data.shape:
            for k, grid in enumerate(data.grids[:MAX_MAPS]):
                vb = self.maps.addViewBox(row=0, col=k, lockAspect=False, enableMouse=False, invertY=True)
                if grid is not None:
                    vb.addItem(_image(grid))
                    r, c = index_to_grid_cell(data.shape, data.index)
                    vb.addItem(pg.ScatterPlotItem([c + 0.5], [r + 0.5], symbol="s", size=7, brush=None,
                                                  pen=pg.mkPen(th["current"], width=1.5)))
        self.maps.setVisible(bool(data.shape) and n > 0)
        arrived = self._state.leaf(name).arrived if self._state is not None else n
        self._show_arrived(arrived)

    def _show_arrived(self, arrived: int) -> None:
        data = self.data
        if data is None or arrived == self._arrived:
            return
        self._arrived = arrived
        n = len(self._cells)
        name = data.leaf
        for i in range(n):
            here = i < arrived
            for j in (2, 3):
                self.table.item(i, j).setText(self._cells[i][j] if here else tr("not yet"))
            for j in range(4):
                self.table.item(i, j).setForeground(self._normal if here else self._dim)
        done = n > 0 and arrived >= n
        grad = "" if data.grad is None else f"{data.grad:.6g}"
        self.table.item(n, 3).setText(grad if done else "…")
        parts = [cells[1] for cells in self._cells]
        at = index_text(data.index) if data.shape else ""
        if len(parts) > 6:
            eq = f"{parts[0]} + {parts[1]} + … + {parts[-1]} ({len(parts)}) = {name}.grad{at}"
        else:
            eq = " + ".join(parts) + f" = {name}.grad{at}"
        vals = [self._cells[i][2] if i < arrived else "?" for i in range(min(n, 6))]
        if n <= 6:
            eq += "\n" + " + ".join(vals) + " = " + (grad if done else "…")
        self.equation.setText(eq)
        self._bars.setOpts(x=self._xs[:arrived], height=data.values[:arrived], width=0.5)
        self._line.setData(self._xs[:arrived], data.running[:arrived])

    def plotted(self) -> tuple[np.ndarray, np.ndarray]:
        """The bar heights and the line's points as drawn now (for tests)."""
        heights = np.asarray(self._bars.opts.get("height"), dtype=np.float64)
        _, ys = self._line.getData()
        return heights, (np.zeros(0) if ys is None else np.asarray(ys, dtype=np.float64))
