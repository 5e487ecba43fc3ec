"""The Events dock: every step of the timeline as one line, made on demand; clicking one jumps there."""
from __future__ import annotations

from PySide6.QtCore import QAbstractListModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QAbstractItemView, QApplication, QListView

__all__ = ["QtEventList"]


class _EventModel(QAbstractListModel):
    """Every step of a timeline as one line, made on demand (cheap for 10,000-step timelines)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.timeline = None

    def set_timeline(self, timeline) -> None:
        self.beginResetModel()
        self.timeline = timeline
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if self.timeline is None or parent.isValid() else len(self.timeline)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        # the list elides a long line at its end; the tooltip has it whole
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole) and self.timeline is not None:
            step = self.timeline.steps[index.row()]
            return f"{step.index:>4}  {step.describe(self.timeline.rec)}"
        return None

    def retranslate(self) -> None:
        """Every line again, in the current language."""
        if self.timeline is not None and len(self.timeline):
            self.dataChanged.emit(self.index(0), self.index(len(self.timeline) - 1))


class QtEventList(QListView):
    """The timeline's events; clicking one jumps there."""

    step_picked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._model = _EventModel(self)
        self.setModel(self._model)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.clicked.connect(lambda idx: self.step_picked.emit(idx.row()))
        # a line too long for the dock ends in "…" (its tooltip has it whole), never scrolls out of sight
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setWordWrap(False)
        f = QFont("DejaVu Sans Mono")
        f.setFamilies(["DejaVu Sans Mono", "WenQuanYi Micro Hei Mono", "WenQuanYi Micro Hei"])
        base = QApplication.font().pointSizeF()
        f.setPointSizeF(max(9.0, base - 1) if base > 0 else 9.0)  # scales with the system font
        self.setFont(f)

    def set_timeline(self, timeline) -> None:
        self._model.set_timeline(timeline)

    def retranslate(self) -> None:
        """Every line again, in the current language."""
        self._model.retranslate()

    def set_step(self, i: int) -> None:
        idx = self._model.index(i)
        self.selectionModel().setCurrentIndex(idx, self.selectionModel().SelectionFlag.ClearAndSelect)
        self.scrollTo(idx)

    def pick(self, i: int) -> None:
        """Act as if row `i` was clicked."""
        self.clicked.emit(self._model.index(i))
