"""The app's File ▸ Export dialog: format, step, layout, theme, scale, region; the export in a worker thread.

It opens in the folder used last (else the user's documents, else home; never the current folder),
names the file after the model, says on its Export button what will be written, and when the file
is written says so, turns Cancel into Close and offers to open the folder.
"""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRectF, QSettings, QStandardPaths, QThread, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from ..core.errors import Cancelled, GradvizError
from ..core.exporters import LAYOUTS, THEMES, export, exporters
from ..core.recording import Recording
from ..core.timeline import Stepper
from .export import ensure_app
from .i18n import tr

__all__ = ["QtExportDialog", "default_export_dir", "default_export_name"]


def default_export_dir(settings: QSettings | None) -> str:
    """The folder an export opens in: the last one used, else the user's documents, else home."""
    last = str(settings.value("export_dir", "")) if settings is not None else ""
    if last and os.path.isdir(last):
        return last
    docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    if docs and os.path.isdir(docs):
        return docs
    return str(Path.home())


def default_export_name(recording: Recording, suffix: str = ".png") -> str:
    """A file name after the model (``rnn-unrolled.png``, ``net.png`` for ``net.py:build``)."""
    target = str(getattr(recording, "target", "") or "graph")
    stem = Path(target.split(":", 1)[0]).stem if target.endswith(".py") or ".py:" in target else target
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "graph"
    return stem + suffix


class _ExportWorker(QObject):
    """Runs one export off the GUI thread and reports back through signals."""

    progressed = Signal(float, str)
    done = Signal(str)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, rec: Recording, path: str, options: dict):
        super().__init__()
        self.rec, self.path, self.options = rec, path, options
        self.cancel_event = threading.Event()

    def run(self) -> None:
        try:
            out = export(self.rec, self.path, progress=lambda f, m: self.progressed.emit(f, m),
                         cancel=self.cancel_event.is_set, **self.options)
        except Cancelled:
            self.cancelled.emit()
        except GradvizError as exc:
            self.failed.emit(exc.format())
        except Exception as exc:  # noqa: BLE001 - shown in the dialog, never a crash of the app
            self.failed.emit(f"error: {type(exc).__name__}: {exc}")
        else:
            self.done.emit(str(out))


