"""Model code that exits or is interrupted is reported as what it did (exit 2, one message), never as success."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "exit-0-in-build": ("def build():\n    import sys\n    sys.exit(0)\n", "called sys.exit(0)", 3),
    "exit-3-in-build": ("def build():\n    raise SystemExit(3)\n", "called sys.exit(3)", 2),
    "exit-none-in-build": ("def build():\n    import sys\n    sys.exit()\n", "called sys.exit()", 3),
    "exit-3-at-top-level": ("import sys\nsys.exit(3)\ndef build():\n    pass\n", "called sys.exit(3)", 2),
    "interrupt-in-build": ("def build():\n    raise KeyboardInterrupt\n", "interrupted (KeyboardInterrupt)", 2),
    "interrupt-at-top-level": ("raise KeyboardInterrupt\n", "interrupted (KeyboardInterrupt)", 1),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_reports_exits_and_interrupts(tmp_path, name):
    body, words, line = CASES[name]
    script = tmp_path / "model.py"
    script.write_text(textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GRADVIZ_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "gradviz.cli", "check", str(script)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    first = proc.stderr.splitlines()[0]
    assert first.startswith("error: the model"), proc.stderr
    assert words in first, proc.stderr
    assert f"model.py:{line}" in first, proc.stderr
    assert "Traceback" not in proc.stderr


def test_unexpected_exception_is_one_line_naming_a_bug(monkeypatch, capsys):
    from gradviz import cli

    def boom(args):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.delenv("GRADVIZ_DEBUG", raising=False)
    monkeypatch.setitem(cli._COMMANDS, "list", (boom, lambda p: None, "x"))
    code = cli.main(["list"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "unexpected ZeroDivisionError: division by zero second line" in err
    assert "this is a bug in gradviz: please report it" in err
    monkeypatch.setenv("GRADVIZ_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli.main(["list"])


@pytest.mark.parametrize("argv,code,last", [(["check", "sum-xy-plus-z"], 0, "-> OK"),
                                            (["check", "wrong.py"], 1, "-> FAILED"),
                                            (["check", "no-such-model"], 2, None)])
def test_the_program_ends_with_the_code_of_main_and_all_its_output(tmp_path, capsys, argv, code, last):
    """``python -m gradviz.cli`` (`gradviz.cli.run`, which freezes the collector before the end) exits
    with `main`'s code, every line printed, as `main` run in this process."""
    from gradviz import cli
    from test_cli import WRONG_SQUARE, script

    script(tmp_path, WRONG_SQUARE + """
        def build():
            x = torch.linspace(-1.0, 1.0, 5, requires_grad=True)
            return Square.apply(x).sum(), {"x": x}
    """, name="wrong.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GRADVIZ_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "gradviz.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert cli.main(argv) == code
    finally:
        os.chdir(cwd)
    out = capsys.readouterr()
    assert proc.stdout == out.out and proc.stderr == out.err
    if last:
        assert proc.stdout.splitlines()[-1].endswith(last), proc.stdout
