"""The main window and ``run_app``: the graph in the centre, panels in docks, menus and shortcuts.

Every user action is a method of `QtMainWindow` (``open_target``, ``step_to``, ``select_node``,
``run_checks``, ``set_theme`` ...) listed in ``QtMainWindow.commands``, so a script, a test or the command
line can drive the window exactly as the menus do.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Callable

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QFont, QKeySequence
from PySide6.QtWidgets import (QApplication, QDockWidget, QFileDialog, QFrame, QHBoxLayout, QLabel, QLineEdit,
                               QMainWindow, QMessageBox, QPushButton, QScrollArea, QStyle, QVBoxLayout, QWidget)

from gradviz.core.layout import layered_layout
from gradviz.core.timeline import Stepper, Timeline

from . import gc_guard, i18n
from .graph_view import QtGraphView
from .i18n import tr
from .panels import (QtAccumulation, QtChecksPanel, QtEventList, QtGradientFlow, QtInspector, QtModelPanel,
                     QtTransport)
from .theme import get_theme, theme_names
from .workers import QtTask

__all__ = ["QtMainWindow", "run_app", "build_window", "DEFAULT_MODEL", "ASYNC_LAYOUT_NODES"]

DEFAULT_MODEL = "repeated-layer"
ASYNC_LAYOUT_NODES = 2000  # graphs larger than this are laid out again in a worker


def _stylesheet(theme: str) -> str:
    th = get_theme(theme)
    if theme == "light":
        base = ""
    else:
        base = (f"QWidget {{ background: {th['background']}; color: {th['text']}; }}"
                f"QLineEdit, QComboBox, QSpinBox, QDoubleSpinBox, QTableWidget, QListView, QScrollArea "
                f"{{ background: #262932; color: {th['text']}; }}"
                f"QHeaderView::section {{ background: #2b2e36; color: {th['text']}; }}"
                f"QMenuBar, QMenu {{ background: #262932; color: {th['text']}; }}"
                f"QMenu::item:selected, QMenuBar::item:selected {{ background: #3b4050; }}"
                f"QPushButton, QToolButton {{ background: #2f333d; color: {th['text']}; border: 1px solid #454955;"
                f" padding: 3px 8px; border-radius: 4px; }}"
                f"QDockWidget::title {{ background: #2b2e36; padding: 4px; }}")
    return base + (f"#errorBanner {{ background: {th['error_bg']}; border: 1px solid {th['error_fg']}; "
                   f"border-radius: 4px; }} #errorBanner QLabel {{ color: {th['error_fg']}; background: transparent; }}")


class QtMainWindow(QMainWindow):
    """The gradviz window.

    Parameters
    ----------
    settings : QSettings, optional
        Where the window layout, last model, theme and language are kept (the user's settings by default).
    """

    def __init__(self, settings: QSettings | None = None, parent=None):
        super().__init__(parent)
        # cyclic garbage is collected in this thread only while the window lives (gc_guard)
        gc_guard.acquire()
        self._gc_released = False
        self.settings = settings if settings is not None else QSettings("gradviz", "gradviz")
        theme = str(self.settings.value("theme", "light"))
        self.theme = theme if theme in theme_names() else "light"
        lang = str(self.settings.value("language", "en"))
        if lang in i18n.LANGUAGES:
            i18n.set_language(lang)
        self.recording = None
        self.timeline: Timeline | None = None
        self.stepper: Stepper | None = None
        self.check_table = None
        self.target: str | None = None
        self.params: dict = {}
        self.last_error: str = ""
        self._tasks: set[QtTask] = set()
        self._record_task: QtTask | None = None
        self._checks_task: QtTask | None = None
        self._layout_task: QtTask | None = None
        self._texts: list[tuple[Callable[[str], None], str]] = []
        self._shown_leaf_arrived = None
        self.setWindowTitle("gradviz")
        self.setObjectName("gradvizMainWindow")
        # before any dock exists: a style sheet set later makes Qt leave a stale dock tab bar on screen
        self.setStyleSheet(_stylesheet(self.theme))

        # centre: error banner, search bar, graph, transport
        self.graph = QtGraphView(theme=self.theme,
                                 layout=str(self.settings.value("direction", "lr")),
                                 rolled=self.settings.value("rolled", False, type=bool))
        self.graph.node_clicked.connect(self._on_node_clicked)
        self.graph.node_activated.connect(self._on_node_activated)
        central = QWidget()
        vbox = QVBoxLayout(central)
        vbox.setContentsMargins(4, 4, 4, 0)
        vbox.setSpacing(3)
        self.banner = QFrame()
        self.banner.setObjectName("errorBanner")
        bl = QHBoxLayout(self.banner)
        self.banner_label = QLabel("")
        self.banner_label.setWordWrap(True)
        self.banner_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bl.addWidget(self.banner_label, 1)
        self.banner_close = QPushButton(tr("Dismiss"))
        self.banner_close.clicked.connect(self.clear_error)
        bl.addWidget(self.banner_close, 0, Qt.AlignmentFlag.AlignTop)
        self.banner.hide()
        vbox.addWidget(self.banner)
        self.search = QLineEdit()
        self.search.setPlaceholderText(tr("Find node…") + " (Enter)")
        self.search.returnPressed.connect(lambda: self.find_node(self.search.text()))
        self.search.setClearButtonEnabled(True)
        self.search.hide()
        vbox.addWidget(self.search)
        vbox.addWidget(self.graph, 1)
        self._make_actions()
        self.transport = QtTransport(self.actions_)
        self.transport.step_requested.connect(self.step_to)
        self.transport.speed.currentIndexChanged.connect(self._on_speed_changed)
        vbox.addWidget(self.transport)
        self.setCentralWidget(central)

        # docks
        self.model_panel = QtModelPanel()
        self.model_panel.run_requested.connect(self.open_target)
        self.model_panel.open_script_requested.connect(self.open_script)
        self.model_panel.cancel_requested.connect(self.cancel)
        self.events = QtEventList()
        self.events.step_picked.connect(self.step_to)
        self.inspector = QtInspector(theme=self.theme)
        self.accumulation = QtAccumulation(theme=self.theme)
        self.checks = QtChecksPanel(theme=self.theme)
        self.checks.run_requested.connect(self.run_checks)
        self.checks.node_picked.connect(self.select_node)
        self.flow = QtGradientFlow(theme=self.theme)
        self.flow.node_picked.connect(self.select_node)
        self.docks: dict[str, QDockWidget] = {}
        left, right, bottom = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea,
                               Qt.DockWidgetArea.BottomDockWidgetArea)
        model_scroll = QScrollArea()
        model_scroll.setWidgetResizable(True)
        model_scroll.setFrameShape(QFrame.Shape.NoFrame)
        model_scroll.setWidget(self.model_panel)
        self._dock("model", "Model", model_scroll, left)
        self._dock("events", "Events", self.events, left)
        self._dock("inspector", "Inspector", self.inspector, right)
        self._dock("accumulation", "Accumulation", self.accumulation, right)
        self._dock("checks", "Checks", self.checks, bottom)
        self._dock("flow", "Gradient flow", self.flow, bottom)
        self.tabifyDockWidget(self.docks["inspector"], self.docks["accumulation"])
        # checks and gradient flow side by side (tabifying a second group leaves a stale tab bar on screen)
        self.splitDockWidget(self.docks["checks"], self.docks["flow"], Qt.Orientation.Horizontal)
        self._make_menus()
        self.play_timer = QTimer(self)
        self.play_timer.timeout.connect(self._on_play_tick)
        self._latest_state = None
        self._panels_timer = QTimer(self)
        self._panels_timer.setSingleShot(True)
        self._panels_timer.setInterval(40)
        self._panels_timer.timeout.connect(self._flush_panels)
        self.statusBar().showMessage(tr("Ready"))
        self.resize(1440, 900)
        self._sized = False
        geo = self.settings.value("geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        state = self.settings.value("windowState")
        if state is not None:
            self._sized = self.restoreState(state)
        i18n.language_changed.connect(self._on_language_changed)
        self.commands: dict[str, Callable] = {
            "open": self.open_target, "open_script": self.open_script, "open_recording": self.open_recording,
            "export": self.export, "rerun": self.rerun, "cancel": self.cancel,
            "step": self.step_to, "next": self.step_next, "prev": self.step_prev, "first": self.step_first,
            "last": self.step_last, "play": self.toggle_play, "backward": self.jump_backward,
            "select": self.select_node, "find": self.find_node, "fit": self.graph.fit,
            "checks": self.run_checks, "theme": self.set_theme, "language": self.set_language,
            "direction": self.set_direction, "rolled": self.set_rolled,
        }

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not self._sized:
            self._sized = True
            QTimer.singleShot(0, self._default_dock_sizes)

    def _default_dock_sizes(self) -> None:
        """First start: a large graph, side panels of a useful width."""
        self.docks["inspector"].raise_()
        self.resizeDocks([self.docks["model"], self.docks["inspector"]], [250, 340], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["checks"], self.docks["flow"]], [900, 600], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["checks"]], [190], Qt.Orientation.Vertical)
        # (no vertical resizeDocks of the left column: Qt then leaves a stale tab bar of the bottom docks on screen)
        self.graph.fit()

    # -- construction helpers -----------------------------------------------------------------
    def _text(self, setter: Callable[[str], None], english: str) -> None:
        setter(tr(english))
        self._texts.append((setter, english))

    def _dock(self, key: str, title: str, widget: QWidget, area) -> None:
        d = QDockWidget(tr(title), self)
        d.setObjectName(f"dock_{key}")
        d.setWidget(widget)
        self.addDockWidget(area, d)
        self._texts.append((d.setWindowTitle, title))
        self.docks[key] = d

    def _action(self, key: str, text: str, slot: Callable, shortcut=None, checkable: bool = False) -> QAction:
        a = QAction(tr(text), self)
        self._texts.append((a.setText, text))
        if shortcut is not None:
            a.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        a.setCheckable(checkable)
        if checkable:
            a.toggled.connect(slot)
        else:
            a.triggered.connect(lambda checked=False: slot())
        self.addAction(a)
        self.actions_[key] = a
        return a

    def _make_actions(self) -> None:
        self.actions_: dict[str, QAction] = {}
        K = QKeySequence
        self._action("open_script", "Open model script…", self.open_script, K.StandardKey.Open)
        self._action("open_recording", "Open recording…", self.open_recording, "Ctrl+Shift+O")
        self._action("export", "Export…", self.export, "Ctrl+E")
        self._action("quit", "Quit", self.close, K.StandardKey.Quit)
        self._action("first", "Jump to start", self.step_first, "Home")
        self._action("prev", "Step back", self.step_prev, "Left")
        self._action("play", "Play / pause", self.toggle_play, "Space")
        self._action("next", "Step forward", self.step_next, "Right")
        self._action("last", "Jump to end", self.step_last, "End")
        self._action("backward", "Jump to backward", self.jump_backward, "B")
        self._action("fit", "Fit graph", self.graph.fit, "F")
        self._action("zoom_in", "Zoom in", lambda: self.graph.zoom(1.25), K.StandardKey.ZoomIn)
        self._action("zoom_out", "Zoom out", lambda: self.graph.zoom(0.8), K.StandardKey.ZoomOut)
        self._action("find", "Find node…", self._on_find, K.StandardKey.Find)
        self._action("direction", "Top to bottom", lambda on: self.set_direction("tb" if on else "lr"), "T", True)
        self._action("rolled", "Roll reused layers", self.set_rolled, "R", True)
        self._action("follow", "Follow current node", self._on_follow, None, True)
        self._action("rerun", "Re-run", self.rerun, "Ctrl+R")
        self._action("checks", "Run checks", self.run_checks, "Ctrl+K")
        self._action("cancel", "Cancel", self.cancel, "Esc")
        self._action("shortcuts", "Shortcuts", self._on_shortcuts, "F1")
        self._action("about", "About gradviz", self._on_about)
        sp = QStyle.StandardPixmap
        for key, icon in (("first", sp.SP_MediaSkipBackward), ("prev", sp.SP_MediaSeekBackward),
                          ("play", sp.SP_MediaPlay), ("next", sp.SP_MediaSeekForward), ("last", sp.SP_MediaSkipForward)):
            self.actions_[key].setIcon(self.style().standardIcon(icon))
            self.actions_[key].setToolTip(f"{self.actions_[key].text()} ({self.actions_[key].shortcut().toString()})")
        a = self.actions_
        a["direction"].blockSignals(True)
        a["direction"].setChecked(self.graph.direction == "tb")
        a["direction"].blockSignals(False)
        a["rolled"].blockSignals(True)
        a["rolled"].setChecked(self.graph.rolled)
        a["rolled"].blockSignals(False)
        a["follow"].setChecked(True)

    def _make_menus(self) -> None:
        a = self.actions_
        mb = self.menuBar()
        m = mb.addMenu(tr("&File"))
        self._texts.append((m.setTitle, "&File"))
        for k in ("open_script", "open_recording", "export"):
            m.addAction(a[k])
        m.addSeparator()
        m.addAction(a["quit"])
        m = mb.addMenu(tr("&Model"))
        self._texts.append((m.setTitle, "&Model"))
        for k in ("rerun", "cancel", "checks"):
            m.addAction(a[k])
        m = mb.addMenu(tr("&Step"))
        self._texts.append((m.setTitle, "&Step"))
        for k in ("first", "prev", "play", "next", "last", "backward"):
            m.addAction(a[k])
        m = mb.addMenu(tr("&View"))
        self._texts.append((m.setTitle, "&View"))
        for k in ("fit", "zoom_in", "zoom_out", "find", "direction", "rolled", "follow"):
            m.addAction(a[k])
        m.addSeparator()
        tm = m.addMenu(tr("Theme"))
        self._texts.append((tm.setTitle, "Theme"))
        group = QActionGroup(self)
        self.theme_actions = {}
        for name, label in (("light", "Light"), ("dark", "Dark")):
            act = QAction(tr(label), self, checkable=True)
            self._texts.append((act.setText, label))
            act.setChecked(name == self.theme)
            act.triggered.connect(lambda checked=False, n=name: self.set_theme(n))
            group.addAction(act)
            tm.addAction(act)
            self.theme_actions[name] = act
        lm = m.addMenu(tr("Language"))
        self._texts.append((lm.setTitle, "Language"))
        group = QActionGroup(self)
        self.language_actions = {}
        for code, label in i18n.LANGUAGES.items():
            act = QAction(label, self, checkable=True)
            act.setChecked(code == i18n.language())
            act.triggered.connect(lambda checked=False, c=code: self.set_language(c))
            group.addAction(act)
            lm.addAction(act)
            self.language_actions[code] = act
        dm = m.addMenu("Docks")
        for d in self.docks.values():
            dm.addAction(d.toggleViewAction())
        m = mb.addMenu(tr("&Help"))
        self._texts.append((m.setTitle, "&Help"))
        m.addAction(a["shortcuts"])
        m.addAction(a["about"])

    # -- recording ----------------------------------------------------------------------------
    def open_target(self, target: str, params: dict | None = None) -> None:
        """Record `target` (built-in model name or ``file.py[:function]``) with `params`, in a worker.

        A saved recording (``run.gradviz``) is opened instead, without running any model code.
        """
        from gradviz.core.recorder import record

        if str(target).lower().endswith(".gradviz"):
            self.open_recording(str(target))
            return
        if self._record_task is not None:
            self._record_task.cancel()
        params = dict(params or {})
        direction, rolled = self.graph.direction, self.graph.rolled

        def work(progress, cancelled):
            rec = record(target, params=params or None, progress=lambda f, m: progress(0.9 * f, m), cancel=cancelled)
            progress(0.9, tr("Laying out…"))
            timeline = Timeline(rec)
            lay = layered_layout(rec, direction, rolled)
            progress(1.0, "")
            return rec, timeline, lay

        task = QtTask(work, self, name="record")
        self._record_task = task
        task.progressed.connect(self.model_panel.set_progress)
        task.succeeded.connect(lambda result, t=target, p=params: self._on_recorded(task, t, p, result))
        task.failed.connect(lambda msg: self._on_record_failed(task, msg))
        task.cancelled.connect(lambda: self._on_record_cancelled(task))
        self.model_panel.set_running(True)
        self.statusBar().showMessage(f"{tr('Recording…')} {target}")
        self._start(task)

    def _start(self, task: QtTask) -> None:
        self._tasks.add(task)
        task.finished.connect(lambda: self._tasks.discard(task))
        task.finished.connect(task.deleteLater)
        task.start()

    def _on_recorded(self, task: QtTask, target: str, params: dict, result) -> None:
        if task is not self._record_task:
            return
        self._record_task = None
        self.model_panel.set_running(False)
        rec, timeline, lay = result
        self.set_recording(rec, timeline, lay)
        self.target, self.params = target, params
        self.model_panel.set_target(target, params)
        self.settings.setValue("last_target", target)
        self.settings.setValue("last_params", json.dumps(params))
        self.clear_error()
        self.statusBar().showMessage(rec.summary())

    def _on_record_failed(self, task: QtTask, message: str) -> None:
        if task is not self._record_task:
            return
        self._record_task = None
        self.model_panel.set_running(False)
        self.show_error(message)

    def _on_record_cancelled(self, task: QtTask) -> None:
        if task is not self._record_task:
            return
        self._record_task = None
        self.model_panel.set_running(False)
        self.statusBar().showMessage(tr("Cancelled"))

    def is_busy(self) -> bool:
        """Whether a recording, layout or check run is in progress."""
        return bool(self._tasks)

    def cancel(self) -> None:
        """Cancel the recording in progress (the window keeps what it showed)."""
        if self._record_task is not None:
            self._record_task.cancel()
            self.model_panel.progress_label.setText(tr("Cancel") + "…")

    def rerun(self) -> None:
        """Record the model again with the parameters in the Model panel."""
        self.model_panel._on_run()

    def set_recording(self, rec, timeline: Timeline | None = None, layout=None) -> None:
        """Show `rec` in every view (a fresh stepper at step 0)."""
        self.stop()
        if self.stepper is not None:
            self.stepper.step_changed.disconnect(self._on_step_changed)
        self.recording = rec
        self.timeline = timeline or Timeline(rec)
        self.stepper = Stepper(self.timeline)
        self.stepper.step_changed.connect(self._on_step_changed)
        self.check_table = None
        self.graph.set_recording(rec, self.stepper, layout)
        self.events.set_timeline(self.timeline)
        self.transport.set_range(len(self.timeline))
        self.accumulation.set_recording(rec)
        self.accumulation.set_state(self.stepper.state)
        self.flow.set_recording(rec)
        self.checks.clear()
        self.inspector.show_node(None, None, None)
        self._on_step_changed(self.stepper.state, None)
        self.setWindowTitle(f"gradviz — {rec.target}")

    # -- stepping -----------------------------------------------------------------------------
    def step_to(self, i: int) -> None:
        """Go to step `i` of the timeline."""
        if self.stepper is not None:
            self.stepper.set_step(i)

    def step_next(self) -> None:
        """One step forward."""
        if self.stepper is not None:
            self.stepper.next()

    def step_prev(self) -> None:
        """One step back."""
        if self.stepper is not None:
            self.stepper.prev()

    def step_first(self) -> None:
        """Jump to the start."""
        if self.stepper is not None:
            self.stepper.first()

    def step_last(self) -> None:
        """Jump to the end of backward."""
        if self.stepper is not None:
            self.stepper.last()

    def jump_backward(self) -> None:
        """Jump to the first backward step."""
        if self.stepper is not None:
            self.stepper.set_step(self.timeline.phase_start("backward"))

    def toggle_play(self) -> None:
        """Play or pause."""
        if self.play_timer.isActive():
            self.stop()
        elif self.stepper is not None:
            if self.stepper.index >= len(self.timeline) - 1:
                self.stepper.first()
            self.play_timer.start(max(1, 1000 // self.transport.steps_per_second()))
            self._play_icon(True)

    def stop(self) -> None:
        """Pause playing."""
        self.play_timer.stop()
        self._play_icon(False)
        self._panels_timer.stop()
        self._flush_panels()

    def _play_icon(self, playing: bool) -> None:
        sp = QStyle.StandardPixmap
        self.actions_["play"].setIcon(self.style().standardIcon(sp.SP_MediaPause if playing else sp.SP_MediaPlay))

    def is_playing(self) -> bool:
        return self.play_timer.isActive()

    def _on_speed_changed(self, _index: int) -> None:
        if self.play_timer.isActive():
            self.play_timer.setInterval(max(1, 1000 // self.transport.steps_per_second()))

    def _on_play_tick(self) -> None:
        if self.stepper is None or self.stepper.index >= len(self.timeline) - 1:
            self.stop()
            return
        self.stepper.next()

    def _on_step_changed(self, state, changed) -> None:
        if self.play_timer.isActive() and changed is not None:
            # playing: the graph follows every step; the other views catch up at most 25 times a second
            self._latest_state = state
            if not self._panels_timer.isActive():
                self._panels_timer.start()
            return
        self._update_panels(state, changed)

    def _flush_panels(self) -> None:
        if self._latest_state is not None and self.stepper is not None:
            self._latest_state = None
            self._update_panels(self.stepper.state, None if self.play_timer.isActive() else ())

    def _update_panels(self, state, changed) -> None:
        """Show `state` in the transport, event list, accumulation, flow marker and inspector."""
        tl = self.timeline
        self.transport.set_state(state, len(tl), state.step.describe(self.recording))
        self.events.set_step(state.step.index)
        self.flow.set_state(state)
        self.accumulation.set_state(state)
        sel = self.inspector.node_id
        if sel is not None and (changed is None or not len(changed) or sel in changed) and state.phase == "backward":
            self.inspector.show_node(self.recording, sel, state, tl)

    # -- selection ----------------------------------------------------------------------------
    def select_node(self, node_id: int | None) -> None:
        """Select node `node_id`: highlight it, inspect it, show its leaf's accumulation."""
        if self.recording is None:
            return
        self.graph.select_node(node_id)
        self.inspector.show_node(self.recording, node_id, self.stepper.state, self.timeline)
        if node_id is not None:
            node = self.recording.nodes[node_id]
            if node.kind == "leaf" and node.leaf:
                self.accumulation.set_leaf(node.leaf)
                self.docks["accumulation"].raise_()
            else:
                self.docks["inspector"].raise_()

    def _on_node_clicked(self, node_id: int) -> None:
        self.select_node(node_id)

    def _on_node_activated(self, node_id: int) -> None:
        """Double-click: jump to the step where the node runs (backward, else forward)."""
        self.select_node(node_id)
        step = self.timeline.step_of(node_id, "backward")
        if step is None:
            step = self.timeline.step_of(node_id, "forward")
        if step is not None:
            self.stepper.set_step(step)

    def find_node(self, text: str) -> int | None:
        """Select the first node whose name, leaf or module contains `text`."""
        nid = self.graph.find(text)
        if nid is None:
            self.statusBar().showMessage(f"{tr('no node matches')}: {text}")
        return nid

    def _on_find(self) -> None:
        self.search.show()
        self.search.setFocus()
        self.search.selectAll()

    def _on_follow(self, on: bool) -> None:
        self.graph.follow = on

    # -- checks -------------------------------------------------------------------------------
    def run_checks(self) -> None:
        """Run the core's checks on the recording, in a worker."""
        from gradviz.core.checks import run_checks

        rec = self.recording
        if rec is None or self._checks_task is not None:
            return
        task = QtTask(lambda progress, cancelled: run_checks(rec, progress=progress), self, name="checks")
        self._checks_task = task
        self.checks.set_running(True)

        def done(table):
            self._checks_task = None
            self.checks.set_running(False)
            if rec is self.recording:
                self.check_table = table
                self.checks.set_table(table, rec)

        def failed(msg):
            self._checks_task = None
            self.checks.set_running(False)
            self.checks.summary.setText(msg.splitlines()[0])
            self.show_error(msg)

        task.succeeded.connect(done)
        task.failed.connect(failed)
        task.cancelled.connect(lambda: failed(tr("Cancelled")))
        self._start(task)

    # -- view options -------------------------------------------------------------------------
    def set_direction(self, direction: str) -> None:
        """Lay the graph out left to right (``"lr"``) or top to bottom (``"tb"``)."""
        self.settings.setValue("direction", direction)
        a = self.actions_["direction"]
        a.blockSignals(True)
        a.setChecked(direction == "tb")
        a.blockSignals(False)
        self._relayout(direction, self.graph.rolled)

    def set_rolled(self, rolled: bool) -> None:
        """Fold every use of a reused layer into one node (True) or unroll them (False)."""
        rolled = bool(rolled)
        self.settings.setValue("rolled", rolled)
        a = self.actions_["rolled"]
        a.blockSignals(True)
        a.setChecked(rolled)
        a.blockSignals(False)
        self._relayout(self.graph.direction, rolled)

    def _relayout(self, direction: str, rolled: bool) -> None:
        rec = self.recording
        if rec is None:
            self.graph.direction, self.graph.rolled = direction, rolled
            return
        if len(rec.nodes) <= ASYNC_LAYOUT_NODES:
            self.graph.relayout(direction, rolled)
            return
        task = QtTask(lambda progress, cancelled: layered_layout(rec, direction, rolled), self, name="layout")
        self._layout_task = task
        self.statusBar().showMessage(tr("Laying out…"))

        def done(lay):
            if task is self._layout_task and rec is self.recording:
                self._layout_task = None
                self.graph.set_layout(lay)
                self.statusBar().showMessage(rec.summary())

        task.succeeded.connect(done)
        task.failed.connect(self.show_error)
        self._start(task)

    def set_theme(self, name: str) -> None:
        """Switch to the light or dark theme."""
        if name not in theme_names():
            raise ValueError(f"unknown theme {name!r}")
        self.theme = name
        self.settings.setValue("theme", name)
        self.setStyleSheet(_stylesheet(name))
        self.graph.set_theme(name)
        for panel in (self.inspector, self.accumulation, self.checks, self.flow):
            panel.theme = name
        self.theme_actions[name].setChecked(True)
        if self.recording is not None:
            self.flow.set_recording(self.recording)
            self.flow.set_state(self.stepper.state)
            self.accumulation._build()
            if self.check_table is not None:
                self.checks.set_table(self.check_table, self.recording)
            if self.inspector.node_id is not None:
                self.inspector.show_node(self.recording, self.inspector.node_id, self.stepper.state, self.timeline)

    def set_language(self, code: str) -> None:
        """Switch the UI language (``"en"`` or ``"zh"``); menus and docks change at once, panels on restart."""
        i18n.set_language(code)
        self.settings.setValue("language", code)
        self.language_actions[code].setChecked(True)

    def _on_language_changed(self, code: str) -> None:
        for setter, english in self._texts:
            setter(tr(english))
        self.banner_close.setText(tr("Dismiss"))
        self.graph._item.labels = [None] * len(self.graph._item.labels)
        self.graph._item.update()
        self.statusBar().showMessage(tr("Restart to apply everywhere."))

    # -- files --------------------------------------------------------------------------------
    def open_script(self, path: str | None = None) -> None:
        """Open a model script (``file.py[:function]``); asks for the file when `path` is None."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, tr("Open model script…"), os.getcwd(), tr("Model scripts (*.py)"))
            if not path:
                return
        self.open_target(path, {})

    def open_recording(self, path: str | None = None) -> None:
        """Open a saved recording (needs ``gradviz.core.storage``)."""
        try:
            from gradviz.core.storage import load_recording
        except ImportError:
            self.show_error(f"{tr('Open recording…')} {tr('not available in this build')}")
            return
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, tr("Open recording…"), os.getcwd(),
                                                  tr("Recordings (*.json *.gradviz *.npz)"))
            if not path:
                return
        task = QtTask(lambda progress, cancelled: load_recording(path), self, name="load")

        def done(rec):
            self.set_recording(rec)
            self.target, self.params = path, {}
            self.clear_error()

        task.succeeded.connect(done)
        task.failed.connect(self.show_error)
        self._start(task)

    def export(self) -> None:
        """Open the export dialog (needs ``gradviz.qt.export``)."""
        try:
            from gradviz.qt.export import QtExportDialog
        except ImportError:
            self.show_error(f"{tr('Export…')} {tr('not available in this build')}")
            return
        if self.recording is None:
            return
        self._export_dialog = QtExportDialog(self.recording, self.stepper, self.graph, self)
        self._export_dialog.open()

    # -- messages -----------------------------------------------------------------------------
    def show_error(self, message: str) -> None:
        """Show `message` in the window's banner (the window keeps what it showed)."""
        self.last_error = message
        self.banner_label.setText(message)
        self.banner.show()
        self.statusBar().showMessage(message.splitlines()[0] if message else "")

    def clear_error(self) -> None:
        self.last_error = ""
        self.banner.hide()

    def _on_shortcuts(self) -> None:
        lines = [f"{a.text().replace('&', '')}: {a.shortcut().toString()}" for a in self.actions_.values()
                 if not a.shortcut().isEmpty()]
        QMessageBox.information(self, tr("Shortcuts"), "\n".join(lines))

    def _on_about(self) -> None:
        from gradviz import __version__

        QMessageBox.about(self, tr("About gradviz"), f"gradviz {__version__}\nSee PyTorch autograd at work.")

    # -- lifetime -----------------------------------------------------------------------------
    def shutdown(self, wait_ms: int = 30000) -> None:
        """Stop playing, cancel running work and wait for the threads to end."""
        self.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            task.wait(wait_ms)
        if not self._gc_released:
            self._gc_released = True
            gc_guard.release()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("windowState", self.saveState())
        self.shutdown()
        if self.stepper is not None:
            self.stepper.step_changed.disconnect(self._on_step_changed)
        i18n.language_changed.disconnect(self._on_language_changed)
        super().closeEvent(event)


def _app() -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("gradviz")
        app.setOrganizationName("gradviz")
    f = QFont("DejaVu Sans")
    f.setFamilies(["DejaVu Sans", "WenQuanYi Micro Hei"])
    f.setPointSize(10)
    app.setFont(f)
    return app


def build_window(target: str | None = None, params: list[str] | dict | None = None,
                 settings: QSettings | None = None) -> QtMainWindow:
    """Make the window and start recording `target` (the last model, else the default); not yet shown."""
    from gradviz.core.targets import parse_params

    _app()
    win = QtMainWindow(settings)
    if target is None:
        target = str(win.settings.value("last_target", DEFAULT_MODEL))
        if params is None:
            try:
                params = json.loads(str(win.settings.value("last_params", "{}")))
            except ValueError:
                params = {}
    if isinstance(params, list):
        params = parse_params(params)
    win.open_target(target, params or {})
    return win


def run_app(target: str | None = None, params: list[str] | None = None) -> int:
    """Open the app on `target` (a built-in model or ``file.py[:function]``; None: the last or default model).

    Parameters
    ----------
    target : str, optional
    params : list of str, optional
        ``"name=value"`` strings, as ``--param`` takes them.

    Returns
    -------
    int
        The exit code.
    """
    app = _app()
    win = build_window(target, params)
    win.show()
    return app.exec()
