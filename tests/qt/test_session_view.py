"""QtMainWindow is a view of a Session: it shows the steps and checks a Session without Qt computes, keeps
no recording state of its own, and runs the session's jobs off the GUI thread."""
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gradviz.core.checks import CheckTable
from gradviz.core.flow import GradientFlow
from gradviz.core.recording import Recording
from gradviz.core.session import Session
from gradviz.core.timeline import Stepper, StepState, Timeline

from .conftest import open_and_wait

ROOT = Path(__file__).resolve().parents[2]

HEADLESS = """
import json, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from gradviz.core.session import Session
s = Session()
s.open(sys.argv[1], json.loads(sys.argv[2]))
table = s.run_checks()
steps = [f"{st.index:>4}  {st.describe(s.recording)}" for st in s.timeline.steps]
checks = [[r.kind, r.what, r.reference, r.tolerance, r.status] for r in table.rows]
assert not [m for m in sys.modules if m.startswith("PySide6")]
print(json.dumps({"steps": steps, "checks": checks, "flow": [x.node for x in s.flow().steps]}))
"""


def _headless(target: str, params: dict) -> dict:
    """Steps and checks of `target` from a Session in a process where PySide6 cannot be imported."""
    p = subprocess.run([sys.executable, "-c", HEADLESS, target, json.dumps(params)], capture_output=True, text=True,
                       timeout=600, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("target, params", [("repeated-layer", {"k": 3}), ("rnn-unrolled", {"T": 4})])
def test_the_window_shows_the_steps_and_checks_of_a_session_without_qt(qtbot, window, target, params):
    expected = _headless(target, params)
    open_and_wait(qtbot, window, target, params)
    window.run_checks()
    qtbot.waitUntil(lambda: window.check_table is not None and not window.is_busy(), timeout=120000)
    model = window.events.model()
    shown_steps = [model.data(model.index(i)) for i in range(model.rowCount())]
    assert shown_steps == expected["steps"]
    t = window.checks.table
    cols = [window.checks.COLUMNS.index(c) for c in ("check", "what", "reference", "tolerance", "result")]
    shown_checks = [[t.item(i, j).text() for j in cols] for i in range(t.rowCount())]
    assert shown_checks == expected["checks"]
    assert [int(n) for n in window.flow.nodes] == expected["flow"]


def test_the_window_keeps_no_recording_state_of_its_own(qtbot, window):
    open_and_wait(qtbot, window, "repeated-layer")
    window.run_checks()
    qtbot.waitUntil(lambda: window.check_table is not None and not window.is_busy(), timeout=60000)
    window.step_last()
    state_types = (Recording, Timeline, Stepper, StepState, CheckTable, GradientFlow, Session)
    own = {k: v for k, v in vars(window).items() if isinstance(v, state_types)}
    assert set(own) == {"session"}, own
    for name in ("recording", "timeline", "stepper", "check_table", "target", "params"):
        assert isinstance(getattr(type(window), name), property), name
    s = window.session
    assert window.recording is s.recording and window.stepper is s.stepper and window.check_table is s.checks
    assert window.target == s.target == "repeated-layer"


def test_a_window_shows_a_session_it_is_given_and_follows_it(qtbot, settings):
    from gradviz.qt.app import QtMainWindow

    s = Session()
    s.open("mlp")
    table = s.run_checks()
    win = QtMainWindow(s, settings=settings)
    qtbot.addWidget(win)
    try:
        assert len(win.graph.layout_) == len(s.recording.nodes)
        assert win.checks.table.rowCount() == len(table.rows)
        # the session's commands move the window: it is a view, not a copy
        s.last()
        assert win.transport.slider.value() == len(s.timeline) - 1
        assert win.events.currentIndex().row() == len(s.timeline) - 1
        s.open("sum-xy-plus-z")
        assert win.windowTitle() == "gradviz — sum-xy-plus-z" and win.checks.table.rowCount() == 0
    finally:
        win.shutdown()


def test_a_saved_file_shows_its_stored_checks_without_running_them(qtbot, window, tmp_path):
    s = Session()
    s.open("repeated-layer")
    table = s.run_checks()
    path = s.export(tmp_path / "run.gradviz")
    open_and_wait(qtbot, window, str(path))
    assert window.session.source == "file" and window.check_table is not None
    assert window.checks.table.rowCount() == len(table.rows)
    assert [window.checks.table.item(i, 0).text() for i in range(len(table.rows))] == [r.kind for r in table.rows]


def test_jobs_run_off_the_gui_thread_and_apply_on_it(qtbot, window, monkeypatch):
    """Recording, checks and the compiled backend's build run in workers; the session's signals on the GUI thread."""
    import gradviz.core.backends as backends
    import gradviz.core.session.jobs as session_jobs

    main = threading.main_thread()
    seen = {"run": [], "recorded": [], "checks": [], "get_backend": set()}
    session = window.session

    def spying(make, key):
        def wrapper(*a, **k):
            job = make(*a, **k)
            run = job.run

            def run_spy(progress=None, cancelled=None):
                seen[key].append(threading.current_thread() is main)
                return run(progress, cancelled)

            job.run = run_spy
            return job
        return wrapper

    real_get_backend = backends.get_backend

    def get_backend_spy(name):
        # asking for a backend may build the extension (about a minute): never on the GUI thread
        seen["get_backend"].add(threading.current_thread() is main)
        return real_get_backend(name)

    monkeypatch.setattr(backends, "get_backend", get_backend_spy)
    monkeypatch.setattr(session_jobs, "get_backend", get_backend_spy)
    monkeypatch.setattr(session, "open_job", spying(session.open_job, "run"))
    monkeypatch.setattr(session, "checks_job", spying(session.checks_job, "run"))
    session.recorded.connect(lambda rec: seen["recorded"].append(threading.current_thread() is main))
    session.checks_done.connect(lambda t: seen["checks"].append(threading.current_thread() is main))
    # a cold extension cache builds here, in the worker: allow for a slow, loaded machine
    open_and_wait(qtbot, window, "linear-function", {"backend": "cpp"}, timeout=900000)
    assert window.last_error == "", window.last_error
    # the checks ran on opening, in a worker too
    qtbot.waitUntil(lambda: window.check_table is not None and not window.is_busy(), timeout=300000)
    # the Model panel shows which backends can run without asking on the GUI thread
    panel = window.model_panel
    panel.combo.setCurrentText("mlp")
    panel.combo.setCurrentText("linear-function")
    combo = panel.editors["backend"]
    assert [combo.itemText(i) for i in range(combo.count())] == list(session.backends)
    assert seen == {"run": [False, False], "recorded": [True], "checks": [True], "get_backend": {False}}


def test_build_window_uses_the_session_the_command_line_made(qtbot, settings):
    # `gradviz app TARGET --max-nodes 3`: the window records in the CLI's session, with its options
    from gradviz.qt.app import build_window

    s = Session(max_nodes=3)
    win = build_window("repeated-layer", settings=settings, session=s)
    qtbot.addWidget(win)
    try:
        qtbot.waitUntil(lambda: not win.is_busy(), timeout=600000)
        assert win.session is s and s.recording is None
        assert win.last_error.startswith("error: the autograd graph has more than 3 nodes"), win.last_error
        assert win.banner.isVisibleTo(win)
    finally:
        win.shutdown()


def test_the_export_dialog_saves_the_sessions_checks_in_a_gradviz_file(qtbot, window, tmp_path):
    from gradviz.core.storage import read_document

    open_and_wait(qtbot, window, "repeated-layer")
    window.run_checks()
    qtbot.waitUntil(lambda: window.check_table is not None and not window.is_busy(), timeout=120000)
    window.export()
    dialog = window._export_dialog
    dialog.path_edit.setText(str(tmp_path / "run.gradviz"))
    with qtbot.waitSignal(dialog.export_finished, timeout=60000):
        dialog.start_export()
    dialog.close()
    doc = read_document(tmp_path / "run.gradviz")
    assert doc.checks is not None
    assert [r.to_json() for r in doc.checks.rows] == [r.to_json() for r in window.check_table.rows]
    # and the saved file opens with them, without running the model
    open_and_wait(qtbot, window, str(tmp_path / "run.gradviz"))
    assert window.session.source == "file" and window.checks.table.rowCount() == len(doc.checks.rows)
