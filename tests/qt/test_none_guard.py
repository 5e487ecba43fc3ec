"""Void PySide6 calls must not be able to free None (PySide6 6.12.0 on CPython 3.11 drops a reference per call)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_many_void_qt_calls_do_not_abort():
    # in a child process: without the guard in gradviz.qt this aborts with "deallocating None"
    code = ("import os; os.environ['QT_QPA_PLATFORM']='offscreen'\n"
            "import gradviz.core, gradviz.qt, sys\n"
            "from PySide6.QtCore import QRectF\n"
            "r = QRectF()\n"
            "n = 400000  # more than None's count in a fresh interpreter with torch (about 60,000)\n"
            "for _ in range(n): r.setWidth(1.0)\n"
            "from PySide6.QtWidgets import QApplication\n"
            "import pyqtgraph as pg\n"
            "app = QApplication([])\n"
            "w = pg.PlotWidget(); line = pg.InfiniteLine(0, angle=90); w.addItem(line)\n"
            "for i in range(30000): line.setValue(i % 7)  # drops a reference to True each call (its count: ~2,000)\n"
            "print('ok', gradviz.qt.none_refcount_guarded)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0 and p.stdout.startswith("ok"), p.stdout + p.stderr
