"""A guard against a reference-count bug of PySide6 6.12.0 on CPython 3.11.

On Python 3.11 with PySide6 6.12.0, every call of a Qt method that returns nothing (``moveTo``,
``setPen``, ``QRectF.setWidth`` ...) drops one reference to ``None`` that it never took, and other
paths (``QGraphicsItem.setPos`` through pyqtgraph's ``itemChange``) drop one to ``True`` or
``False``. Painting or playing a large graph makes tens of thousands of such calls, the count
reaches zero and Python aborts ("deallocating None", "deallocating True or False"). Python 3.12+
is not affected (these singletons are immortal there, PEP 683), and the project's requirements skip
6.12.0 on Python < 3.12; this guard protects an environment that has it anyway. `protect_none`
detects the bug and, only where it is present, raises the three singletons' counts far out of
reach (they are never freed). Remove this module when Python 3.11 is no longer supported.
"""
from __future__ import annotations

import ctypes
import sys

__all__ = ["protect_none", "none_is_protected"]

_HEADROOM = 1 << 40
_done = False


def _bug_present() -> bool:
    try:
        from PySide6.QtCore import QRectF
    except ImportError:  # no Qt here: nothing to guard (the Qt-free parts of this package still import)
        return False
    r = QRectF()
    before = sys.getrefcount(None)
    for _ in range(64):
        r.setWidth(1.0)
    return before - sys.getrefcount(None) >= 32


def protect_none() -> bool:
    """Detect the bug and, if present, give None, True and False references to outlive it; True if it did."""
    global _done
    if _done:
        return True
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    if not _bug_present():
        return False
    # ob_refcnt is the first field of every CPython object
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _HEADROOM
    _done = True
    return True


def none_is_protected() -> bool:
    """Whether `protect_none` raised the counts (for tests and diagnostics)."""
    return _done
