"""What running model code in a child process costs the app: the default model recorded in the window.

Usage: python benchmarks/isolation.py [--runs 5] [--out benchmarks/RESULTS_isolation.md]

Offscreen. For ``repeated-layer`` (the default model), the time from ``open_target`` to the new
recording shown in the window (recorded, checked in the child when isolated, laid out, applied):

* in-process: ``Session()``, the model recorded in a worker thread of the GUI process;
* child, cold: ``app_session(warm=False)``, every run starts a fresh interpreter (``import torch``);
* child, warm: ``app_session()``, the app's default: the run's child was started after the last run
  and waits with its imports done;
* app start: a fresh ``python`` from launch to the first recording shown (``build_window``), with the
  model in-process and in a child (started before Qt is imported, as ``gradviz app`` does).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODEL = "repeated-layer"

_START = r"""
import os, sys, time, tempfile
t0 = float(sys.argv[1])
if sys.argv[2] == "child":  # as `gradviz app` does: the first child starts before Qt is imported
    from gradviz.core.isolate import app_max_memory_mb, prestart
    prestart(app_max_memory_mb())
from PySide6.QtCore import QSettings
from gradviz.core.session import Session
from gradviz.qt.app import _app, app_session, build_window
app = _app()
session = app_session() if sys.argv[2] == "child" else Session()
win = build_window("repeated-layer", settings=QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"),
                   QSettings.Format.IniFormat), session=session)
win.show()
while win.recording is None:
    app.processEvents()
    time.sleep(0.001)
print(time.time() - t0, flush=True)
win.shutdown()
"""


def _shown(app, win) -> float:
    """Seconds from open_target to the new recording in the window."""
    before = win.recording
    t = time.perf_counter()
    win.open_target(MODEL, {})
    while win.recording is before:
        app.processEvents()
        if win.last_error:
            raise RuntimeError(win.last_error)
        time.sleep(0.001)
    took = time.perf_counter() - t
    while win.is_busy():  # the checks of the last one, before the next
        app.processEvents()
        time.sleep(0.001)
    return took


def in_window(runs: int) -> dict[str, list[float]]:
    from PySide6.QtCore import QSettings

    from gradviz.core.isolate import discard_spare, spare_ready
    from gradviz.core.session import Session
    from gradviz.qt.app import _app, QtMainWindow, app_session

    app = _app()
    out = {}
    for name, make in (("in-process", Session), ("child, cold", lambda: app_session(warm=False)),
                       ("child, warm", app_session)):
        settings = QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.Format.IniFormat)
        win = QtMainWindow(make(), settings=settings)
        win.show()
        _shown(app, win)  # the first: imports, a first child
        times = []
        for _ in range(runs):
            if name == "child, warm":
                deadline = time.monotonic() + 120
                while not spare_ready() and time.monotonic() < deadline:
                    app.processEvents()
                    time.sleep(0.01)
            times.append(_shown(app, win))
        win.shutdown()
        win.close()
        discard_spare()
        out[name] = times
    return out


def app_start(runs: int) -> dict[str, list[float]]:
    out = {}
    env = dict(os.environ, PYTHONPATH=ROOT)
    for how in ("in-process", "child"):
        times = []
        for _ in range(runs):
            p = subprocess.run([sys.executable, "-c", _START, repr(time.time()), how], env=env, capture_output=True,
                               text=True, timeout=600)
            times.append(float(p.stdout.split()[0]))
        out[f"app start, model {how}"] = times
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "RESULTS_isolation.md"))
    args = ap.parse_args()
    results = {**in_window(args.runs), **app_start(max(1, args.runs // 2))}
    load = os.getloadavg()[0]
    lines = ["# Model code in a child process: what it costs the app", "",
             f"`python benchmarks/isolation.py --runs {args.runs}`; {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.1f} at the end "
             "(a shared machine: other jobs ran meanwhile).", "",
             f"The default model (`{MODEL}`) from `open_target` to the recording shown in the window, seconds:", "",
             "| how | median | min | max | runs |", "|---|---:|---:|---:|---:|"]
    for name, times in results.items():
        lines.append(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} | {len(times)} |")
        print(f"{name:28s} median {statistics.median(times):.3f} s  min {min(times):.3f}  max {max(times):.3f}")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
