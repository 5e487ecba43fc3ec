"""The transport bar under the graph: start, back, play/pause, forward, end, a slider, the speed and the
step's caption (a `QtElidedLabel`: a long caption ends in "…", never runs into its neighbour)."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QSlider, QToolButton, QVBoxLayout, QWidget

from gradviz.core.timeline import StepState

from .i18n import tr

__all__ = ["QtElidedLabel", "QtTransport", "SPEEDS"]

SPEEDS = [1, 2, 5, 10, 30, 100, 1000]


class QtElidedLabel(QLabel):
    """A one-line label that ends in "…" when it is too narrow for its text, with the whole text as its
    tooltip: a long caption never runs into its neighbour."""

    def __init__(self, text: str = "", parent=None):
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        self._full = text
        self.setToolTip(text)
        self._elide()

    def text(self) -> str:
        """The whole text (what the label shows may end in "…")."""
        return self._full

    def shown(self) -> str:
        """The text as drawn now."""
        return super().text()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(0, self.contentsRect().width())
        super().setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, width))


class QtTransport(QWidget):
    """Step controls: start, back, play/pause, forward, end, a slider, speed and the phase label."""

    step_requested = Signal(int)

    def __init__(self, actions: dict, parent=None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 2, 6, 2)
        outer.setSpacing(2)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self.step_requested.emit)
        outer.addWidget(self.slider)
        lay = QHBoxLayout()
        outer.addLayout(lay)
        self.buttons = {}
        for key in ("first", "prev", "play", "next", "last"):
            b = QToolButton()
            b.setDefaultAction(actions[key])
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
            b.setMinimumWidth(30)
            lay.addWidget(b)
            self.buttons[key] = b
        self.step_label = QLabel("0/0")
        self.step_label.setMinimumWidth(90)
        lay.addWidget(self.step_label)
        self.phase_label = QtElidedLabel("")
        f = self.phase_label.font()
        f.setBold(True)
        self.phase_label.setFont(f)
        lay.addWidget(self.phase_label, 1)
        self.speed_label = QLabel(tr("Speed"))
        lay.addWidget(self.speed_label)
        self.speed = QComboBox()
        self.speed.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for s in SPEEDS:
            self.speed.addItem(f"{s} {tr('steps/s')}", s)
        self.speed.setCurrentIndex(2)
        lay.addWidget(self.speed)

    def set_range(self, n: int) -> None:
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        self.slider.blockSignals(False)

    def set_state(self, state: StepState, total: int, caption: str) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(state.step.index)
        self.slider.blockSignals(False)
        self.step_label.setText(f"{tr('Step')} {state.step.index}/{total - 1}")
        self.phase_label.setText(f"[{tr(state.phase)}] {caption}")

    def steps_per_second(self) -> int:
        return int(self.speed.currentData())

    def retranslate(self) -> None:
        """The fixed words in the current language (the caption comes with the next `set_state`)."""
        self.speed_label.setText(tr("Speed"))
        for i, s in enumerate(SPEEDS):
            self.speed.setItemText(i, f"{s} {tr('steps/s')}")
