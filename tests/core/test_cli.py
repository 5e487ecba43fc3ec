"""The command line: listing, inspecting, checking, and a clear message for every kind of bad input."""
import json
import subprocess
import sys
import textwrap

import pytest

from gradviz.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def script(tmp_path, body, name="model.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_list_names_every_builtin(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in ("sum-xy-plus-z", "linear-function", "repeated-layer", "rnn-unrolled", "mlp"):
        assert name in out


def test_inspect_json_has_the_documented_shape(capsys):
    code, out, _ = run(capsys, "inspect", "repeated-layer", "--json")
    assert code == 0
    data = json.loads(out)
    node = data["nodes"][0]
    for key in ("id", "name", "kind", "module", "use", "uses", "backend", "source", "saved"):
        assert key in node
    assert {n["kind"] for n in data["nodes"]} == {"op", "leaf", "input"}
    assert all(len(e) == 3 for e in data["edges"])
    assert data["backward_order"][0] == 0
    leaf = data["leaves"]["layer.weight"]
    assert leaf["shape"] == [1, 1] and len(leaf["contributions"]) == 2
    c = leaf["contributions"][0]
    assert {"producer", "slot", "value", "running_sum"} <= set(c)
    total = sum(c["value"]["value"][0][0] for c in leaf["contributions"])
    assert total == pytest.approx(leaf["grad"]["value"][0][0], rel=1e-6)
    assert [f["op"] for f in data["forward"]] == ["linear", "linear", "mse_loss"]
    uses = [(n["module"], n["use"], n["uses"]) for n in data["nodes"] if n["name"] == "MmBackward0"]
    assert sorted(uses) == [("layer", 1, 2), ("layer", 2, 2)]


def test_inspect_no_values_drops_values(capsys):
    code, out, _ = run(capsys, "inspect", "mlp", "--json", "--no-values", "--compact")
    assert code == 0
    data = json.loads(out)
    assert "value" not in data["leaves"]["fc1.weight"]["grad"]
    assert data["leaves"]["fc1.weight"]["grad"]["shape"] == [8, 4]


def test_inspect_text(capsys):
    code, out, _ = run(capsys, "inspect", "repeated-layer")
    assert code == 0 and "backward order: 0 1 3 2 4 5" in out and "layer use 2/2" in out


def test_check_passes_with_exit_0(capsys):
    code, out, _ = run(capsys, "check", "repeated-layer", "--param", "k=3", "--strict")
    assert code == 0
    assert "-> OK" in out and "finite-diff" in out and "manual" in out


def test_check_json(capsys):
    code, out, _ = run(capsys, "check", "sum-xy-plus-z", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["counts"]["pass"] == len(data["checks"])


# a model script's start: a custom Function whose backward is wrong (d(x^2)/dx is 2x, it returns x)
WRONG_SQUARE = """
        import torch
        class Square(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x
            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return g * x          # wrong: d(x^2)/dx = 2x
"""


def test_check_fails_with_exit_1_on_a_wrong_backward(capsys, tmp_path):
    path = script(tmp_path, WRONG_SQUARE + """
        def build():
            x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
            return Square.apply(x).sum(), {"x": x}
        """)
    code, out, _ = run(capsys, "check", path)
    assert code == 1
    rows = {line.split()[0] for line in out.splitlines() if "FAIL" in line}
    assert {"finite-diff", "gradcheck"} <= rows


def test_check_of_a_large_graph_folds_the_passing_rows_of_each_node_kind(capsys, tmp_path):
    # 120 passing local rules and flow rows, one wrong backward: the failure is shown, the passes are one row
    path = script(tmp_path, WRONG_SQUARE + """
        def build():
            x = torch.tensor([0.1, 0.2, 0.3], requires_grad=True)
            y = x
            for _ in range(60):
                y = torch.tanh(y) * 1.01
            return Square.apply(y).sum(), {"x": x}
        """)
    code, out, _ = run(capsys, "check", path, "--json")
    rows = json.loads(out)["checks"]
    rules = [r for r in rows if r["kind"] == "local-rule"]
    passing = sum(r["status"] == "pass" for r in rules)
    assert code == 1 and passing > 100 and any(r["status"] == "fail" for r in rules)
    code, out, _ = run(capsys, "check", path)
    lines = out.splitlines()
    assert code == 1
    assert {line.split()[0] for line in lines if line.endswith("FAIL")} == {"finite-diff", "gradcheck", "local-rule"}
    assert f"local-rule    {passing} rows pass" in out
    assert sum(line.startswith("local-rule") for line in lines) == 2  # the failure and the folded passes
    assert f"{len(rows)} checks:" in out
    code, out, _ = run(capsys, "check", path, "--all")
    assert code == 1 and "rows pass" not in out
    assert sum(line.startswith("local-rule") for line in out.splitlines()) == len(rules)


def test_steps_prints_the_timeline(capsys):
    code, out, _ = run(capsys, "steps", "repeated-layer")
    assert code == 0
    assert "forward 2/3: linear (layer · use 2/2) computes" in out
    assert "MmBackward0 (layer · use 2/2) sends 0.07486 to MmBackward0 (node 2), which is now ready" in out
    assert "layer.weight.grad = " in out and "it waits for 1 more" in out


BAD_INPUTS = {
    "missing file": (None, "no such file"),
    "not python": ("notes.txt", "is not a Python file"),
    "syntax error": ("x = = 1\n", "syntax error in"),
    "no build": ("import torch\nX = 1\n", "defines no function build()"),
    "wrong return type": ("def build():\n    return 3\n", "returned a int, not a loss tensor"),
    "non-scalar loss": ("import torch\ndef build():\n    x = torch.randn(3, requires_grad=True)\n    return x * 2\n",
                        "the loss must be a scalar"),
    "nothing requires grad": ("import torch\ndef build():\n    return torch.randn(3).sum()\n",
                              "requires grad"),
    "reads stdin": ("import torch\ndef build():\n    v = float(input('v? '))\n"
                    "    return torch.tensor(v, requires_grad=True) * 2\n", "reads standard input"),
    "inplace after save": ("import torch\ndef build():\n    x = torch.randn(3, requires_grad=True)\n"
                           "    y = torch.tanh(x)\n    z = y * 2\n    y.add_(1)\n    return z.sum() + y.sum()\n",
                           "modified by an inplace operation: add_ at"),
    "nan forward": ("import torch\ndef build():\n    x = torch.tensor([1.0, -1.0], requires_grad=True)\n"
                    "    return torch.log(x).sum()\n", "NaN or Inf first appears in the forward pass at log"),
    "nan backward": ("import torch\ndef build():\n    x = torch.tensor([0.0, 1.0], requires_grad=True)\n"
                     "    return torch.sqrt(x).sum()\n",
                     "NaN or Inf first appears in the backward pass at node 1 SqrtBackward0"),
    "bad leaves dict": ("import torch\ndef build():\n    x = torch.randn(3, requires_grad=True)\n"
                        "    return x.sum(), {'x': 3}\n", "are not tensors"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_a_clear_message_and_exit_2(capsys, tmp_path, case):
    body, expected = BAD_INPUTS[case]
    if body is None:
        target = str(tmp_path / "missing.py")
    elif case == "not python":
        target = str(tmp_path / body)
        (tmp_path / body).write_text("hello")
    else:
        target = script(tmp_path, body)
    code, out, err = run(capsys, "check", target)
    assert code == 2
    assert expected in err
    assert err.startswith("error: ") and "hint: " in err
    assert "Traceback" not in err and "gradviz/core" not in err


def test_script_that_raises_names_the_innermost_user_line_and_only_user_frames(capsys, tmp_path):
    path = script(tmp_path, """
        import torch
        def helper(t):
            return t.reshape(5, 5)
        def build():
            x = torch.randn(3, requires_grad=True)
            return helper(x).sum()
        """)
    code, _, err = run(capsys, "check", path)
    assert code == 2
    first = err.splitlines()[0]
    assert first == f"error: build() raised RuntimeError at {path}:4: shape '[5, 5]' is invalid for input of size 3"
    frames = [line for line in err.splitlines() if line.startswith("  /") or line.startswith("  " + path[:1])]
    assert frames and all(path in f for f in frames)
    assert "gradviz" not in err.replace(path, "")


def test_graph_over_the_limit(capsys):
    code, _, err = run(capsys, "inspect", "rnn-unrolled", "--max-nodes", "10")
    assert code == 2 and "more than 10 nodes" in err and "--max-nodes" in err


def test_unknown_model_and_bad_param(capsys):
    code, _, err = run(capsys, "check", "no-such-model")
    assert code == 2 and "unknown model" in err and "repeated-layer" in err
    code, _, err = run(capsys, "check", "repeated-layer", "--param", "k")
    assert code == 2 and "NAME=VALUE" in err
    code, _, err = run(capsys, "check", "repeated-layer", "--param", "zzz=1")
    assert code == 2 and "no parameter 'zzz'" in err


def test_debug_shows_the_trace(tmp_path):
    path = script(tmp_path, "def build():\n    return 3\n")
    with pytest.raises(Exception):
        main(["--debug", "check", path])


def test_no_command_without_display_prints_steps_and_checks():
    env = {"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen", "HOME": "/tmp"}
    proc = subprocess.run([sys.executable, "-m", "gradviz.cli"], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "No display" in proc.stdout and "backward 6/6: AccumulateGrad" in proc.stdout
    assert "-> OK" in proc.stdout


def test_a_reader_that_stops_early_ends_the_command_quietly():
    # `gradviz steps rnn-unrolled | head -1`: no traceback and no "error:" line, exit 128 + SIGPIPE
    proc = subprocess.Popen([sys.executable, "-m", "gradviz.cli", "steps", "rnn-unrolled", "--param", "T=200"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err
    assert first.startswith(b"rnn-unrolled: 201 forward ops")
    assert err == ""


def test_warnings_are_one_line_notices(tmp_path, capsys):
    # a script's warning with its file and line
    path = script(tmp_path, "import warnings, torch\ndef build():\n    warnings.warn('careful')\n"
                            "    x = torch.ones(2, requires_grad=True)\n    return (x * 2).sum(), {'x': x}\n")
    assert main(["inspect", path]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("warning: UserWarning: careful (") and err.endswith("model.py:3)\n"), err
    assert ": 2 forward ops, 3 nodes, 2 edges, 3 backward steps, 1 leaf\n" in out


def test_a_backend_asked_for_by_name_that_cannot_run_is_an_error(tmp_path, capsys, monkeypatch):
    # never a silent fallback to torch: a check "of cuda" must not pass without cuda having run;
    # and saying so builds nothing (a cold cache stays empty), so the message is the whole output
    monkeypatch.setenv("GRADVIZ_CACHE_DIR", str(tmp_path))
    from gradviz.core.extension import _cuda_problem

    reason = _cuda_problem()
    if not reason:
        pytest.skip("CUDA can run here")
    assert main(["check", "linear-function", "--param", "backend=cuda"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    first, hint = err.splitlines()
    assert first == f"error: the cuda backend cannot run here: {reason}"
    assert hint.startswith("hint: choose another backend (torch always runs)") and "gradviz backends" in hint
    assert not (tmp_path / "ext").exists()
