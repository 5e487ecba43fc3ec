"""The Session without any GUI: files vs targets, stored vs fresh checks, jobs, failures and cancels."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import gradviz
from gradviz.core.session import jobs as session_jobs
from gradviz.core.errors import GradvizError, ScriptError
from gradviz.core.session import Session, source_of
from gradviz.core.storage import read_document, save_recording

ROOT = Path(__file__).resolve().parents[2]


class Events:
    """Every signal a session emits, in order, with the thread it came from."""

    def __init__(self, session: Session):
        self.log: list[tuple] = []
        self.threads: set[str] = set()
        for name in ("recorded", "step_changed", "checks_done", "failed", "cancelled"):
            getattr(session, name).connect(lambda *args, n=name: self._on(n, args))

    def _on(self, name, args):
        self.log.append((name, *args))
        self.threads.add(threading.current_thread().name)

    def names(self) -> list[str]:
        return [e[0] for e in self.log]


def _broken_script(tmp_path) -> str:
    path = tmp_path / "broken.py"
    path.write_text("def build():\n    raise ValueError('the model is broken on purpose')\n")
    return str(path)


def test_sources_are_told_apart(tmp_path):
    assert source_of("repeated-layer") == "builtin"
    assert source_of("model.py:build") == "script"
    assert source_of(str(tmp_path / "run.gradviz")) == "file"
    assert source_of(tmp_path / "RUN.GRADVIZ") == "file"
    assert source_of(lambda: None) == "callable"


def test_open_a_builtin_records_and_steps():
    s = Session()
    ev = Events(s)
    rec = s.open("repeated-layer", ["k=3"])
    assert s.source == "builtin" and s.target == "repeated-layer" and s.params == {"k": "3"}
    assert s.recording is rec and s.can_rerun and s.checks is None
    assert ev.names() == ["recorded"] and ev.log[0][1] is rec
    assert len(s.timeline) == 1 + len(rec.forward) + len(rec.backward)
    assert s.stepper.index == 0
    s.next()
    s.last()
    assert s.stepper.index == len(s.timeline) - 1
    assert ev.names() == ["recorded", "step_changed", "step_changed"]
    assert ev.log[-1][1] is s.state
    s.first()
    leaf = rec.leaves["layer.weight"].node
    state = s.go_to(leaf)
    assert state.step.index == s.timeline.step_of(leaf, "backward") and state.current == leaf
    mm = next(n.id for n in rec.nodes if n.name == "MmBackward0")
    assert s.go_to(mm, "forward").step.index == s.timeline.step_of(mm, "forward")
    assert s.go_to_phase("backward").step.index == s.timeline.phase_start("backward")
    # the same arguments as the app: a dict
    s.open("repeated-layer", {"k": 2})
    assert s.params == {"k": 2} and sum(n.name == "MmBackward0" for n in s.recording.nodes) == 2


def test_set_param_and_rerun():
    s = Session()
    s.open("repeated-layer")
    first = s.recording
    s.set_param("k", 3)
    assert s.recording is first  # set_param does not record
    s.rerun()
    assert s.recording is not first and sum(n.name == "MmBackward0" for n in s.recording.nodes) == 3
    with pytest.raises(GradvizError, match="no parameter 'nope'"):
        s.set_param("nope", 1)


def test_a_file_is_loaded_with_its_stored_checks_and_never_rerun(tmp_path, monkeypatch):
    rec = gradviz.record("rnn-unrolled", params={"T": 3})
    table = gradviz.run_checks(rec)
    path = tmp_path / "run.gradviz"
    save_recording(rec, path, checks=table)

    s = Session()
    ev = Events(s)
    loaded = s.open(str(path))
    assert s.source == "file" and not s.can_rerun and s.rerun_state is None
    assert loaded.target == "rnn-unrolled" and len(loaded.nodes) == len(rec.nodes)
    # the stored checks come with the file, as a checks_done after recorded
    assert ev.names() == ["recorded", "checks_done"]
    assert [r.to_json() for r in s.checks.rows] == [r.to_json() for r in table.rows]

    # checking again uses the stored table: the checks are not run (they would need the model)
    def no_run(*a, **k):
        raise AssertionError("checks must not run for a file")

    monkeypatch.setattr(session_jobs, "run_checks", no_run)
    strict = s.run_checks(strict=True)
    assert strict.strict and len(strict.rows) == len(table.rows)
    assert s.checks is strict and not table.strict  # the stored table itself is untouched

    # parameters do not apply to a file: one clear message, the session keeps its recording
    with pytest.raises(GradvizError, match="does not apply to a saved recording"):
        s.open(str(path), {"T": 4})
    assert s.recording is loaded and ev.names()[-1] == "failed"


def test_fresh_checks_run_when_the_model_can_run_again():
    s = Session()
    ev = Events(s)
    s.open("repeated-layer")
    table = s.run_checks(strict=True)
    assert s.checks is table and table.ok and table.strict
    assert ev.names() == ["recorded", "checks_done"]
    ref = gradviz.run_checks(gradviz.record("repeated-layer"), strict=True)
    assert [(r.kind, r.what, r.status) for r in table.rows] == [(r.kind, r.what, r.status) for r in ref.rows]


def test_a_failed_open_keeps_the_old_recording(tmp_path):
    s = Session()
    ev = Events(s)
    s.open("repeated-layer")
    before, checks = s.recording, s.run_checks()
    with pytest.raises(ScriptError):
        s.open(_broken_script(tmp_path))
    assert s.recording is before and s.checks is checks and s.target == "repeated-layer"
    assert ev.names()[-1] == "failed"
    message = ev.log[-1][1]
    first = message.splitlines()[0]
    assert first.startswith("error: ") and "ValueError" in message and "broken on purpose" in message
    assert "Traceback" not in message
    # a bad --param string is a failure too, with the same rules
    with pytest.raises(GradvizError, match="bad --param"):
        s.open("repeated-layer", ["k"])
    assert s.recording is before


def test_a_cancelled_open_keeps_the_old_recording():
    s = Session()
    ev = Events(s)
    s.open("repeated-layer")
    before = s.recording
    job = s.open_job("rnn-unrolled", {"T": 50})
    result = job.run(cancelled=lambda: True)
    assert result.cancelled and not result.ok and s.recording is before  # run changes nothing
    assert s.apply(result)
    assert s.recording is before and ev.names()[-1] == "cancelled"
    # cancelled checks keep the table the session had
    table = s.run_checks()
    result = s.checks_job(strict=True).run(cancelled=lambda: True)
    assert result.cancelled and s.apply(result)
    assert s.checks is table and not table.strict and ev.names()[-1] == "cancelled"


def test_jobs_run_off_thread_and_apply_on_the_owner():
    s = Session()
    ev = Events(s)
    s.open("repeated-layer")
    before = s.recording
    job = s.open_job("rnn-unrolled", {"T": 4})
    out, progress = {}, []

    def worker():
        out["result"] = job.run(lambda f, m: progress.append(f), lambda: False)
        out["thread"] = threading.current_thread().name

    t = threading.Thread(target=worker, name="gradviz-worker")
    t.start()
    t.join(300)
    assert out["thread"] == "gradviz-worker" and out["result"].ok
    assert s.recording is before and ev.names() == ["recorded"]  # nothing changed yet
    assert progress and progress[-1] == 1.0 and all(0 <= f <= 1 for f in progress)
    s.apply(out["result"])
    assert s.recording is out["result"].value.recording and s.target == "rnn-unrolled"
    assert ev.threads == {threading.main_thread().name}

    # checks as a job: same rule, off-thread
    cjob = s.checks_job()
    t = threading.Thread(target=lambda: out.update(checks=cjob.run()))
    t.start()
    t.join(300)
    assert s.checks is None
    s.apply(out["checks"])
    assert s.checks is out["checks"].value and s.checks.ok


def test_stale_results_are_dropped():
    s = Session()
    s.open("repeated-layer")
    old_job = s.open_job("mlp")
    new_job = s.open_job("sum-xy-plus-z")
    old, new = old_job.run(), new_job.run()
    assert not s.apply(old) and s.target == "repeated-layer"
    checks = s.checks_job().run()  # checks of repeated-layer
    assert s.apply(new) and s.target == "sum-xy-plus-z"
    assert not s.apply(checks) and s.checks is None  # they belong to the recording that was replaced


def test_export_gradviz_saves_the_sessions_checks(tmp_path):
    s = Session()
    s.open("sum-xy-plus-z")
    table = s.run_checks()
    path = s.export(tmp_path / "run.gradviz")
    back = read_document(path)
    assert back.checks is not None and len(back.checks.rows) == len(table.rows)
    dot = s.export(tmp_path / "graph.dot", phase="backward")
    assert dot.read_text().startswith("digraph")


def test_commands_without_a_recording_do_nothing_or_say_why():
    s = Session()
    assert s.next() is None and s.go_to(0) is None and s.flow() is None and s.state is None
    with pytest.raises(GradvizError, match="nothing to re-run"):
        s.rerun()
    with pytest.raises(GradvizError, match="no recording to check"):
        s.run_checks()


def test_the_session_and_the_cli_run_with_pyside6_blocked(tmp_path):
    # the core promises never to import Qt: prove it with an import blocker in a fresh interpreter
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        from gradviz.core.session import Session
        s = Session()
        s.open("repeated-layer")
        s.last()
        table = s.run_checks()
        assert table.ok, table.format()
        s.export({str(tmp_path / 'run.gradviz')!r})
        s.open({str(tmp_path / 'run.gradviz')!r})
        assert s.source == "file" and s.checks is not None
        from gradviz.cli import main
        assert main(["flow", "rnn-unrolled", "--param", "T=3", "--json"]) == 0
        assert main(["check", {str(tmp_path / 'run.gradviz')!r}]) == 0
        bad = [m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6")]
        assert not bad, bad
        print("no-qt ok")
    """)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env=env, stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and "no-qt ok" in p.stdout, p.stdout[-2000:] + p.stderr[-4000:]


