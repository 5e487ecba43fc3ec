"""The session's jobs, and the rules about targets they apply.

A job is a long command: ``job.run(progress, cancelled)`` does the work in any thread, changes no
session state and never raises; ``Session.apply(result)`` takes the `JobResult` on the session's own
thread. The rules live here once: a ``.gradviz`` file is loaded (no model code runs, ``params`` do not
apply), anything else is recorded; the checks of a recording whose model cannot run again are the
ones stored with it (a file opens as a `Document`: the recording and its checks; a recording made
here comes with its `Rerun`).
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..backends import backend_names, get_backend
from ..checks import CheckTable, run_checks
from ..document import Document
from ..errors import Cancelled, ChildWarning, GradvizError
from ..exporters import export as export_recording
from ..i18n import language
from ..isolate import record_isolated
from ..models import MODELS
from ..recorder import record_run
from ..recording import Recording
from ..rerun import Rerun
from ..storage import OPEN_SUFFIXES, SUFFIX, read_document, write_document
from ..targets import Runner, parse_params
from ..timeline import Timeline

__all__ = ["Job", "JobResult", "Opened", "OpenJob", "ChecksJob", "ExportJob", "source_of", "error_message",
           "backend_availability", "SOURCES", "Progress"]

SOURCES = ("builtin", "script", "file", "callable")

Progress = Callable[[float, str], None]


def source_of(target: Any) -> str:
    """Say what `target` is: ``"file"`` (a saved recording), ``"builtin"``, ``"script"`` or ``"callable"``."""
    if isinstance(target, Runner) or (callable(target) and not isinstance(target, (str, os.PathLike))):
        return "callable"
    text = os.fspath(target) if isinstance(target, os.PathLike) else target
    if isinstance(text, str) and text.lower().endswith(OPEN_SUFFIXES):
        return "file"  # what the loader opens (storage.open_patterns(), the app's Open dialog offers the same)
    if isinstance(text, str) and text in MODELS:
        return "builtin"
    return "script"


def error_message(exc: BaseException) -> str:
    """The text a user sees for `exc`: the core's message (one line, then its details and hint)."""
    if isinstance(exc, GradvizError):
        return exc.format()
    return f"error: {type(exc).__name__}: {exc}"


def _checks(rec: Recording, rerun: Rerun | None, progress: Progress, **options: Any) -> CheckTable:
    """Run the checks of `rec`; the ones that need model code run only with `rerun`."""
    return run_checks(rec, rerun=rerun, progress=progress, **options)


def backend_availability() -> dict[str, tuple[bool, str]]:
    """``{backend: (available, reason)}`` for every backend of the linear op (builds compiled ones: slow once)."""
    out = {}
    for name in backend_names():
        info = get_backend(name)
        out[name] = (bool(info.available), info.reason)
    return out


# -- jobs ---------------------------------------------------------------------------------------
@dataclass
class JobResult:
    """What a job's ``run`` returns: a value, or an error message, or that it was cancelled.

    Attributes
    ----------
    job : Job
    value : object
        The job's result when it succeeded.
    error : BaseException or None
        The exception when it failed.
    message : str
        The text for the user when it failed (`error_message`).
    cancelled : bool
    """

    job: "Job"
    value: Any = None
    error: BaseException | None = None
    message: str = ""
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


def _no_progress(fraction: float, message: str = "") -> None:
    pass


def _never() -> bool:
    return False


