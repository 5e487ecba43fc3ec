"""Session(isolate=True): the model runs in a child process per run and the session gets the same data.

The steps and checks equal the in-process ones; parameters and re-runs still work; a failure in the
child is the session's one-line message and keeps what it had; a cancel kills the child.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gradviz.cli import format_steps
from gradviz.core.errors import GradvizError
from gradviz.core.isolate import discard_spare
from gradviz.core.session import Session


@pytest.fixture(scope="module", autouse=True)
def _no_spare_left():
    yield
    discard_spare()


def _rows(table):
    return [(r.kind, r.what, r.reference, r.status, r.node, r.leaf, r.max_abs, r.max_rel) for r in table.rows]


def test_an_isolated_session_gives_the_same_steps_and_checks():
    inline, isolated = Session(), Session(isolate=True, timeout=300, warm=True)
    for s in (inline, isolated):
        s.open("mlp", {"seed": 3})
        assert s.source == "builtin" and s.target == "mlp" and s.params == {"seed": 3}
        assert s.checks is None  # checks are shown when asked for, wherever the model ran
    assert not isolated.can_rerun and inline.can_rerun
    assert format_steps(isolated.recording, isolated.timeline) == format_steps(inline.recording, inline.timeline)
    assert len(isolated.timeline) == len(inline.timeline)
    a, b = inline.run_checks(), isolated.run_checks()
    assert a.ok and b.ok and _rows(b) == _rows(a)
    assert isolated.flow().to_json() == inline.flow().to_json()
    # strict, and other finite-difference options (the model is checked again in a new child)
    assert isolated.run_checks(strict=True).strict
    fewer = isolated.run_checks(finite_diff=False)
    assert _rows(fewer) == _rows(inline.run_checks(finite_diff=False)) != _rows(a)


def test_a_parameter_change_records_again_in_a_child():
    s = Session(isolate=True, timeout=300, warm=True)
    s.open("repeated-layer", ["k=3"])
    three = len(s.recording.forward)
    s.set_param("k", 1)
    s.rerun()
    assert s.params == {"k": 1} and len(s.recording.forward) < three


def test_a_graph_past_checks_max_nodes_is_checked_in_a_new_child_when_asked():
    inline = Session()
    inline.open("repeated-layer", {"k": 2})
    s = Session(isolate=True, checks_max_nodes=3)
    s.open("repeated-layer", {"k": 2})
    assert len(s.recording.nodes) > 3 and s.checks is None
    assert _rows(s.run_checks()) == _rows(inline.run_checks())


def test_what_ends_the_child_is_the_message_and_the_session_keeps_its_recording(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text("def build():\n    while True:\n        pass\n")
    s = Session(isolate=True, timeout=2)
    s.open("sum-xy-plus-z")
    before = s.recording
    seen = []
    s.failed.connect(seen.append)
    with pytest.raises(GradvizError) as err:
        s.open(str(script))
    assert "time limit of 2 s" in err.value.message
    assert s.recording is before and s.target == "sum-xy-plus-z"
    assert len(seen) == 1 and seen[0].startswith("error: the model ran past the time limit")


def test_a_cancel_kills_the_child_and_its_process_group(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text("def build():\n    while True:\n        pass\n")
    s = Session(isolate=True)
    job = s.open_job(str(script))
    stop = threading.Event()
    results, messages = [], []
    worker = threading.Thread(target=lambda: results.append(job.run(lambda f, m: messages.append(m), stop.is_set)))
    worker.start()
    # until the child is in the model's loop (it reported the forward pass), bounded by the child's start-up
    for _ in range(1200):
        if "running the forward pass" in messages:
            break
        worker.join(0.1)
    assert job.pid is not None and "running the forward pass" in messages
    os.killpg(job.pid, 0)  # the child's process group is there
    stop.set()
    worker.join(60)
    assert not worker.is_alive() and results[0].cancelled
    with pytest.raises(ProcessLookupError):
        os.kill(job.pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(job.pid, 0)


ORPHAN = r"""
import os, signal, sys, threading
from gradviz.core.session import Session

job = Session(isolate=True).open_job(sys.argv[1])
began = threading.Event()
threading.Thread(target=job.run, args=(lambda f, m: m == "running the forward pass" and began.set(),),
                 daemon=True).start()
began.wait(600)
print(job.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # the parent dies without a word: no cancel, no atexit
"""


def test_a_child_whose_parent_is_killed_ends_too(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text("def build():\n    while True:\n        pass\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", ORPHAN, str(script)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == -9, proc.stderr
    pid = int(proc.stdout)
    # the child's watch thread sees its parent gone within half a second; wait for that, bounded
    for _ in range(600):
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