class QtExportDialog(QDialog):
    """Export the recording: format from the extension, step or phase, layout, theme, scale, region.

    Runs the export in a worker thread with a progress bar; Cancel stops it and leaves no file.

    Parameters
    ----------
    recording : Recording
    stepper : Stepper, optional
        The app's stepper: its current step is the default.
    graph_view : optional
        The app's graph view: offers "visible part" through its ``visible_rect()``, and its layout.
    parent : QWidget, optional
    checks : CheckTable, optional
        Stored with the recording when the export is a ``.gradviz`` file (the app gives its session's).
    settings : QSettings, optional
        Where the folder used last is kept (the app gives its own; the user's settings by default).

    Signals
    -------
    export_finished(str)
        The path written.
    export_failed(str)
        The message shown.
    export_cancelled()
    """

    export_finished = Signal(str)
    export_failed = Signal(str)
    export_cancelled = Signal()

    WHEN = ("current step", "step", "start of forward", "start of backward", "end")
    TEXTS = WHEN + ("Export", "Browse…", "File", "Format", "Show", "Step", "Layout", "Theme", "Scale", "Region",
                    "whole graph", "whole graph in one large image", "visible part", "exporting…", "cancelling…", "wrote",
                    "cancelled: no file was written", "Close", "Open folder", "Export {name}", "legible")  # translation table

    def __init__(self, recording: Recording, stepper: Stepper | None = None, graph_view: Any = None,
                 parent: QWidget | None = None, checks: Any = None, settings: QSettings | None = None):
        super().__init__(parent)
        self.setWindowTitle(tr("Export"))
        self.rec, self.stepper, self.graph_view = recording, stepper, graph_view
        self.checks = checks  # a CheckTable stored with a .gradviz export (the window's session's checks)
        self.settings = settings if settings is not None else QSettings("gradviz", "gradviz")
        self.written: str | None = None  # the last file written
        self._thread: QThread | None = None
        self._worker: _ExportWorker | None = None
        from ..core.timeline import Timeline

        self._steps = len(stepper.timeline) if stepper is not None else len(Timeline(recording))

        # the folder used last, else documents, else home: never the current folder (a repository, say)
        self.path_edit = QLineEdit(os.path.join(default_export_dir(self.settings), default_export_name(recording)))
        browse = QPushButton(tr("Browse…"))
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        self.format_label = QLabel()
        self.when_combo = QComboBox()
        for key in (self.WHEN if stepper is not None else self.WHEN[1:]):
            self.when_combo.addItem(tr(key), key)
        self.step_spin = QSpinBox()
        self.step_spin.setRange(0, self._steps - 1)
        self.step_spin.setValue(stepper.index if stepper is not None else self._steps - 1)
        self.layout_combo = QComboBox()
        self.layout_combo.addItems(LAYOUTS)
        layout = getattr(graph_view, "direction", None)
        if isinstance(layout, str) and layout in LAYOUTS:
            self.layout_combo.setCurrentText(layout)
        self.theme_combo = QComboBox()
        self.theme_combo.addItems(list(THEMES))
        theme = getattr(graph_view, "theme_name", None)
        if isinstance(theme, str) and theme in THEMES:
            self.theme_combo.setCurrentText(theme)
        self.scale_spin = QDoubleSpinBox()
        self.scale_spin.setRange(0.0, 16.0)  # 0 reads "legible": the exporter chooses (gradviz.core.pages)
        self.scale_spin.setSpecialValueText(tr("legible"))
        self.scale_spin.setSingleStep(0.5)
        self.scale_spin.setValue(0.0)
        self.region_combo = QComboBox()
        self.region_combo.addItem(tr("whole graph"), "whole")  # a legible part when the whole is too big
        # the whole graph legible in one image: long chains folded to fit a square, up to 16,384 px a side
        self.region_combo.addItem(tr("whole graph in one large image"), "whole-one")
        if graph_view is not None and hasattr(graph_view, "visible_rect"):
            self.region_combo.addItem(tr("visible part"), "visible")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.status = QLabel()
        self.status.setWordWrap(True)

        form = QFormLayout()
        for label, field in (("File", row), ("Format", self.format_label), ("Show", self.when_combo),
                             ("Step", self.step_spin), ("Layout", self.layout_combo), ("Theme", self.theme_combo),
                             ("Scale", self.scale_spin), ("Region", self.region_combo)):
            form.addRow(tr(label), field)
        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton(tr("Export"), QDialogButtonBox.ButtonRole.AcceptRole)
        self.open_folder_button = self.buttons.addButton(tr("Open folder"), QDialogButtonBox.ButtonRole.ActionRole)
        self.open_folder_button.hide()  # offered once a file is written
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.export_button.clicked.connect(self.start_export)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_folder_button.clicked.connect(self.open_folder)
        box = QVBoxLayout(self)
        box.addLayout(form)
        box.addWidget(self.progress)
        box.addWidget(self.status)
        box.addWidget(self.buttons)
        self.path_edit.textChanged.connect(self._update)
        self.when_combo.currentIndexChanged.connect(self._update)
        self._update()

    # -- state ---------------------------------------------------------------------------------
    def _update(self) -> None:
        suffix = Path(self.path_edit.text()).suffix.lower()
        found = exporters().get(suffix)
        self.format_label.setText(found.description if found else
                                  f"no exporter for {suffix or 'a name without extension'!r} "
                                  f"(use {', '.join(exporters())})")
        self.export_button.setEnabled(found is not None and self._thread is None)
        # the button says what will be written: "Export rnn-unrolled.png"
        name = Path(self.path_edit.text()).name
        self.export_button.setText(tr("Export {name}", name=name) if found is not None and name else tr("Export"))
        self.export_button.setToolTip(self.path_edit.text())
        if self.written is not None and self.path_edit.text() != self.written:
            self._show_done(False)  # another file: Cancel again until it is written
        self.step_spin.setEnabled(self.when_combo.currentData() == "step")
        is_image = suffix in (".png", ".svg", ".pdf", ".gif")
        for w in (self.layout_combo, self.theme_combo, self.region_combo):
            w.setEnabled(is_image or (w is not self.region_combo and suffix in (".dot",)))
        self.scale_spin.setEnabled(is_image)

    def _browse(self) -> None:
        filters = ";;".join(f"{e.description} (*{s})" for s, e in exporters().items())
        path, _ = QFileDialog.getSaveFileName(self, tr("Export"), self.path_edit.text(), filters)
        if path:
            self.path_edit.setText(path)

    def export_options(self) -> dict:
        """The options the dialog's fields give, as keyword arguments of `export`."""
        when = self.when_combo.currentData()
        out: dict[str, Any] = {"layout": self.layout_combo.currentText(), "theme": self.theme_combo.currentText(),
                               "scale": self.scale_spin.value() or None}  # None: a legible scale, chosen
        if when == "current step" and self.stepper is not None:
            out["step"] = self.stepper.index
        elif when == "step":
            out["step"] = self.step_spin.value()
        elif when.startswith("start of "):
            out["phase"] = when.split()[-1]
        else:
            out["phase"] = "end"
        view = self.graph_view
        if view is not None:
            if self.region_combo.currentData() == "visible":
                out["region"] = QRectF(view.visible_rect())
            # drawn as the app shows it: folded uses when the view folds them, its layout reused
            out["rolled"] = bool(getattr(view, "rolled", False))
            if getattr(view, "layout_", None) is not None:
                out["precomputed"] = view.layout_
        if self.region_combo.currentData() == "whole-one":
            out["whole"] = True  # folded to fit a square, not the view's layout
            out.pop("precomputed", None)
        if self.checks is not None:
            out["checks"] = self.checks  # kept by a .gradviz file, ignored by the other formats
        return out

    @property
    def running(self) -> bool:
        return self._thread is not None

    # -- running -------------------------------------------------------------------------------
    def start_export(self) -> None:
        """Start the export in a worker thread (the Export button)."""
        if self._thread is not None:
            return
        self._show_done(False)
        ensure_app()
        path = self.path_edit.text().strip()
        try:
            options = self.export_options()
        except GradvizError as exc:
            self._failed(exc.format())
            return
        self._notes: list[str] = []
        self.progress.setValue(0)
        self.status.setText(tr("exporting…"))
        self._thread = QThread(self)
        self._worker = _ExportWorker(self.rec, path, options)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progressed.connect(self._progressed)
        self._worker.done.connect(self._done)
        self._worker.failed.connect(self._failed)
        self._worker.cancelled.connect(self._cancelled)
        self._thread.start()
        self._update()

    def cancel(self) -> None:
        """Cancel the running export, or close the dialog when none runs."""
        if self._worker is not None and self._thread is not None:
            self._worker.cancel_event.set()
            self.status.setText(tr("cancelling…"))
        else:
            self.reject()

    def _progressed(self, fraction: float, message: str) -> None:
        if fraction < 0:
            self._notes.append(message)
            self.status.setText("\n".join(self._notes))
        else:
            self.progress.setValue(int(fraction * 1000))

    def _finish(self) -> None:
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
            self._thread.deleteLater()
        if self._worker is not None:
            self._worker.deleteLater()
        self._thread = self._worker = None
        self._update()

    def _done(self, path: str) -> None:
        self._finish()
        self.progress.setValue(1000)
        self.status.setText("\n".join(self._notes + [f"{tr('wrote')} {path}"]))
        self.written = self.path_edit.text()
        self.settings.setValue("export_dir", str(Path(path).resolve().parent))
        self._show_done(True)
        self.export_finished.emit(path)

    def _show_done(self, done: bool) -> None:
        """After a file is written: Cancel becomes Close and Open folder is offered (and back for another)."""
        self.cancel_button.setText(tr("Close") if done else tr("Cancel"))
        self.open_folder_button.setVisible(done)
        if not done:
            self.written = None

    def folder(self) -> str:
        """The folder of the file to write (the one Open folder opens)."""
        return str(Path(self.path_edit.text()).expanduser().resolve().parent)

    def open_folder(self) -> None:
        """Open the folder of the written file in the desktop's file manager."""
        QDesktopServices.openUrl(QUrl.fromLocalFile(self.folder()))

    def _failed(self, message: str) -> None:
        self._finish()
        self.status.setText(message)
        self.export_failed.emit(message)

    def _cancelled(self) -> None:
        self._finish()
        self.progress.setValue(0)
        self.status.setText(tr("cancelled: no file was written"))
        self.export_cancelled.emit()

    def reject(self) -> None:  # noqa: D102 - closing while an export runs cancels it
        if self._worker is not None:
            # never wait here: the worker may be waiting for this (GUI) thread to draw a frame. It stops
            # at its next check, and its `cancelled` signal cleans up.
            self._worker.cancel_event.set()
        super().reject()
