"""The desktop app: Qt views of the core's recording and stepper. The only package that imports Qt."""
from __future__ import annotations

import sys

__all__ = ["none_refcount_guarded"]

none_refcount_guarded = False


def _guard_none_refcount() -> bool:
    """Work around PySide6 dropping references to None, True and False on CPython < 3.12.

    PySide6 6.12.0 on CPython 3.11 returns None from every void method (``QPainter.setPen``,
    ``QWidget.update`` ...) without taking a reference, and drops a reference to True or False on
    other paths (``QGraphicsItem.setPos`` through pyqtgraph's ``itemChange``), so their reference counts
    fall by one per call and the interpreter aborts ("deallocating None", "deallocating True or False")
    after some ten thousand calls: a few seconds of playing a large graph. Python 3.12+ makes these
    singletons immortal, which is why the bug goes unseen there. When a probe shows the leak, the
    three singletons' counts are raised far beyond reach (they are never freed anyway).
    """
    if sys.version_info >= (3, 12):
        return False
    from PySide6.QtCore import QRectF

    r = QRectF()
    before = sys.getrefcount(None)
    for _ in range(100):
        r.setWidth(1.0)
    if before - sys.getrefcount(None) < 50:
        return False
    import ctypes

    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 48
    return True


none_refcount_guarded = _guard_none_refcount()
