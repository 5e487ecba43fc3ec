"""`Session`: a target, its recording, timeline, stepper and checks, moved by commands and watched by views."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..checks import CheckTable
from ..errors import Cancelled, GradvizError
from ..events import Signal
from ..flow import GradientFlow, gradient_flow
from ..isolate import prestart
from ..models import MODELS
from ..recorder import DEFAULT_MAX_NODES
from ..recording import Recording
from ..rerun import Rerun, rerun_of
from ..tensors import DEFAULT_BUDGET_BYTES
from ..timeline import Stepper, StepState, Timeline
from .jobs import ChecksJob, ExportJob, Job, JobResult, Opened, OpenJob, Progress, source_of

__all__ = ["Session"]


class Session:
    """One target and what was recorded of it, with the current step and the checks.

    Parameters
    ----------
    keep_values : bool
        Keep tensor values (True) or only shapes and dtypes when recording.
    budget_bytes : int
        Memory for kept values; past it tensors keep statistics.
    max_nodes : int
        Refuse graphs with more nodes than this.
    check_finite : bool
        Stop recording at the first NaN or Inf.
    isolate : bool
        Run model code in a child process, one per run (`gradviz.core.isolate`): it records, runs the
        checks that re-run the model and sends both back as a ``.gradviz`` file, opened here as data. A
        crash, an exit, an endless loop or a memory hog in the model ends only the child and becomes
        the job's one-line message. Off by default (the command line's ``--isolate``); the app turns it on.
    timeout : float, optional
        With `isolate`: stop a run after this many seconds.
    max_memory_mb : float, optional
        With `isolate`: the child's memory limit in MiB.
    warm : bool
        With `isolate`: keep the next run's child started and waiting, torch imported (the app).
    checks_max_nodes : int, optional
        With `isolate`: the child checks graphs of at most this many nodes with the recording (larger
        ones are checked, in a new child, when `run_checks` asks).

    Signals
    -------
    recorded(recording)
        A new recording is open, at step 0 (its stored checks, if any, follow as `checks_done`).
    step_changed(state, changed)
        The current step moved (the `Stepper`'s signal, forwarded).
    checks_done(table)
        A check table is ready (`checks`).
    failed(message)
        A command failed; `message` is the user's text (first line: what went wrong). State is unchanged.
    cancelled()
        A job was cancelled; state is unchanged.
    """

    def __init__(self, *, keep_values: bool = True, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 max_nodes: int = DEFAULT_MAX_NODES, check_finite: bool = True, isolate: bool = False,
                 timeout: float | None = None, max_memory_mb: float | None = None, warm: bool = False,
                 checks_max_nodes: int | None = None):
        self.options = {"keep_values": keep_values, "budget_bytes": budget_bytes, "max_nodes": max_nodes,
                        "check_finite": check_finite, "isolate": isolate, "timeout": timeout,
                        "max_memory_mb": max_memory_mb, "warm": warm, "checks_max_nodes": checks_max_nodes}
        if isolate and warm:
            prestart(max_memory_mb)  # the first run's child imports torch while the caller builds its window
        self.recorded = Signal()
        self.step_changed = Signal()
        self.checks_done = Signal()
        self.failed = Signal()
        self.cancelled = Signal()
        self._target: Any = None
        self._params: dict = {}
        self._source: str | None = None
        self._recording: Recording | None = None
        self._rerun: Rerun | None = None
        self._timeline: Timeline | None = None
        self._stepper: Stepper | None = None
        self._checks: CheckTable | None = None
        self._stored_checks: CheckTable | None = None  # the ones a loaded file holds
        self._flow: GradientFlow | None = None
        self._open_job: Job | None = None
        self._backends: dict[str, tuple[bool, str]] = {}

    # -- state ----------------------------------------------------------------------------------
    @property
    def target(self) -> Any:
        """What is open: a built-in model name, a script path, a ``.gradviz`` path or a callable."""
        return self._target

    @property
    def params(self) -> dict:
        """The built-in model's parameters (a copy; change them with `set_param`)."""
        return dict(self._params)

    @property
    def source(self) -> str | None:
        """``"builtin"``, ``"script"``, ``"file"`` or ``"callable"`` (None before the first open)."""
        return self._source

    @property
    def recording(self) -> Recording | None:
        return self._recording

    @property
    def rerun_state(self) -> Rerun | None:
        """The live objects that re-run the model for the checks; None when it cannot run again (a file)."""
        return self._rerun

    @property
    def can_rerun(self) -> bool:
        """Whether the model behind the recording can run again (not a loaded file)."""
        return self._recording is not None and self._rerun is not None

    @property
    def backends(self) -> dict[str, tuple[bool, str]]:
        """``{backend: (available, reason)}`` as found by the last open of a model with a backend parameter."""
        return dict(self._backends)

    @property
    def timeline(self) -> Timeline | None:
        return self._timeline

    @property
    def stepper(self) -> Stepper | None:
        return self._stepper

    @property
    def state(self) -> StepState | None:
        """The current step's state (None with no recording)."""
        return None if self._stepper is None else self._stepper.state

    @property
    def checks(self) -> CheckTable | None:
        """The check table of the recording: stored with a file, or from the last `run_checks`."""
        return self._checks

    # -- jobs -----------------------------------------------------------------------------------
    def open_job(self, target: Any, params: dict | list[str] | None = None, **options: Any) -> Job:
        """A job that opens `target`: loads a ``.gradviz`` file, or records a model.

        Parameters
        ----------
        target : str, os.PathLike or callable
            A built-in model name, a script ``path.py[:function]``, a saved ``.gradviz`` recording, or a callable.
        params : dict or list of str, optional
            A built-in model's parameters, as a dict or as ``"name=value"`` strings (``--param``).
        **options
            ``keep_values``, ``budget_bytes``, ``max_nodes``, ``check_finite``, ``isolate``, ``timeout``,
            ``max_memory_mb``, ``warm``, ``checks_max_nodes`` for this open only.

        Returns
        -------
        Job
            The newest open job; applying an older one's result changes nothing.
        """
        unknown = set(options) - set(self.options)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        job = OpenJob(target, params, {**self.options, **options})
        self._open_job = job
        return job

    def rerun_job(self) -> Job:
        """A job that opens the current target again with the current parameters."""
        return self.open_job(self._target, self._params or None)

    def checks_job(self, strict: bool = False, finite_diff: bool = True, fd_max_elements: int = 64) -> Job:
        """A job that checks the current recording (the stored checks when the model cannot run again).

        A model recorded in a child process (`isolate`) was checked there with the default options; other
        options check it again in a new child.
        """
        again = None
        if self._rerun is None and self._source in ("builtin", "script") and self.options["isolate"]:
            again = (self._target, self._params, self.options)
        return ChecksJob(self._recording, self._rerun, self._stored_checks,
                         {"strict": strict, "finite_diff": finite_diff, "fd_max_elements": fd_max_elements},
                         again=again)

    def export_job(self, path: str | os.PathLike, **options: Any) -> Job:
        """A job that exports the recording to `path` (options as `gradviz.core.exporters.export`)."""
        return ExportJob(self._recording, self._checks, path, options)

    def apply(self, result: JobResult) -> bool:
        """Take a job's result into the session and emit the signals; call on the session's own thread.

        Returns
        -------
        bool
            False when the result was stale and dropped (an older open, checks of another recording).
        """
        job = result.job
        if job.kind == "open":
            if job is not self._open_job:
                return False
            self._open_job = None
        elif job.kind == "checks" and job.recording is not self._recording:
            return False
        if result.cancelled:
            self.cancelled.emit()
        elif result.error is not None:
            self.failed.emit(result.message)
        elif job.kind == "open":
            self._set_opened(result.value)
        elif job.kind == "checks":
            self._checks = result.value
            self.checks_done.emit(result.value)
        return True

    def set_recording(self, rec: Recording, timeline: Timeline | None = None, *, rerun: Rerun | None = None,
                      checks: CheckTable | None = None) -> None:
        """Show a recording made elsewhere (``gradviz.record(...)``), at step 0; emits `recorded`.

        `rerun` defaults to the one `gradviz.record` remembered (`gradviz.core.rerun.rerun_of`);
        without one, `checks` (a table stored with a file) are the recording's checks.
        """
        rerun = rerun if rerun is not None else rerun_of(rec)
        source = "file" if rerun is None else source_of(rec.target)
        self._open_job = None
        self._set_opened(Opened(rec.target, dict(rec.params or {}) if source == "builtin" else {}, source, rec,
                                rerun, checks if rerun is None else None,
                                timeline if timeline is not None else Timeline(rec)))

    def snapshot(self) -> Opened | None:
        """What is open now (target, parameters, recording, re-run state, checks, timeline), for `restore`."""
        if self._recording is None:
            return None
        return Opened(self._target, dict(self._params), self._source, self._recording, self._rerun, self._checks,
                      self._timeline, dict(self._backends), stored=self._stored_checks)

    def restore(self, snapshot: Opened) -> None:
        """Show a `snapshot` of this or another session again, at step 0; emits `recorded`. No model code runs:
        a lesson going back to a parameter set it recorded, a window showing a lesson's recording."""
        self._open_job = None
        self._set_opened(snapshot)

    def _set_opened(self, opened: Opened) -> None:
        if self._stepper is not None:
            self._stepper.step_changed.disconnect(self._on_step_changed)
        self._target, self._params, self._source = opened.target, opened.params, opened.source
        self._recording, self._rerun, self._timeline = opened.recording, opened.rerun, opened.timeline
        # a file's checks are shown at once; a child's wait, as the in-process ones do, until asked for
        self._checks, self._flow = opened.checks, None
        self._stored_checks = opened.checks if opened.checks is not None else opened.stored
        self._backends = {**self._backends, **opened.backends}
        self._stepper = Stepper(opened.timeline)
        self._stepper.step_changed.connect(self._on_step_changed)
        self.recorded.emit(opened.recording)
        if opened.checks is not None:
            self.checks_done.emit(opened.checks)

    def _on_step_changed(self, state: StepState, changed) -> None:
        self.step_changed.emit(state, changed)

    def _run(self, job: Job, progress: Progress | None = None) -> Any:
        result = job.run(progress)
        self.apply(result)
        if result.cancelled:
            raise Cancelled()
        if result.error is not None:
            raise result.error
        return result.value

    # -- commands -------------------------------------------------------------------------------
    def open(self, target: Any, params: dict | list[str] | None = None, *, progress: Progress | None = None,
             **options: Any) -> Recording:
        """Open `target` now (see `open_job`); raise its error after emitting `failed`."""
        self._run(self.open_job(target, params, **options), progress)
        return self._recording

    def rerun(self, progress: Progress | None = None) -> Recording:
        """Open the current target again with the current parameters."""
        if self._target is None:
            raise GradvizError("there is nothing to re-run", hint="open a model first")
        self._run(self.rerun_job(), progress)
        return self._recording

    def set_param(self, key: str, value: Any) -> None:
        """Set a built-in model's parameter for the next `rerun` (the recording is not redone here)."""
        if self._source == "file":
            raise GradvizError(f"--param does not apply to a saved recording ({self._target})",
                               hint="parameters are fixed when recording: gradviz record MODEL --param ... -o FILE")
        if self._source != "builtin":
            raise GradvizError("parameters apply to built-in models only", hint="a model script sets its own values")
        spec = MODELS[self._target]
        if key not in spec.defaults:
            raise GradvizError(f"{self._target} has no parameter {key!r}",
                               hint=f"its parameters: {', '.join(spec.defaults)}")
        self._params[key] = value

    def run_checks(self, strict: bool = False, finite_diff: bool = True, fd_max_elements: int = 64,
                   progress: Progress | None = None) -> CheckTable:
        """Check the recording now (see `checks_job`) and return the table."""
        return self._run(self.checks_job(strict, finite_diff, fd_max_elements), progress)

    def export(self, path: str | os.PathLike, **options: Any) -> Path:
        """Export the recording to `path` now; ``.gradviz`` saves it with the session's checks."""
        progress = options.pop("progress", None)
        return self._run(self.export_job(path, **options), progress)

    def flow(self) -> GradientFlow | None:
        """The gradient norms of the recording per backward step, node, module use and leaf."""
        if self._recording is None:
            return None
        if self._flow is None:
            self._flow = gradient_flow(self._recording)
        return self._flow

    # -- stepping -------------------------------------------------------------------------------
    def step_to(self, i: int) -> StepState | None:
        """Go to step `i` (clamped to the timeline)."""
        return None if self._stepper is None else self._stepper.set_step(i)

    def next(self) -> StepState | None:
        """One step forward."""
        return None if self._stepper is None else self._stepper.next()

    def prev(self) -> StepState | None:
        """One step back."""
        return None if self._stepper is None else self._stepper.prev()

    def first(self) -> StepState | None:
        """The start: nothing computed."""
        return None if self._stepper is None else self._stepper.first()

    def last(self) -> StepState | None:
        """The end of backward."""
        return None if self._stepper is None else self._stepper.last()

    def go_to(self, node_id: int, phase: str = "backward") -> StepState | None:
        """Go to the step where node `node_id` runs in `phase` (else in the other phase); None if it never runs."""
        if self._timeline is None:
            return None
        step = self._timeline.step_of(node_id, phase)
        if step is None:
            step = self._timeline.step_of(node_id, "forward" if phase == "backward" else "backward")
        return None if step is None else self._stepper.set_step(step)

    def go_to_phase(self, phase: str) -> StepState | None:
        """Go to the first step of ``"forward"``, ``"backward"`` or ``"end"``."""
        if self._timeline is None:
            return None
        return self._stepper.set_step(self._timeline.phase_start(phase))
