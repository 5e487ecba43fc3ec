"""The main window and ``run_app``: the graph in the centre, panels in docks, menus and shortcuts.

`QtMainWindow(session)` is a view of a `gradviz.core.session.Session`, as napari's ``QtDims(dims)`` is
of ``Dims``: the session holds the target, parameters, recording, timeline, stepper and checks; the
window lays out docks and actions, subscribes to the session's signals and turns user actions into the
session's commands (long ones as jobs in a `QtJob` worker). The app's session runs model code in a child
process per run (`app_session`: ``isolate`` with a time and memory limit, a warm spare child), so a crash,
an exit, an endless loop or a memory hog in the model becomes the banner's line and Cancel kills the child. Every user action is a method of
`QtMainWindow` (``open_target``, ``step_to``, ``select_node``, ``run_checks``, ``set_theme`` ...) listed
in ``QtMainWindow.commands``, so a script, a test or the command line can drive the window exactly as
the menus do.

The window is put together from mixins, one idea each: `QtWindowChrome` (``actions.py``: widgets, docks,
actions, menus, theme and language), `QtPlayback` (``playback.py``: stepping and playing, the panels
following the step) and `QtWindowJobs` (``window_jobs.py``: open, checks and layout in workers, cancel).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Callable

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QApplication, QFileDialog, QMainWindow

from gradviz.core.session import Session
from gradviz.core.storage import open_patterns
from gradviz.core.timeline import Timeline

from . import gc_guard, i18n
from .actions import QtWindowChrome, stylesheet
from .i18n import tr
from .playback import QtPlayback
from .theme import theme_names
from .window_jobs import QtWindowJobs

__all__ = ["QtMainWindow", "run_app", "build_window", "app_session", "DEFAULT_MODEL"]

DEFAULT_MODEL = "repeated-layer"
AUTO_CHECK_NODES = 5000  # recordings up to this size are checked as soon as they open (larger: Run checks)


def app_session(**options) -> Session:
    """The app's `Session`: model code in a child process per run, with the app's limits.

    ``timeout`` is `gradviz.core.isolate.APP_TIMEOUT_S` (300 s) and ``max_memory_mb`` half the RAM
    (`gradviz.core.isolate.app_max_memory_mb`) unless given; the next run's child waits started (``warm``);
    the child checks what it recorded up to `AUTO_CHECK_NODES` nodes, the ones the window shows at once.
    """
    from gradviz.core.isolate import APP_TIMEOUT_S, app_max_memory_mb

    defaults = {"isolate": True, "timeout": APP_TIMEOUT_S, "max_memory_mb": app_max_memory_mb(), "warm": True,
                "checks_max_nodes": AUTO_CHECK_NODES}
    return Session(**{**defaults, **options})


class QtMainWindow(QtWindowChrome, QtPlayback, QtWindowJobs, QMainWindow):
    """The gradviz window: a view of a `Session`.

    Parameters
    ----------
    session : Session, optional
        What the window shows and drives (by default `app_session()`: model code in a child process). For
        older callers a `QSettings` given here is taken as `settings`.
    settings : QSettings, optional
        Where the window layout, last model, theme and language are kept (the user's settings by default).
    """

    def __init__(self, session: Session | None = None, settings: QSettings | None = None, parent=None):
        if isinstance(session, QSettings):  # QtMainWindow(settings), as before the Session
            session, settings = None, session
        super().__init__(parent)
        self.session = session if session is not None else app_session()
        # cyclic garbage is collected in this thread only while the window lives (gc_guard)
        gc_guard.acquire()
        self._gc_released = False
        self.settings = settings if settings is not None else QSettings("gradviz", "gradviz")
        theme = str(self.settings.value("theme", "light"))
        self.theme = theme if theme in theme_names() else "light"
        # on first start the app speaks the system's language (LANG=zh_CN.UTF-8: Chinese); then the View choice
        lang = str(self.settings.value("language", i18n.system_language()))
        if lang in i18n.LANGUAGES:
            i18n.set_language(lang)
        self.last_error: str = ""
        self._pinned = False
        self._init_jobs()
        self._layout_for_next = None  # (recording, layout) made by the record worker, until `recorded`
        self._texts: list[tuple[Callable[[str], None], str]] = []
        self._shown_leaf_arrived = None
        self.setWindowTitle("gradviz")
        self.setObjectName("gradvizMainWindow")
        # before any dock exists: a style sheet set later makes Qt leave a stale dock tab bar on screen
        self.setStyleSheet(stylesheet(self.theme))
        self._build_centre()
        self._build_docks()
        self._init_playback()
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
        self._subscriptions = ((self.session.recorded, self._on_recorded),
                               (self.session.step_changed, self._on_step_changed),
                               (self.session.checks_done, self._on_checks_done),
                               (self.session.failed, self.show_error),
                               (self.session.cancelled, self._on_cancelled))
        for signal, slot in self._subscriptions:
            signal.connect(slot)
        if self.session.recording is not None:
            self._on_recorded(self.session.recording)
            if self.session.checks is not None:
                self._on_checks_done(self.session.checks)
        self.commands: dict[str, Callable] = {
            "open": self.open_target, "open_script": self.open_script, "open_recording": self.open_recording,
            "export": self.export, "rerun": self.rerun, "cancel": self.cancel,
            "step": self.step_to, "next": self.step_next, "prev": self.step_prev, "first": self.step_first,
            "last": self.step_last, "play": self.toggle_play, "backward": self.jump_backward,
            "select": self.select_node, "find": self.find_node, "fit": self.graph.fit,
            "checks": self.run_checks, "theme": self.set_theme, "language": self.set_language,
            "direction": self.set_direction, "rolled": self.set_rolled,
        }

    # -- the session's state, shown (the window keeps none of its own) ----------------------
    @property
    def recording(self):
        """The session's recording (None before the first one)."""
        return self.session.recording

    @property
    def timeline(self) -> Timeline | None:
        return self.session.timeline

    @property
    def stepper(self):
        return self.session.stepper

    @property
    def check_table(self):
        """The session's check table (stored with a file, or from the last run)."""
        return self.session.checks

    @property
    def target(self):
        return self.session.target

    @property
    def params(self) -> dict:
        return self.session.params

    # -- recording (the open job itself: QtWindowJobs) -----------------------------------------
    def _on_recorded(self, rec) -> None:
        """The session has a new recording: show it in every view, at step 0."""
        made, self._layout_for_next = self._layout_for_next, None
        if self._record_task is not None and self._record_task.extra is not None:
            made = self._record_task.extra  # laid out by the worker that recorded it
        self.stop()
        s = self.session
        self.graph.collapse = None  # a new recording opens node by node (View > Collapse time steps again)
        collapsed = self.actions_.get("collapsed") if hasattr(self, "actions_") else None
        if collapsed is not None:
            collapsed.blockSignals(True)
            collapsed.setChecked(False)
            collapsed.blockSignals(False)
        self.graph.set_recording(rec, s.stepper, made[1] if made is not None and made[0] is rec else None)
        self.events.set_timeline(s.timeline)
        self.transport.set_range(len(s.timeline))
        self.accumulation.set_recording(rec)
        self.accumulation.set_state(s.state)
        self.flow.set_flow(s.flow())
        self.checks.clear()
        if s.checks is None and len(rec.nodes) <= AUTO_CHECK_NODES:
            # the checks run on opening, in a worker: the Checks dock shows results, not "not run yet"
            self._check_on_open(rec)
        self.inspector.show_node(None, None, None)
        self._on_step_changed(s.state, None)
        self.setWindowTitle(f"gradviz — {rec.target}")
        if s.source != "file":
            self.model_panel.backends = s.backends
            self.model_panel.set_target(s.target, s.params)
            self.settings.setValue("last_target", s.target)
            self.settings.setValue("last_params", json.dumps(s.params))
        self.clear_error()
        self.statusBar().showMessage(rec.summary())

    def _on_cancelled(self) -> None:
        self.statusBar().showMessage(tr("Cancelled"))

    def rerun(self) -> None:
        """Record the model again with the parameters in the Model panel."""
        self.model_panel._on_run()

    def set_recording(self, rec, timeline: Timeline | None = None, layout=None) -> None:
        """Show `rec`, recorded elsewhere, in every view (the session takes it, at step 0)."""
        self._layout_for_next = None if layout is None else (rec, layout)
        self.session.set_recording(rec, timeline)

    # -- selection ----------------------------------------------------------------------------
    def select_node(self, node_id: int | None) -> None:
        """Select node `node_id`: highlight it, inspect it, show its leaf's accumulation."""
        if self.recording is None:
            return
        self.graph.select_node(node_id)
        self._pinned = node_id is not None  # a node the user picked stays in the Inspector while stepping
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
        self.session.go_to(node_id, "backward")

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

    # -- checks ----------------------------------------------------------------------------
    def _on_checks_done(self, table) -> None:
        self.checks.set_table(table, self.recording)

    # -- files --------------------------------------------------------------------------------
    def open_script(self, path: str | None = None) -> None:
        """Open a model script (``file.py[:function]``); asks for the file when `path` is None."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, tr("Open model script…"), os.getcwd(), tr("Model scripts (*.py)"))
            if not path:
                return
        self.open_target(path, {})

    def open_recording(self, path: str | None = None) -> None:
        """Open a saved recording (``.gradviz``); asks for the file when `path` is None."""
        if path is None:
            # offer exactly the files the loader opens
            path, _ = QFileDialog.getOpenFileName(self, tr("Open recording…"), os.getcwd(),
                                                  f"{tr('Recordings')} ({' '.join(open_patterns())})")
            if not path:
                return
        self.open_target(str(path), {})

    def export(self) -> None:
        """Open the export dialog (needs ``gradviz.qt.export``)."""
        try:
            from gradviz.qt.export_dialog import QtExportDialog
        except ImportError:
            self.show_error(f"{tr('Export…')} {tr('not available in this build')}")
            return
        if self.recording is None:
            return
        self._export_dialog = QtExportDialog(self.recording, self.stepper, self.graph, self, checks=self.check_table,
                                             settings=self.settings)
        self._export_dialog.open()

    def show_lessons(self, name: str | None = None):
        """Open the Lesson dock (Help > Lessons, ``gradviz app --lesson NAME``), on lesson `name` if given."""
        from .lesson_dock import QtLessonDock  # imported on first use: it reads the lessons

        dock = getattr(self, "lesson_dock", None)
        if dock is None:
            dock = self.lesson_dock = QtLessonDock.attach(self)
        dock.show()
        QTimer.singleShot(0, dock.raise_)  # once its tab exists: the lesson in front
        if name:
            dock.open_lesson(name)
        return dock

    # -- lifetime -----------------------------------------------------------------------------
    def shutdown(self, wait_ms: int = 30000) -> None:
        """Stop playing, cancel running work and wait for the threads to end (a run's child is killed at
        once, so its thread ends within a fraction of a second)."""
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
        for signal, slot in self._subscriptions:
            signal.disconnect(slot)
        i18n.language_changed.disconnect(self._on_language_changed)
        super().closeEvent(event)


def _app() -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("gradviz")
        app.setOrganizationName("gradviz")
    # the system font's size (10 pt at the least), in DejaVu Sans with a CJK fallback: text scales with it
    system = QApplication.font()
    f = QFont("DejaVu Sans")
    f.setFamilies(["DejaVu Sans", "WenQuanYi Micro Hei"])
    if system.pointSizeF() > 0:
        f.setPointSizeF(max(10.0, system.pointSizeF()))
    else:
        f.setPixelSize(max(13, system.pixelSize()))
    app.setFont(f)
    return app


def build_window(target: str | None = None, params: list[str] | dict | None = None,
                 settings: QSettings | None = None, session: Session | None = None) -> QtMainWindow:
    """Make the window on `session` (`app_session()` by default) and start opening `target` (the last model, else
    the default) in a worker; not yet shown."""
    from gradviz.core.targets import parse_params

    _app()
    win = QtMainWindow(session if session is not None else app_session(), settings=settings)
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


def run_app(target: str | None = None, params: list[str] | None = None, session: Session | None = None,
            lesson: str | None = None) -> int:
    """Open the app on `target` (a built-in model or ``file.py[:function]``; None: the last or default model).

    Parameters
    ----------
    target : str, optional
    params : list of str, optional
        ``"name=value"`` strings, as ``--param`` takes them.
    session : Session, optional
        The session the window shows and drives (the command line passes its recording options and limits
        in it); `app_session()` by default.
    lesson : str, optional
        A lesson to open in the Lesson dock (its name or folder); the window follows its steps.

    Returns
    -------
    int
        The exit code.
    """
    app = _app()
    win = build_window(target, params, session=session)
    win.show()
    if lesson:
        win.show_lessons(lesson)
    return app.exec()
