"""The real app on a real X server (Xvfb): the graph is drawn, not a blank window."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QImage

ROOT = Path(__file__).resolve().parents[2]


def _free_display() -> int:
    for n in range(91, 140):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number")


@pytest.fixture
def xvfb():
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (scripts/setup.sh installs it)")
    n = _free_display()
    proc = subprocess.Popen([exe, f":{n}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = Path(f"/tmp/.X11-unix/X{n}")
    deadline = time.time() + 10
    while not sock.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not sock.exists():
        proc.kill()
        pytest.fail(f"Xvfb :{n} did not start")
    yield f":{n}"
    proc.terminate()
    proc.wait(10)


@pytest.mark.xvfb
def test_real_window_draws_the_graph(xvfb, tmp_path):
    out = tmp_path / "shot.png"
    env = dict(os.environ, DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "screenshot.py"), str(out), "repeated-layer"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["step"] == info["steps"] - 1  # at the end of backward
    img = QImage(str(out)).convertToFormat(QImage.Format.Format_RGB32)
    assert not img.isNull()
    x, y, w, h = (int(v) for v in info["graph"])
    graph = img.copy(x, y, w, h)
    arr = np.frombuffer(graph.constBits(), dtype=np.uint32, count=graph.width() * graph.height())
    background = np.bincount(np.unique(arr, return_inverse=True)[1]).max()
    assert len(np.unique(arr)) > 200, "the graph area has too few colours: nothing drawn?"
    assert arr.size - background > 0.03 * arr.size, "the graph area is nearly all background"
    # the current node's highlight colour (light theme "current") is on screen
    rgb = (arr & 0xFFFFFF)
    assert np.any(rgb == 0xD6336C)


@pytest.mark.xvfb
def test_cli_app_command_starts_and_keeps_running(xvfb, tmp_path):
    """``gradviz app TARGET`` (run_app) opens a window that stays up without errors."""
    env = dict(os.environ, DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", PYTHONPATH=str(ROOT),
               XDG_CONFIG_HOME=str(tmp_path))  # its QSettings go to a temporary folder
    proc = subprocess.Popen([sys.executable, "-m", "gradviz.cli", "app", "sum-xy-plus-z"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(8)
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert "Traceback" not in err and "error" not in err.lower(), err
