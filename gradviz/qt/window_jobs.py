"""The main window's long work in workers: opening a target, the checks, the layout of a large graph.

`QtWindowJobs` is a mixin of `QtMainWindow`: each command starts a `QtJob` (a session job: open, checks)
or a `QtTask` (a layout) in a worker, keeps it while it runs, drops a result that an older run sends
late, and cancels what runs (``cancel``; ``shutdown`` cancels everything).
"""
from __future__ import annotations

from gradviz.core.layout import layered_layout

from .i18n import tr
from .workers import QtJob, QtTask

__all__ = ["QtWindowJobs", "ASYNC_LAYOUT_NODES"]

ASYNC_LAYOUT_NODES = 2000  # graphs larger than this are laid out again in a worker


class QtWindowJobs:
    """The window's workers: open, checks and layout jobs, their progress, results and cancel."""

    def _init_jobs(self) -> None:
        """No job yet: the running ones, and the latest open, checks and layout job."""
        self._tasks: set[QtTask | QtJob] = set()
        self._record_task: QtJob | None = None
        self._checks_task: QtJob | None = None
        self._layout_task: QtTask | None = None

    def open_target(self, target: str, params: dict | None = None) -> None:
        """Open `target` in a worker: record a built-in model or ``file.py[:function]`` with `params`.

        A saved recording (``run.gradviz``) is loaded instead, without running any model code (the
        session's rule). While it runs the window keeps showing what it showed.
        """
        if self._record_task is not None:
            self._record_task.cancel()
        direction, rolled = self.graph.direction, self.graph.rolled
        job = self.session.open_job(target, dict(params or {}))

        def layout(opened):  # in the worker, after recording: the graph's positions
            return opened.recording, layered_layout(opened.recording, direction, rolled)

        task = QtJob(self.session, job, self, name="record", after=layout)
        self._record_task = task
        task.progressed.connect(self.model_panel.set_progress)
        task.applied.connect(lambda result: self._on_open_done(task, result))
        self.model_panel.set_running(True)
        self.statusBar().showMessage(f"{tr('Recording…')} {target}")
        self._start(task)

    def _start(self, task) -> None:
        self._tasks.add(task)
        task.finished.connect(lambda: self._tasks.discard(task))
        task.finished.connect(task.deleteLater)
        task.start()

    def _on_open_done(self, task: QtJob, result) -> None:
        """An open job ended (the session has applied it): the Model panel stops showing progress."""
        if task is not self._record_task:
            return
        self._record_task = None
        self.model_panel.set_running(False)

    def is_busy(self) -> bool:
        """Whether a recording, layout or check run is in progress."""
        return bool(self._tasks)

    def cancel(self) -> None:
        """Cancel the recording in progress (the window keeps what it showed; a child process is killed)."""
        if self._record_task is not None:
            self._record_task.cancel()
            self.model_panel.progress_label.setText(tr("Cancel") + "…")

    def run_checks(self) -> None:
        """Check the recording in a worker (a saved file: the checks stored with it)."""
        if self.recording is None or self._checks_task is not None:
            return
        task = QtJob(self.session, self.session.checks_job(), self, name="checks")
        self._checks_task = task
        self.checks.set_running(True)
        task.applied.connect(lambda result: self._on_checks_job_done(task, result))
        self._start(task)

    def _check_on_open(self, rec) -> None:
        """Check `rec` if it is still the one shown and has no checks yet (a run of an older one is dropped)."""
        if rec is not self.recording or self.check_table is not None:
            return
        if self._checks_task is not None:
            self._checks_task.cancel()  # it checks an older recording: its result would be dropped anyway
            self._checks_task = None
        self.run_checks()

    def _on_checks_job_done(self, task: QtJob, result) -> None:
        if task is not self._checks_task:
            return
        self._checks_task = None
        self.checks.set_running(False)
        if result.cancelled:
            self.checks.summary.setText(tr("Cancelled"))
        elif result.error is not None:
            self.checks.summary.setText(result.message.splitlines()[0])

    def _relayout(self, direction: str, rolled: bool) -> None:
        rec = self.recording
        if rec is None:
            self.graph.direction, self.graph.rolled = direction, rolled
            return
        if len(rec.nodes) <= ASYNC_LAYOUT_NODES:
            self.graph.relayout(direction, rolled)
            return
        collapse, expanded = self.graph.collapse, self.graph.expanded
        task = QtTask(lambda progress, cancelled: layered_layout(rec, direction, rolled, collapse=collapse,
                                                                 expanded=expanded), self, name="layout")
        self._layout_task = task
        self.statusBar().showMessage(tr("Laying out…"))

        def done(lay):
            if task is self._layout_task and rec is self.recording:
                self._layout_task = None
                self.graph.set_layout(lay)
                self.statusBar().showMessage(rec.summary())

        task.succeeded.connect(done)
        task.failed.connect(self.show_error)
        self._start(task)
