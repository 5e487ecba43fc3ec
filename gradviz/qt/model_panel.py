"""The Model dock: built-in models, Open model script, the parameters as a form, Re-run, progress and Cancel."""
from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QLineEdit, QProgressBar,
                               QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from .i18n import tr, translate
from .inspector import section_label

__all__ = ["QtFormScroll", "QtModelPanel"]


class QtFormScroll(QScrollArea):
    """A scroll area for a form: scrolls vertically, and asks for the width its form needs (so a dock
    holding it is never narrower than its fields)."""

    def minimumSizeHint(self):  # noqa: N802 - Qt API
        hint = super().minimumSizeHint()
        w = self.widget()
        if w is not None:
            need = w.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
            hint.setWidth(max(hint.width(), need))
        return hint

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if obj is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the form grew or shrank (another model's parameters)
        return super().eventFilter(obj, event)


class QtModelPanel(QWidget):
    """Built-in models, Open model script, the model's parameters as a form, Re-run, progress and Cancel."""

    run_requested = Signal(str, dict)
    open_script_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        from gradviz.core.models import MODELS

        self._models = MODELS
        outer = QVBoxLayout(self)
        # the model, its description and parameters scroll; Re-run, progress and Cancel stay in view
        # at any height of the dock
        scroll = QtFormScroll()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(0, 0, 0, 0)
        self.model_label = QLabel(tr("Built-in model"))
        lay.addWidget(self.model_label)
        self.combo = QComboBox()
        self.combo.addItems(list(MODELS))
        self.combo.setPlaceholderText(tr("(model script)"))
        self.combo.currentTextChanged.connect(self._on_model_changed)
        lay.addWidget(self.combo)
        self.script_button = QPushButton(tr("Open model script…"))
        self.script_button.clicked.connect(self.open_script_requested.emit)
        lay.addWidget(self.script_button)
        self.description = QLabel("")
        self.description.setWordWrap(True)
        lay.addWidget(self.description)
        self.params_label = section_label(tr("Parameters"))
        lay.addWidget(self.params_label)
        self.form_host = QWidget()
        self.form = QFormLayout(self.form_host)
        lay.addWidget(self.form_host)
        lay.addStretch(1)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)
        self.editors: dict[str, QWidget] = {}
        self.run_button = QPushButton(tr("Re-run"))
        self.run_button.clicked.connect(self._on_run)
        outer.addWidget(self.run_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)
        self.cancel_button = QPushButton(tr("Cancel"))
        self.cancel_button.clicked.connect(self.cancel_requested.emit)
        outer.addWidget(self.progress)
        outer.addWidget(self.progress_label)
        outer.addWidget(self.cancel_button)
        # a model chosen is a model shown: a pick or a changed parameter re-records (once typing pauses)
        self.auto_run = True
        self._run_timer = QTimer(self)
        self._run_timer.setSingleShot(True)
        self._run_timer.setInterval(400)
        self._run_timer.timeout.connect(self._on_auto_run)
        self._shown: tuple | None = None  # (target, params) last recorded or asked for
        self.combo.activated.connect(self._changed)  # a user's pick (not a programmatic change)
        self.target = None
        # which backends can run, {name: (available, reason)}: set from the session (found in its worker)
        self.backends: dict[str, tuple[bool, str]] = {}
        self.set_running(False)
        self.target = self.combo.currentText()
        self._build_form(self.target, {})

    def set_target(self, target: str, params: dict | None = None) -> None:
        """Show `target` (a built-in model name or a script path) with `params`."""
        self.target = target
        self._run_timer.stop()
        if target in self._models:
            self.combo.blockSignals(True)
            self.combo.setCurrentText(target)
            self.combo.blockSignals(False)
            self._build_form(target, params or {})
        else:
            # a script: no built-in model is selected (picking one from the list switches to it)
            self.combo.blockSignals(True)
            self.combo.setCurrentIndex(-1)
            self.combo.blockSignals(False)
            self.description.setText(f"{tr('Model script')}: {target}")
            self._clear_form()
        self._shown = (target, self.params())

    def _on_model_changed(self, name: str) -> None:
        if not name:
            return
        self.target = name
        self._build_form(name, {})

    def _changed(self, *_args) -> None:
        """The user picked a model or changed a parameter: record it again once they pause."""
        if self.auto_run:
            self._run_timer.start()

    def _on_auto_run(self) -> None:
        """Record what the form shows, unless it is what was recorded last."""
        target = self.target or self.combo.currentText()
        if (target, self.params()) != self._shown:
            self._on_run()

    def retranslate(self) -> None:
        """Every fixed text again in the current language."""
        self.model_label.setText(tr("Built-in model"))
        self.combo.setPlaceholderText(tr("(model script)"))
        self.script_button.setText(tr("Open model script…"))
        self.params_label.setText(tr("Parameters"))
        self.run_button.setText(tr("Re-run"))
        self.cancel_button.setText(tr("Cancel"))
        if self.target in self._models:  # the description and the parameters' tooltips
            self._build_form(self.target, self.params())
        elif self.target:
            self.description.setText(f"{tr('Model script')}: {self.target}")

    def _clear_form(self) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors = {}

    def _build_form(self, name: str, params: dict) -> None:
        # which backends can run is what the session's worker found: asking here could build the
        # compiled extension on the GUI thread (about a minute, the window frozen)
        from gradviz.core.backends import backend_names

        spec = self._models[name]
        self.description.setText(tr(spec.description))
        self._clear_form()
        values = {**spec.defaults, **params}
        for key, default in spec.defaults.items():
            value = values[key]
            if key == "backend":
                ed = QComboBox()
                for b in backend_names():
                    available, reason = self.backends.get(b, (True, tr("checked when the model runs")))
                    ed.addItem(b)
                    idx = ed.count() - 1
                    if not available:
                        ed.model().item(idx).setEnabled(False)
                    if reason:
                        ed.setItemData(idx, reason, Qt.ItemDataRole.ToolTipRole)
                ed.setCurrentText(str(value))
            elif isinstance(default, bool):
                ed = QCheckBox()
                ed.setChecked(bool(value))
            elif isinstance(default, int):
                ed = QSpinBox()
                ed.setRange(-1_000_000, 1_000_000)
                ed.setValue(int(value))
            elif isinstance(default, float):
                ed = QDoubleSpinBox()
                ed.setRange(-1e9, 1e9)
                ed.setDecimals(4)
                ed.setValue(float(value))
            else:
                ed = QLineEdit("" if value is None else str(value))
                ed.setPlaceholderText("default")
            if key in spec.help:
                ed.setToolTip(tr(spec.help[key]))
            # the user's own edits only (a programmatic set_param records nothing by itself)
            for sig in ("activated", "clicked", "editingFinished"):
                if hasattr(ed, sig):
                    getattr(ed, sig).connect(self._changed)
                    break
            self.form.addRow(key, ed)
            self.editors[key] = ed

    def params(self) -> dict:
        """The parameters as the form shows them."""
        out = {}
        for key, ed in self.editors.items():
            if isinstance(ed, QComboBox):
                out[key] = ed.currentText()
            elif isinstance(ed, QCheckBox):
                out[key] = ed.isChecked()
            elif isinstance(ed, (QSpinBox, QDoubleSpinBox)):
                out[key] = ed.value()
            else:
                text = ed.text().strip()
                out[key] = None if not text else (float(text) if _is_number(text) else text)
        return out

    def set_param(self, key: str, value) -> None:
        """Set parameter `key` in the form."""
        ed = self.editors[key]
        if isinstance(ed, QComboBox):
            ed.setCurrentText(str(value))
        elif isinstance(ed, QCheckBox):
            ed.setChecked(bool(value))
        elif isinstance(ed, (QSpinBox, QDoubleSpinBox)):
            ed.setValue(value)
        else:
            ed.setText("" if value is None else str(value))

    def _on_run(self) -> None:
        self._run_timer.stop()
        target = self.target or self.combo.currentText()
        params = self.params() if target in self._models else {}
        self._shown = (target, self.params())
        self.run_requested.emit(target, params)

    def set_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.progress_label.setVisible(running)
        self.run_button.setEnabled(not running)
        if running:
            self.progress.setRange(0, 0)  # busy until the run reports how far it got (a child starting)
            self.progress_label.setText(tr("Recording…"))

    def set_progress(self, fraction: float, message: str) -> None:
        if fraction > 0:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(fraction * 1000))
        if message:
            self.progress_label.setText(translate(message))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