def test_flow_is_the_sessions_and_cached():
    s = Session()
    s.open("rnn-unrolled", {"T": 4})
    flow = s.flow()
    assert flow is s.flow() and len(flow.steps) == len(s.recording.backward)
    s.rerun()
    assert s.flow() is not flow
    np.testing.assert_array_equal(s.flow().nodes, [ev.node for ev in s.recording.backward])


def test_the_open_dialog_patterns_are_exactly_what_opens(tmp_path):
    # the app's Open dialog offers storage.open_patterns(): a file matching one opens as a recording,
    # and what the dialog used to offer (*.json, *.npz) is not taken for one
    from fnmatch import fnmatch

    from gradviz.core.storage import open_patterns

    rec = Session().open("sum-xy-plus-z")
    assert open_patterns() == ["*.gradviz"]
    for pattern in open_patterns():
        path = tmp_path / pattern.replace("*", "run")
        rec.save(path)
        assert source_of(str(path)) == "file" and source_of(str(path).upper()) == "file"
        opened = Session()
        assert opened.open(path).target == "sum-xy-plus-z" and not opened.can_rerun
    for name in ("run.json", "run.npz"):
        assert not any(fnmatch(name, p) for p in open_patterns())
        rec.export(tmp_path / name) if name.endswith(".json") else (tmp_path / name).write_bytes(b"PK")
        assert source_of(str(tmp_path / name)) == "script"
        with pytest.raises(GradvizError, match="not a Python file"):
            Session().open(tmp_path / name)
