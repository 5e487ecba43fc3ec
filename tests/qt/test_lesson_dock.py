"""The Lesson dock: it walks a lesson, moves the window's session with it, grades answers, and draws
Chinese text with a CJK font in a real window."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMainWindow

from gradviz.core.session import Session
from gradviz.qt import i18n
from gradviz.qt.lesson_dock import QtLessonDock, matrix_markdown

from .test_xvfb import xvfb  # noqa: F401 - the real X server fixture

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dock(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_CONFIG_DIR", str(tmp_path / "config"))
    i18n.set_language("en")
    win = QMainWindow()
    qtbot.addWidget(win)
    session = Session()
    d = QtLessonDock(session, win)
    win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, d)
    win.resize(1200, 800)
    win.show()
    d.open_lesson("reusing-a-layer", wait=True)
    qtbot.waitUntil(lambda: d.run is not None, timeout=60000)
    yield d
    i18n.set_language("en")


def _step(d, step_id):
    d.go([s.id for s in d.run.steps].index(step_id))


def test_dock_walks_the_lesson_and_moves_the_graph(dock):
    assert dock.view.index == 0 and not dock.back.isEnabled()
    dock.go_next()
    assert dock.view.id == "use1"
    # the window's session followed the lesson to the step's event
    assert dock.view_session.recording is not None
    assert dock.view_session.stepper.index == dock.view.timeline_step
    assert "h_1" not in dock.text.toPlainText()  # the formula is an image, not its source
    _step(dock, "accumulate")
    assert dock.view_session.stepper.index == dock.view.timeline_step
    assert "backward" in dock.text.toPlainText()
    assert dock.bar.value() == dock.view.index + 1 and dock.bar.maximum() == len(dock.run)


def test_prediction_box_grades(dock):
    _step(dock, "accumulate")
    assert dock.answer.isVisibleTo(dock) and not dock.choices.isVisibleTo(dock)
    dock.answer.setText("100")
    dock._on_check()
    assert "✗" in dock.feedback.text() and "150.4865" in dock.feedback.text()
    dock.answer.setText("150.49")
    dock._on_check()
    assert "✓" in dock.feedback.text()
    # the reveal is shown once answered
    assert "150.4865" in dock.text.toPlainText()
    saved = json.loads((Path(os.environ["GRADVIZ_CONFIG_DIR"]) / "lessons.json").read_text())
    assert saved["reusing-a-layer"]["answers"]["accumulate"]["correct"] is True


def test_language_switch_changes_the_whole_dock(dock):
    _step(dock, "accumulate")
    dock._on_language_picked(dock.language.findData("zh"))
    assert i18n.language() == "zh"
    assert "梯度累加" in dock.title.text()
    assert dock.next.text() == "下一步"
    assert "梯度" in dock.text.toPlainText()


def test_matrix_markdown_is_a_table():
    md = matrix_markdown("W", [[1.0, 2.0], [3.0, 4.0]])
    lines = md.splitlines()
    assert lines[0].startswith("| **W** (2, 2)") and lines[1] == "|---|---|---|"
    assert lines[3] == "| 1 | 3.0000 | 4.0000 |"


@pytest.mark.xvfb
def test_dock_in_chinese_on_a_real_x_server_uses_a_cjk_font(xvfb, tmp_path):
    out = tmp_path / "lesson.png"
    env = dict(os.environ, DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", PYTHONPATH=str(ROOT),
               GRADVIZ_CONFIG_DIR=str(tmp_path / "config"))
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "lesson_screenshot.py"), str(out),
                           "reusing-a-layer", "accumulate", "zh"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    # every character shown is in the font the dock draws with, and that font is a CJK one
    assert info["missing"] == "", info
    assert info["cjk"] > 50, info
    assert "梯度累加" in info["chars"] or all(c in info["chars"] for c in "梯度累加")
    assert info["session_step"] == info["timeline_step"]
    img = QImage(str(out))
    assert not img.isNull() and img.width() > 600


def test_help_lessons_opens_the_dock_and_the_window_follows(window, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_CONFIG_DIR", str(tmp_path / "config"))
    window.actions_["lessons"].trigger()
    dock = window.lesson_dock
    assert dock.isVisible()
    dock.open_lesson("reusing-a-layer", wait=True)
    qtbot.waitUntil(lambda: dock.run is not None, timeout=60000)
    _step(dock, "from-use2")
    qtbot.waitUntil(lambda: not window.is_busy(), timeout=60000)
    # the window shows the lesson's run, at the lesson's step
    assert window.session.recording.params["w"] == 0.9472
    assert window.session.stepper.index == dock.view.timeline_step
    _step(dock, "three-uses")  # a step with other parameters: the window re-runs the target
    qtbot.waitUntil(lambda: not window.is_busy(), timeout=60000)
    assert window.session.recording.params["k"] == 3
    assert window.session.stepper.index == dock.view.timeline_step