class Job:
    """A long command: ``run(progress, cancelled)`` in any thread, then ``session.apply(result)``.

    ``run`` changes no session state and never raises (except `KeyboardInterrupt`): a failure or a
    cancel is part of the `JobResult`.
    """

    kind = "job"

    def run(self, progress: Progress | None = None, cancelled: Callable[[], bool] | None = None) -> JobResult:
        """Do the work; `progress(fraction, message)` reports, `cancelled()` is polled."""
        progress = progress or _no_progress
        cancelled = cancelled or _never
        try:
            value = self._work(progress, cancelled)
        except Cancelled:
            return JobResult(self, cancelled=True)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message for the user
            if cancelled():
                return JobResult(self, cancelled=True)
            return JobResult(self, error=exc, message=error_message(exc))
        if cancelled():
            return JobResult(self, cancelled=True)
        return JobResult(self, value=value)

    def _work(self, progress: Progress, cancelled: Callable[[], bool]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class Opened:
    """What an open job made: the recording, its re-run state, stored checks and timeline."""

    target: Any
    params: dict
    source: str
    recording: Recording
    rerun: Rerun | None
    checks: CheckTable | None
    timeline: Timeline
    backends: dict = dataclasses.field(default_factory=dict)
    stored: CheckTable | None = None  # checks made with the recording in a child, shown when asked for


def _record_in_child(target: Any, params: dict, options: dict, progress: Progress, cancelled: Callable[[], bool],
                     started: Callable[[int], None] | None = None, **checks: Any) -> Document:
    """Record `target` and run its checks in a child process (`gradviz.core.isolate`); open what it wrote."""
    progress(0.0, "Starting the model's process…")
    o = options
    checks.setdefault("checks_max_nodes", o.get("checks_max_nodes"))
    # the child takes NAME=VALUE text; an empty field (None) is the model's default, so it is left out
    given = [f"{k}={v}" for k, v in params.items() if v is not None]
    with record_isolated(os.fspath(target), given, keep_values=o["keep_values"],
                         max_nodes=o["max_nodes"], budget_mb=o["budget_bytes"] / 2**20, timeout=o["timeout"],
                         max_memory_mb=o["max_memory_mb"], cancel=cancelled, progress=progress, started=started,
                         warm=o["warm"], lang=language(), **checks) as run:
        for line in run.messages:  # the model's warnings reach the user as the child printed them
            warnings.warn(ChildWarning(line))
        return read_document(run.path, cancel=cancelled)


class OpenJob(Job):
    """Open a target: load a ``.gradviz`` file, or record a model (here, or in a child with ``isolate``).

    Attributes
    ----------
    pid : int or None
        The process id of the child recording the model (``isolate``), once it has started.
    """

    kind = "open"

    def __init__(self, target: Any, params: Any, options: dict):
        self.target, self.params, self.options = target, params, options
        self.pid: int | None = None

    def _started(self, pid: int) -> None:
        self.pid = pid

    def _work(self, progress: Progress, cancelled: Callable[[], bool]) -> Opened:
        target = self.target
        if target is None or (isinstance(target, str) and not target.strip()):
            raise GradvizError("nothing to open", hint="give a built-in model name, a model script or a .gradviz file")
        params = parse_params(self.params) if isinstance(self.params, (list, tuple)) else dict(self.params or {})
        source = source_of(target)
        if source == "file":
            # a saved recording: opened as data, the model is not run again
            if params:
                raise GradvizError(f"--param does not apply to a saved recording ({os.fspath(target)})",
                                   hint="parameters are fixed when recording: gradviz record MODEL --param ... -o FILE")
            progress(0.0, "Opening…")
            doc = read_document(target, progress=lambda f, m: progress(0.9 * f, m), cancel=cancelled)
            rec, rerun, checks = doc.recording, None, doc.checks
            target = os.fspath(target)
            backends = {}
        else:
            backends = {}
            # compiled backends are built (once per process, cached on disk) here, in the job's thread,
            # never by a view: the one asked for before recording, the others after it, so that the
            # views can show which ones can run without asking themselves
            has_backend = source == "builtin" and "backend" in MODELS[target].defaults
            if has_backend:
                name = str(params.get("backend", MODELS[target].defaults["backend"]))
                if name != "torch":
                    progress(0.0, f"Preparing the {name} backend…")
                    get_backend(name)
                if cancelled():
                    raise Cancelled()
            o = self.options
            stored = None
            if o.get("isolate") and source in ("builtin", "script"):
                # model code runs in a child process; this one opens the recording and checks it sent as data
                doc = _record_in_child(target, params, o, lambda f, m: progress(0.85 * f, m), cancelled,
                                       self._started)
                rec, rerun, checks, stored = doc.recording, None, None, doc.checks
            else:
                run = record_run(target, params=params or None, keep_values=o["keep_values"],
                                 budget_bytes=o["budget_bytes"], max_nodes=o["max_nodes"],
                                 check_finite=o["check_finite"], progress=lambda f, m: progress(0.85 * f, m),
                                 cancel=cancelled)
                rec, rerun, checks = run.recording, run.rerun, None
            if has_backend:
                progress(0.85, "Checking which backends can run…")
                backends = backend_availability()
        progress(0.9, "Building the timeline…")
        timeline = Timeline(rec)
        progress(1.0, "")
        return Opened(target, params, source, rec, rerun, checks, timeline, backends,
                      stored=stored if source != "file" else None)


class ChecksJob(Job):
    kind = "checks"

    def __init__(self, rec: Recording, rerun: Rerun | None, stored: CheckTable | None, options: dict,
                 again: tuple | None = None):
        self.recording, self.rerun, self.stored, self.options = rec, rerun, stored, options
        self.again = again  # (target, params, session options): a model recorded in a child, to run there again
        self.pid: int | None = None

    def _started(self, pid: int) -> None:
        self.pid = pid

    def _work(self, progress: Progress, cancelled: Callable[[], bool]) -> CheckTable:
        if self.recording is None:
            raise GradvizError("there is no recording to check", hint="open a model first")
        strict = self.options.get("strict", False)
        defaults = self.options.get("finite_diff", True) and self.options.get("fd_max_elements", 64) == 64
        if self.rerun is None and self.stored is not None and (self.again is None or defaults):
            # the checks made with the recording (in a child, with the default options), or stored in a file
            return dataclasses.replace(self.stored, strict=strict)
        if self.rerun is None and self.again is not None:
            # other options: the model is recorded and checked again in a new child
            target, params, options = self.again
            doc = _record_in_child(target, params, options, progress, cancelled, self._started,
                                   checks_max_nodes=None, finite_diff=self.options.get("finite_diff", True),
                                   fd_max_elements=self.options.get("fd_max_elements", 64))
            if doc.checks is None:
                raise GradvizError("the model's process sent no checks", hint="run gradviz check TARGET")
            return dataclasses.replace(doc.checks, strict=strict)
        return _checks(self.recording, self.rerun, progress, **self.options)


class ExportJob(Job):
    kind = "export"

    def __init__(self, rec: Recording, checks: CheckTable | None, path: Any, options: dict):
        self.recording, self.checks, self.path, self.options = rec, checks, path, options

    def _work(self, progress: Progress, cancelled: Callable[[], bool]) -> Path:
        if self.recording is None:
            raise GradvizError("there is no recording to export", hint="open a model first")
        if str(os.fspath(self.path)).lower().endswith(SUFFIX):
            # the document: the recording with the checks the session has (stored or run now)
            return write_document(self.path, Document(self.recording, self.checks), cancel=cancelled)
        return export_recording(self.recording, self.path, progress=progress, cancel=cancelled, **self.options)
