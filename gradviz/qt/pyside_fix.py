"""A guard against a reference-count bug of PySide6 6.12 on Python 3.11.

On Python 3.11 with PySide6 6.12.0, every call of a Qt method that returns nothing (``moveTo``,
``setPen``, ``drawRect``...) drops one reference to ``None`` that it never took. Painting a large
graph makes tens of thousands of such calls, ``None``'s count reaches zero and Python aborts with
"none_dealloc: deallocating None". Python 3.12 and later are not affected (``None`` is immortal
there, PEP 683). `protect_none` detects the bug and, only where it is present, raises ``None``'s
reference count far out of reach. Remove this module when PySide6 fixes the bug or Python 3.11 is
no longer supported.
"""
from __future__ import annotations

import ctypes
import sys

__all__ = ["protect_none", "none_is_protected"]

_HEADROOM = 1 << 40
_done = False


def _bug_present() -> bool:
    try:
        from PySide6.QtGui import QPainterPath
    except ImportError:  # no Qt here: nothing to guard (the Qt-free parts of this package still import)
        return False

    path = QPainterPath()
    before = sys.getrefcount(None)
    for _ in range(16):
        path.moveTo(0.0, 0.0)
    return sys.getrefcount(None) < before


def protect_none() -> bool:
    """Detect the bug and, if present, give ``None`` enough references to outlive it; True if it did."""
    global _done
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    if _done and sys.getrefcount(None) > _HEADROOM // 2:
        return True
    if not _bug_present():
        return False
    # ob_refcnt is the first field of every CPython object
    ctypes.c_ssize_t.from_address(id(None)).value += _HEADROOM
    _done = True
    return True


def none_is_protected() -> bool:
    """Whether `protect_none` raised the count (for tests and diagnostics)."""
    return _done
