"""Run long work (recording, layout, checks) off the UI thread, with progress and Cancel."""
from __future__ import annotations

import traceback
from typing import Any, Callable

from PySide6.QtCore import QThread, Signal

from gradviz.core.errors import GradvizError
from gradviz.core.recorder import Cancelled

__all__ = ["QtTask", "error_text"]


def error_text(exc: BaseException) -> str:
    """The message shown for `exc`: the core's formatted message, or the type and text."""
    if isinstance(exc, GradvizError):
        return exc.format()
    return f"error: {type(exc).__name__}: {exc}"


class QtTask(QThread):
    """Run ``fn(progress, cancelled) -> result`` in a thread.

    Signals
    -------
    progressed(float, str)
        Fraction done and a message (queued to the UI thread).
    succeeded(object)
        The result.
    failed(str)
        A clear message (the core's `GradvizError.format()`, or the exception).
    cancelled()
        The work stopped because `cancel` was called.
    """

    progressed = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, fn: Callable[[Callable, Callable], Any], parent=None, name: str = "task"):
        super().__init__(parent)
        self._fn = fn
        self._cancel = False
        self.name = name
        self.setObjectName(name)

    def cancel(self) -> None:
        """Ask the work to stop (it polls `is_cancelled`)."""
        self._cancel = True

    def is_cancelled(self) -> bool:
        return self._cancel

    def run(self) -> None:  # runs in the thread
        try:
            result = self._fn(lambda f, m="": self.progressed.emit(float(f), str(m)), self.is_cancelled)
        except Cancelled:
            self.cancelled.emit()
            return
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message in the window
            if self._cancel:
                self.cancelled.emit()
                return
            msg = error_text(exc)
            if not isinstance(exc, GradvizError):
                msg += "\n" + "".join(traceback.format_exception(exc)[-3:])
            self.failed.emit(msg)
            return
        if self._cancel:
            self.cancelled.emit()
        else:
            self.succeeded.emit(result)
