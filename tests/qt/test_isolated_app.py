"""The app runs model code in a child process per run: what kills the child is the banner's line, the window
keeps its recording, Cancel and closing the window kill the child (offscreen)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradviz.core.isolate import discard_spare
from gradviz.qt import i18n

from .conftest import open_and_wait

ROOT = Path(__file__).resolve().parents[2]

FAULTY = {
    "segfault": ("import ctypes\ndef build():\n    ctypes.string_at(0)\n", "segmentation fault (SIGSEGV)"),
    "os-exit": ("import os\ndef build():\n    os._exit(0)\n", "did the model call os._exit()"),
    "sys-exit": ("import sys\ndef build():\n    sys.exit(0)\n", "called sys.exit(0)"),
    "endless-loop": ("def build():\n    while True:\n        pass\n", "time limit of 4 s"),
    "memory-hog": ("def build():\n    x = bytearray(8 << 30)\n    return x\n", "limited to 2000 MiB"),
}
LOOP = "def build():\n    while True:\n        pass\n"


@pytest.fixture(scope="module", autouse=True)
def _no_spare_left():
    yield
    discard_spare()


@pytest.fixture
def make_window(qtbot, settings):
    """``make_window(**session_options)``: a shown window on the app's session with those limits."""
    from gradviz.qt.app import QtMainWindow, app_session

    made = []

    def make(**options):
        i18n.set_language("en")
        win = QtMainWindow(app_session(**options), settings=settings)
        qtbot.addWidget(win)
        win.show()
        made.append(win)
        return win

    yield make
    for win in made:
        win.shutdown()


def test_the_app_session_runs_model_code_in_a_child(make_window):
    win = make_window()
    s = win.session
    assert s.options["isolate"] and s.options["timeout"] == 300 and s.options["max_memory_mb"] >= 2048


def test_faulty_model_scripts_become_the_banner_line(qtbot, make_window, tmp_path):
    win = make_window(timeout=4, max_memory_mb=2000)
    open_and_wait(qtbot, win, "sum-xy-plus-z")
    assert win.last_error == "" and win.session.options["isolate"]
    before = win.recording
    for name, (body, words) in FAULTY.items():
        script = tmp_path / f"{name}.py"
        script.write_text(body)
        win.clear_error()
        open_and_wait(qtbot, win, str(script))
        text = win.banner_label.text()
        first = text.splitlines()[0]
        assert win.banner.isVisible() and first.startswith("error: ") and words in first, (name, text)
        assert "Traceback" not in text, (name, text)
        assert win.recording is before and win.session.target == "sum-xy-plus-z", name
        assert not win.model_panel.cancel_button.isVisible(), name
    # the window goes on: a model, its checks (made in the child) and a parameter change
    win.clear_error()
    open_and_wait(qtbot, win, "repeated-layer", {"k": 3})
    assert win.last_error == "" and win.recording is not before
    three = len(win.recording.forward)
    win.run_checks()
    qtbot.waitUntil(lambda: win._checks_task is None, timeout=60000)
    assert win.check_table is not None and win.check_table.ok and win.checks.table.rowCount() > 0
    assert len(win.flow.nodes) == len(win.recording.backward)
    open_and_wait(qtbot, win, "repeated-layer", {"k": 1})
    assert len(win.recording.forward) < three and win.session.params == {"k": 1}
    # Re-run sends the whole form, its empty fields (w) as None: the model's defaults in the child too
    before = win.recording
    win.rerun()
    qtbot.waitUntil(lambda: not win.is_busy(), timeout=120000)
    assert win.last_error == "" and win.recording is not before and win.session.params["w"] is None
    assert len(win.recording.forward) < three


def test_cancel_kills_the_child_of_an_endless_loop(qtbot, make_window, tmp_path):
    win = make_window()
    open_and_wait(qtbot, win, "sum-xy-plus-z")
    before = win.recording
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    win.open_target(str(script), {})
    job = win._record_task.job
    # the child started and is in the model's loop (it reported the forward pass)
    qtbot.waitUntil(lambda: job.pid is not None
                    and win.model_panel.progress_label.text() == "running the forward pass", timeout=120000)
    assert win.model_panel.cancel_button.isVisible()
    pid = job.pid
    os.killpg(pid, 0)
    win.model_panel.cancel_button.click()
    qtbot.waitUntil(lambda: not win.is_busy(), timeout=60000)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert win.recording is before and win.last_error == ""
    assert win.statusBar().currentMessage() == i18n.tr("Cancelled")


CLOSE_MID_RUN = r"""
import sys
from PySide6.QtCore import QSettings, QTimer
from gradviz.qt.app import _app, build_window

app = _app()
win = build_window(sys.argv[1], settings=QSettings(sys.argv[2], QSettings.Format.IniFormat))
win.show()

def close_when_running():
    task = win._record_task
    if task is not None and task.job.pid and win.model_panel.progress_label.text() == "running the forward pass":
        print("pid", task.job.pid, flush=True)
        win.close()
    else:
        QTimer.singleShot(50, close_when_running)

QTimer.singleShot(50, close_when_running)
sys.exit(app.exec())
"""


def test_closing_the_window_mid_run_exits_0_and_kills_the_child(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-c", CLOSE_MID_RUN, str(script), str(tmp_path / "s.ini")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "QThread: Destroyed" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    pid = int(proc.stdout.split()[1])
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_a_lesson_runs_its_model_in_a_child_and_the_window_follows(qtbot, make_window, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_CONFIG_DIR", str(tmp_path / "config"))
    win = make_window()
    dock = win.show_lessons()
    dock.open_lesson("reusing-a-layer", wait=True)
    qtbot.waitUntil(lambda: dock.run is not None, timeout=600000)
    lesson = dock.run.session
    assert lesson.options["isolate"] and lesson.source == "builtin" and not lesson.can_rerun  # made in a child
    ids = [s.id for s in dock.run.steps]
    for step, key, value in (("from-use2", "w", 0.9472), ("three-uses", "k", 3), ("from-use2", "w", 0.9472)):
        dock.go(ids.index(step))  # a step with other parameters: the lesson's recording of them, shown again
        qtbot.waitUntil(lambda: not win.is_busy(), timeout=120000)
        assert win.session.recording is lesson.recording and win.session.recording.params[key] == value
        assert win.session.stepper.index == dock.view.timeline_step and win.session.source == "builtin"
    assert win.last_error == ""
