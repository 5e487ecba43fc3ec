"""The main window's chrome: its widgets and docks, actions and menus, theme, language and messages.

`QtWindowChrome` is a mixin of `QtMainWindow`: it builds the centre (error banner, search bar, graph,
transport), the panels in their docks, the `QAction` of every command (``actions_``) and the menus, and
keeps the texts that change with the language. It holds no recording state: the window's commands and
the session do that.
"""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QColor, QIcon, QKeySequence, QPainter
from PySide6.QtWidgets import (QDockWidget, QFrame, QHBoxLayout, QLabel, QLineEdit, QMessageBox, QPushButton,
                               QScrollArea, QStyle, QVBoxLayout, QWidget)

from gradviz.core.collapse import auto_block

from . import i18n
from .accumulation import QtAccumulation
from .checks_panel import QtChecksPanel
from .event_list import QtEventList
from .flow_panel import QtGradientFlow
from .graph_view import QtGraphView
from .i18n import tr
from .inspector import QtInspector
from .model_panel import QtFormScroll as _FormScroll, QtModelPanel
from .theme import get_theme, theme_names
from .transport import QtTransport

__all__ = ["QtWindowChrome", "stylesheet"]


def stylesheet(theme: str) -> str:
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


class QtWindowChrome:
    """Widgets, docks, actions and menus of the main window (a mixin: the window is a `QMainWindow`)."""

    def _build_centre(self) -> None:
        """The centre: error banner, search bar, graph, transport."""
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


    def _build_docks(self) -> None:
        """The panels in their docks, and the menus."""
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
        model_scroll = _FormScroll()
        model_scroll.setWidgetResizable(True)
        model_scroll.setFrameShape(QFrame.Shape.NoFrame)
        model_scroll.setWidget(self.model_panel)
        # the form scrolls up and down, never sideways: the dock is at least as wide as the form needs
        model_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
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
        self._english[key] = text
        return a

    def _make_actions(self) -> None:
        self.actions_: dict[str, QAction] = {}
        self._english: dict[str, str] = {}  # each action's English text (its key in the catalogue)
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
        self._action("fit", "Fit graph", self.graph.fit, [K("Ctrl+0"), K("F")])
        self._action("fit_all", "Whole graph", self.graph.fit_all, "Shift+F")
        # Ctrl+= as well as Ctrl++ (no Shift needed), Ctrl+- and the keypad's keys, as in a browser
        self._action("zoom_in", "Zoom in", lambda: self.graph.zoom(1.25),
                     K.keyBindings(K.StandardKey.ZoomIn) + [K("Ctrl+=")])
        self._action("zoom_out", "Zoom out", lambda: self.graph.zoom(0.8),
                     K.keyBindings(K.StandardKey.ZoomOut) + [K("Ctrl+_")])
        self._action("find", "Find node…", self._on_find, K.StandardKey.Find)
        self._action("direction", "Top to bottom", lambda on: self.set_direction("tb" if on else "lr"), "T", True)
        self._action("rolled", "Roll reused layers", self.set_rolled, "R", True)
        self._action("collapsed", "Collapse time steps", self.set_collapsed, "C", True)
        self._action("follow", "Follow current node", self._on_follow, None, True)
        self._action("overview", "Overview", self._on_overview, None, True)
        self._action("rerun", "Re-run", self.rerun, "Ctrl+R")
        self._action("checks", "Run checks", self.run_checks, "Ctrl+K")
        self._action("cancel", "Cancel", self.cancel, "Esc")
        self._action("shortcuts", "Shortcuts", self._on_shortcuts, "F1")
        self._action("about", "About gradviz", self._on_about)
        self._action("lessons", "Lessons", lambda: self.show_lessons())
        sp = QStyle.StandardPixmap
        self._transport_icons = {"first": sp.SP_MediaSkipBackward, "prev": sp.SP_MediaSeekBackward,
                                 "play": sp.SP_MediaPlay, "next": sp.SP_MediaSeekForward, "last": sp.SP_MediaSkipForward}
        self._tint_transport()
        for key in self._transport_icons:
            act = self.actions_[key]
            self._texts.append((lambda text, a=act: a.setToolTip(f"{text} ({a.shortcut().toString()})"),
                                self._english[key]))
            act.setToolTip(f"{act.text()} ({act.shortcut().toString()})")
        a = self.actions_
        a["direction"].blockSignals(True)
        a["direction"].setChecked(self.graph.direction == "tb")
        a["direction"].blockSignals(False)
        a["rolled"].blockSignals(True)
        a["rolled"].setChecked(self.graph.rolled)
        a["rolled"].blockSignals(False)
        a["follow"].setChecked(True)
        a["overview"].setChecked(True)

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
        for k in ("fit", "fit_all", "zoom_in", "zoom_out", "find", "direction", "rolled", "collapsed", "follow",
                  "overview"):
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
        dm = m.addMenu(tr("Docks"))
        self._texts.append((dm.setTitle, "Docks"))
        for d in self.docks.values():
            dm.addAction(d.toggleViewAction())
        m = mb.addMenu(tr("&Help"))
        self._texts.append((m.setTitle, "&Help"))
        m.addAction(a["lessons"])
        m.addAction(a["shortcuts"])
        m.addAction(a["about"])

    def _on_shortcuts(self) -> None:
        lines = [f"{a.text().replace('&', '')}: {a.shortcut().toString()}" for a in self.actions_.values()
                 if not a.shortcut().isEmpty()]
        QMessageBox.information(self, tr("Shortcuts"), "\n".join(lines))

    def _on_about(self) -> None:
        from gradviz import __version__

        QMessageBox.about(self, tr("About gradviz"), f"gradviz {__version__}\nSee PyTorch autograd at work.")

    # -- view options (the window's `_relayout` lays the graph out again) ------------------------
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

    def set_collapsed(self, on: bool) -> None:
        """Draw each block of module uses (time steps) as one box (True; double-click a box to open it in
        place), or every node (False). The block size draws the most used module as about 100 boxes."""
        rec = self.recording
        self.graph.collapse = auto_block(rec) if on and rec is not None else (1 if on else None)
        self.graph.expanded = frozenset()
        a = self.actions_["collapsed"]
        a.blockSignals(True)
        a.setChecked(bool(on))
        a.blockSignals(False)
        self._relayout(self.graph.direction, self.graph.rolled)

    def _on_overview(self, on: bool) -> None:
        """View > Overview: the whole graph in a corner of the view when it does not fit legibly."""
        self.graph.overview.enabled_by_user = bool(on)
        self.graph.overview.follow_view()

    def _tinted(self, pixmap) -> QIcon:
        """Standard icon `pixmap` drawn in the theme's text colour (the style's grey vanishes on dark)."""
        pm = self.style().standardIcon(pixmap).pixmap(64, 64)
        p = QPainter(pm)
        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
        p.fillRect(pm.rect(), QColor(get_theme(self.theme)["text"]))
        p.end()
        return QIcon(pm)

    def _tint_transport(self) -> None:
        for key, pixmap in self._transport_icons.items():
            self.actions_[key].setIcon(self._tinted(pixmap))
        self._play_icon(getattr(self, "play_timer", None) is not None and self.play_timer.isActive())

    def _play_icon(self, playing: bool) -> None:
        sp = QStyle.StandardPixmap
        self.actions_["play"].setIcon(self._tinted(sp.SP_MediaPause if playing else sp.SP_MediaPlay))

    def set_theme(self, name: str) -> None:
        """Switch to the light or dark theme."""
        if name not in theme_names():
            raise ValueError(f"unknown theme {name!r}")
        self.theme = name
        self.settings.setValue("theme", name)
        self.setStyleSheet(stylesheet(name))
        self._tint_transport()  # icons in the theme's text colour: contrast on either background
        self.graph.set_theme(name)
        for panel in (self.inspector, self.checks):
            panel.theme = name
        # every plot restyles at once (their backgrounds and axes are not under the style sheet)
        self.flow.set_theme(name)
        self.accumulation.set_theme(name)
        self.theme_actions[name].setChecked(True)
        if self.recording is not None:
            if self.check_table is not None:
                self.checks.set_table(self.check_table, self.recording)
            if self.inspector.node_id is not None:
                self.inspector.show_node(self.recording, self.inspector.node_id, self.stepper.state, self.timeline)

    def set_language(self, code: str) -> None:
        """Switch the UI language (``"en"`` or ``"zh"``): every menu, dock, panel and caption at once."""
        i18n.set_language(code)
        self.settings.setValue("language", code)
        self.language_actions[code].setChecked(True)

    def _on_language_changed(self, code: str) -> None:
        for setter, english in self._texts:
            setter(tr(english))
        self.banner_close.setText(tr("Dismiss"))
        self.graph._item.labels = [None] * len(self.graph._item.labels)
        self.graph._item.update()
        for panel in (self.flow, self.accumulation, self.checks, self.events, self.transport, self.model_panel):
            panel.retranslate()
        if self.recording is not None:
            self._update_panels(self.stepper.state, None)
            self.inspector.show_node(self.recording, self.inspector.node_id, self.stepper.state, self.timeline)
        else:
            self.inspector.show_node(None, None, None)

    def show_error(self, message: str) -> None:
        """Show `message` in the window's banner (the window keeps what it showed)."""
        self.last_error = message
        self.banner_label.setText(message)
        self.banner.show()
        self.statusBar().showMessage(message.splitlines()[0] if message else "")

    def clear_error(self) -> None:
        self.last_error = ""
        self.banner.hide()
