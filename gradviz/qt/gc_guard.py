"""Collect Python's cyclic garbage in the GUI thread only, while a window is open.

Python runs its cycle collector in whichever thread happens to allocate when a threshold is
crossed. With recordings, layouts and checks running in worker threads, that is often a worker;
and if the garbage holds a Qt widget (a closed window's menu in a reference cycle, say), the
worker destroys it: a widget destroyed off the GUI thread deadlocks Qt (seen here: a worker in
the collector, deleting a QMenu, waiting for the GIL; the GUI thread holding a Qt mutex, waiting
for the worker). While a window is open, automatic collection is off and a timer in the GUI thread
collects each generation when its count passes the usual threshold (the recipe Calibre uses).
The switch itself is the core's counted one (`gradviz.core.sandbox.pause_gc`), which recordings
and layouts in worker threads also use: whichever finishes first leaves the collector off while
the others still need it off.
"""
from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

from ..core.sandbox import pause_gc, resume_gc

__all__ = ["acquire", "release", "active"]

INTERVAL_MS = 250


class _MainThreadCollector(QObject):
    def __init__(self):
        super().__init__()
        self.threshold = gc.get_threshold()
        pause_gc()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._on_timeout)
        self.timer.start(INTERVAL_MS)

    def _on_timeout(self) -> None:
        # the generational scheme of the automatic collector, run from here
        c0, c1, c2 = gc.get_count()
        t0, t1, t2 = self.threshold
        if c0 > t0:
            gc.collect(0)
            if c1 > t1:
                gc.collect(1)
                if c2 > t2:
                    gc.collect(2)

    def stop(self) -> None:
        self.timer.stop()
        gc.collect()  # in this thread, before the automatic collector may run anywhere again
        resume_gc()


_collector: _MainThreadCollector | None = None
_users = 0


def acquire() -> None:
    """Start collecting in this (the GUI) thread only; call `release` once for each call."""
    global _collector, _users
    _users += 1
    if _collector is None:
        _collector = _MainThreadCollector()


def release() -> None:
    """Stop when the last user releases: the automatic collector runs again as it did before."""
    global _collector, _users
    _users = max(0, _users - 1)
    if _users == 0 and _collector is not None:
        collector, _collector = _collector, None
        collector.stop()
        collector.deleteLater()


def active() -> bool:
    """Whether garbage is collected in the GUI thread only, now."""
    return _collector is not None
