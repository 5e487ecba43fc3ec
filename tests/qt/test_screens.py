"""Screens of the real app under Xvfb: every built-in model and a 20-node script, at 1600x1000 and 1280x800,
light and dark, English and Chinese, measured by `screen_audit.py` from the Scene's and the widgets' geometry.

One app process opens each model once per window size and switches theme and language inside it (the
way a user would), so the 96 views (each as it opens, and at the end with a leaf selected) take a couple
of minutes, not one process each.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_xvfb import xvfb  # noqa: F401 - the fixture: a fresh Xvfb server, skipped when Xvfb is missing

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.xvfb
def test_every_view_is_legible_uncut_and_in_one_theme(xvfb, tmp_path):  # noqa: F811 - the fixture
    env = dict(os.environ, DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(tmp_path),
               LANG="en_US.UTF-8")
    env.pop("QT_QPA_OFFSCREEN_SCREEN_SIZE", None)
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "qt" / "screen_audit.py")], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    problems = [x["problem"] for x in lines if "problem" in x]
    done = [x["done"] for x in lines if "done" in x]
    # 2 sizes x 6 models x 2 themes x 2 languages, as opened and at the end with a leaf selected
    assert done == [96], proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not problems, "\n".join(problems[:60])
