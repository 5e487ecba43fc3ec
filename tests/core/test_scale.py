"""Large graphs: recorded and freed without a crash at any size up to the node limit, the limit enforced
while the model runs.

Each recording runs in a child process: a recursive free of the graph kills the process with
SIGSEGV, which a test in this process could not report. A small stack (512 KB, which ~5,000 nodes
freed recursively overflow: 14,000 crashed before the fix) makes the cheap tests as strict as the
200,000-node ones.
"""
import os
import resource
import subprocess
import sys
import textwrap

import pytest

SMALL_STACK = 512 << 10
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# a chain of multiplications: one op, one node each (plus the leaf's AccumulateGrad and the sum)
CHAIN = textwrap.dedent("""
    import sys, threading
    import torch
    import gradviz

    N, WHERE, STACK = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

    def build():
        x = torch.ones(1, requires_grad=True)
        y = x
        for _ in range(N):
            y = y * 1.0
        return y.sum(), {"x": x}

    def go():
        rec = gradviz.record(build, keep_values=False)
        print(len(rec.nodes), flush=True)

    if WHERE == "thread":
        if STACK:
            threading.stack_size(STACK)
        t = threading.Thread(target=go)
        t.start()
        t.join()
    else:
        go()
""")


def _run(args, stack_bytes=None, timeout=600):
    def limit_stack():
        if stack_bytes is not None:
            resource.setrlimit(resource.RLIMIT_STACK, (stack_bytes, resource.getrlimit(resource.RLIMIT_STACK)[1]))

    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT}, preexec_fn=limit_stack)


def _chain(tmp_path, n, where, stack_bytes=None, thread_stack=0):
    path = tmp_path / "chain.py"
    path.write_text(CHAIN)
    return _run([str(path), str(n), where, str(thread_stack)], stack_bytes=stack_bytes)


@pytest.mark.parametrize("where", ["main", "thread"])
def test_a_graph_much_deeper_than_the_stack_is_freed_without_a_crash(tmp_path, where):
    # 15,000 nodes freed one C frame chain per node need ~2 MB of stack; 512 KB is given
    out = _chain(tmp_path, 15_000, where, stack_bytes=SMALL_STACK, thread_stack=SMALL_STACK)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert int(out.stdout.split()[0]) == 15_002


@pytest.mark.slow
@pytest.mark.parametrize("where", ["main", "thread"])
def test_a_200000_node_graph_records_and_exits_cleanly(tmp_path, where):
    # the documented limit, in the main thread and in a worker thread with the default stack
    out = _chain(tmp_path, 199_998, where)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert int(out.stdout.split()[0]) == 200_000


def test_a_failing_model_frees_its_graph_without_a_crash(tmp_path):
    # the model raises after building a deep graph: the exception's frames hold the graph
    path = tmp_path / "fails.py"
    path.write_text(textwrap.dedent("""
        import torch, gradviz
        from gradviz.core.errors import ScriptError

        def build():
            x = torch.ones(1, requires_grad=True)
            y = x
            for _ in range(15_000):
                y = y * 1.0
            raise ValueError("late")

        try:
            gradviz.record(build)
        except ScriptError as exc:
            print("refused:", exc.message)
    """))
    out = _run([str(path)], stack_bytes=SMALL_STACK)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert "refused: " in out.stdout and "ValueError: late" in out.stdout


def _million_script(tmp_path):
    path = tmp_path / "million.py"
    path.write_text(textwrap.dedent("""
        import torch

        def build():
            x = torch.ones(1, requires_grad=True)
            y = x
            for _ in range(1_000_000):
                y = y * 1.0
            return y.sum()
    """))
    return str(path)


def test_the_node_limit_stops_the_model_while_it_runs(tmp_path):
    # a million multiplications under a 5,000-node limit: refused after ~5,000 of them, exit 2,
    # one message that names the way to raise the limit, no traceback (a stack of 512 KB: the
    # partial graph is freed without recursion too)
    out = _run(["-m", "gradviz.cli", "record", _million_script(tmp_path), "--max-nodes", "5000",
                "-o", str(tmp_path / "m.gradviz")], stack_bytes=SMALL_STACK)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "more than 5,000 autograd nodes" in out.stderr
    assert "--max-nodes" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "m.gradviz").exists()


def test_the_node_limit_counts_nodes_as_they_are_made():
    # refused inside the forward pass, before the model returns
    import torch

    from gradviz import record
    from gradviz.core.errors import GraphTooLarge

    ops = []

    def build():
        x = torch.ones(1, requires_grad=True)
        y = x
        for i in range(1000):
            ops.append(i)
            y = y * 1.0
        return y.sum()

    with pytest.raises(GraphTooLarge, match="more than 100 autograd nodes"):
        record(build, max_nodes=100)
    assert len(ops) == 101


@pytest.mark.slow
def test_a_million_node_script_stops_at_the_default_limit(tmp_path):
    out = _run(["-m", "gradviz.cli", "record", _million_script(tmp_path), "--no-values",
                "-o", str(tmp_path / "m.gradviz")])
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "more than 200,000 autograd nodes" in out.stderr and "--max-nodes" in out.stderr


def test_finite_differences_rerun_outside_the_recorders_capture(monkeypatch):
    # the re-runs number the sources with a lean mode of their own: the recorder's forward
    # capture (events, values, source lines) is never entered, and the rows still pass
    from gradviz import record, run_checks
    from gradviz.core import recorder

    rec = record("rnn-unrolled", params={"T": 6})
    entered, calls = [], []
    enter = recorder.ForwardCapture.__enter__

    def counting_enter(self):
        entered.append(self)
        return enter(self)

    def counting(torch_function):
        def counting_torch_function(self, *args, **kwargs):
            calls.append(1)
            return torch_function(self, *args, **kwargs)
        return counting_torch_function

    monkeypatch.setattr(recorder.ForwardCapture, "__enter__", counting_enter)
    # the capture's class, and the subclass with the compiled __torch_function__ where the
    # recorder's helper is loaded (the recording above made it)
    for cls in (recorder.ForwardCapture, *recorder.ForwardCapture.__subclasses__()):
        if "__torch_function__" not in cls.__dict__:  # (a test's subclass that overrides other methods)
            continue
        monkeypatch.setattr(cls, "__torch_function__", counting(cls.__dict__["__torch_function__"]))
    table = run_checks(rec, manual=False, gradcheck=False, rules=False, flow=False, accumulation=False)
    rows = [r for r in table.rows if r.kind == "finite-diff"]
    assert len(rows) == 4 and all(r.status == "pass" for r in rows), [(r.what, r.status, r.detail) for r in rows]
    assert entered == [] and calls == []
    # the same patches do see a recording: the test would notice a re-run through the capture
    record("rnn-unrolled", params={"T": 2})
    assert len(entered) == 1 and calls
