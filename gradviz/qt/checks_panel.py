"""The Checks dock: the core's check table, pass/fail coloured; selecting a row selects its node."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from gradviz.core.recording import Recording

from .i18n import tr, translate
from .theme import get_theme

__all__ = ["QtChecksPanel"]


class QtChecksPanel(QWidget):
    """The core's check table, pass/fail coloured; selecting a row selects its node."""

    run_requested = Signal()
    node_picked = Signal(int)
    # the result next to the check's name: it is what a reader looks for first, never scrolled off
    COLUMNS = ("check", "result", "what", "reference", "max abs err", "max rel err", "tolerance", "note")

    def __init__(self, parent=None, theme: str = "light"):
        super().__init__(parent)
        self.theme = theme
        self.table_data = None
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.run_button = QPushButton(tr("Run checks"))
        self.run_button.clicked.connect(self.run_requested.emit)
        self.summary = QLabel(tr("Checks not run yet."))
        top.addWidget(self.run_button)
        top.addWidget(self.summary, 1)
        lay.addLayout(top)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels([tr(c) for c in self.COLUMNS])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_selection)
        lay.addWidget(self.table, 1)
        self._rec = None

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        if running:
            self.summary.setText(tr("Running checks…"))

    def clear(self) -> None:
        self.table_data = None
        self.table.setRowCount(0)
        self.summary.setText(tr("Checks not run yet."))

    def set_table(self, table, rec: Recording) -> None:
        """Show `table` (a CheckTable) for `rec`."""
        self.table_data, self._rec = table, rec
        th = get_theme(self.theme)
        colours = {"pass": th["ok"], "fail": th["fail"]}
        self.table.setRowCount(len(table.rows))
        for i, r in enumerate(table.rows):
            # the note: why a row was skipped, sampled or failed (first line; the tooltip has it all)
            note = translate(r.detail.strip().splitlines()[0]) if r.detail.strip() else ""
            status = {"check": tr(r.kind), "result": tr(r.status), "what": translate(r.what),
                      "reference": translate(r.reference), "max abs err": _fmt(r.max_abs),
                      "max rel err": _fmt(r.max_rel), "tolerance": r.tolerance, "note": note}
            cells = [status[c] for c in self.COLUMNS]
            bg = QBrush(QColor(colours.get(r.status, th["neutral"])))
            for j, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                item.setBackground(bg)
                item.setToolTip(translate(r.detail) if r.detail else str(text))
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()
        hh = self.table.horizontalHeader()
        for c in range(self.table.columnCount()):  # a header (Chinese ones too) is never cut by its column
            text = self.table.horizontalHeaderItem(c).text() if self.table.horizontalHeaderItem(c) else ""
            need = hh.fontMetrics().horizontalAdvance(text) + 16
            if self.table.columnWidth(c) < need:
                self.table.setColumnWidth(c, need)
        counts = table.counts()
        summary = ", ".join(tr("{n} {status}", n=v, status=tr(k)) for k, v in sorted(counts.items()))
        self.summary.setText(tr("{n} checks: {summary} — {verdict}", n=len(table.rows), summary=summary,
                                verdict=tr("OK") if table.ok else tr("FAILED")))

    def retranslate(self) -> None:
        """Every text again in the current language."""
        self.run_button.setText(tr("Run checks"))
        self.table.setHorizontalHeaderLabels([tr(c) for c in self.COLUMNS])
        if self.table_data is not None and self._rec is not None:
            self.set_table(self.table_data, self._rec)
        else:
            self.summary.setText(tr("Checks not run yet."))

    def node_of_row(self, i: int) -> int | None:
        """The node check row `i` is about (its leaf's AccumulateGrad node for leaf checks)."""
        r = self.table_data.rows[i]
        if r.node is not None:
            return int(r.node)
        if r.leaf and self._rec is not None and r.leaf in self._rec.leaves:
            return self._rec.leaves[r.leaf].node
        return None

    def _on_selection(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows and self.table_data is not None:
            nid = self.node_of_row(rows[0].row())
            if nid is not None:
                self.node_picked.emit(nid)


def _fmt(x) -> str:
    return "" if x is None else f"{x:.2e}"
