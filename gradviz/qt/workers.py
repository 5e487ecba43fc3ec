"""Run long work (recording, layout, checks) off the UI thread, with progress and Cancel.

`QtJob` runs a `Session` job: ``job.run`` in the thread, ``session.apply(result)`` back on the GUI thread.
"""
from __future__ import annotations

import traceback
from typing import Any, Callable

from PySide6.QtCore import QThread, Signal

from gradviz.core.errors import Cancelled, GradvizError
from gradviz.core.session import Job, JobResult, Session, error_message

__all__ = ["QtTask", "QtJob", "error_text"]


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


class QtJob(QThread):
    """Run a session job off the GUI thread; apply its result to the session on the GUI thread.

    Parameters
    ----------
    session : Session
    job : Job
        From ``session.open_job``, ``checks_job``, ``export_job`` ...
    after : callable, optional
        ``after(value) -> extra``, run in the thread after the job succeeded (for example the layout of
        a new recording); its result is `extra` when `applied` is emitted.

    Signals
    -------
    progressed(float, str)
        Fraction done and a message.
    applied(object)
        The `JobResult`, right after ``session.apply`` took it (the session has emitted its signals).
    """

    progressed = Signal(float, str)
    applied = Signal(object)
    _done = Signal(object, object)

    def __init__(self, session: Session, job: Job, parent=None, name: str = "job",
                 after: Callable[[Any], Any] | None = None):
        super().__init__(parent)
        self.session, self.job, self.name = session, job, name
        self.extra = None
        self._after = after
        self._cancel = False
        self.setObjectName(name)
        # this QThread object lives in the GUI thread: the signal from run() is queued to it
        self._done.connect(self._on_done)

    def cancel(self) -> None:
        """Ask the job to stop (it polls `is_cancelled`)."""
        self._cancel = True

    def is_cancelled(self) -> bool:
        return self._cancel

    def run(self) -> None:  # runs in the thread
        result = self.job.run(lambda f, m="": self.progressed.emit(float(f), str(m)), self.is_cancelled)
        extra = None
        if result.ok and self._after is not None:
            try:
                extra = self._after(result.value)
            except Exception as exc:  # noqa: BLE001 - a failure becomes the job's message
                result = JobResult(self.job, error=exc, message=error_message(exc))
        if self._cancel and not result.cancelled:
            result = JobResult(self.job, cancelled=True)
        self._done.emit(result, extra)

    def _on_done(self, result: JobResult, extra) -> None:  # the GUI thread
        self.extra = extra
        self.session.apply(result)
        self.applied.emit(result)
