"""Model code in a child process (--isolate, --timeout, --max-memory): what kills the child is one message, exit 2."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPTS = {
    "os-exit": ("import os\ndef build():\n    os._exit(0)\n", ["--isolate"], "did the model call os._exit()"),
    "segfault": ("import ctypes\ndef build():\n    ctypes.string_at(0)\n", ["--isolate"], "segmentation fault (SIGSEGV)"),
    "endless-loop": ("def build():\n    while True:\n        pass\n", ["--timeout", "5"], "time limit of 5 s"),
    "memory-hog": ("def build():\n    x = bytearray(8 << 30)\n", ["--max-memory", "2000"], "limited to 2000 MiB"),
    "sys-exit": ("import sys\ndef build():\n    sys.exit(0)\n", ["--isolate"], "called sys.exit(0)"),
}


def _gradviz(*argv, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GRADVIZ_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "gradviz.cli", *argv], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_what_ends_the_model_process_is_one_message(tmp_path, name):
    body, options, words = SCRIPTS[name]
    script = tmp_path / "model.py"
    script.write_text(textwrap.dedent(body))
    proc = _gradviz("check", str(script), *options, cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    first = proc.stderr.splitlines()[0]
    assert first.startswith("error: ") and words in first, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py"]


def test_an_isolated_check_passes_like_an_inline_one(tmp_path):
    proc = _gradviz("check", "repeated-layer", "--isolate", "--timeout", "300", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "-> OK" in proc.stdout and "repeated-layer" in proc.stdout


def test_an_isolated_run_passes_the_model_warnings_on_once(tmp_path):
    script = tmp_path / "model.py"
    script.write_text(textwrap.dedent("""\
        import warnings
        import torch

        def build():
            x = torch.ones(3, requires_grad=True)
            for _ in range(5):
                warnings.warn("the learning rate looks odd")
            return (x * 2).sum()
        """))
    proc = _gradviz("check", str(script), "--isolate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "the learning rate looks odd" in ln]
    # one line, as the child printed it: the warning's kind and the script's own line
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("warning: UserWarning: the learning rate looks odd") and "model.py:7" in lines[0], lines
