"""The application model: a target, its recording, timeline, stepper and checks, moved by commands.

The command line, the Qt window and lessons all drive a `Session`; it never imports a GUI toolkit. Views
subscribe to its signals (as napari's ``QtDims`` watches ``Dims``) and hold no state of their own.

The rules about targets live here, once:

- a ``.gradviz`` file is *loaded* (no model code runs; ``params`` do not apply);
- a built-in model name, a script ``path.py[:function]`` or a callable is *recorded*;
- the checks of a recording whose model cannot run again (a loaded file) are the ones stored with it.

Long commands come in two forms. ``session.open(...)`` and ``session.run_checks(...)`` run at once and
raise on failure (the command line). For a GUI, ``job = session.open_job(...)`` then
``result = job.run(progress, cancelled)`` in any thread (it reads the session only when the job is
made and changes nothing), then ``session.apply(result)`` on the owner's thread: that changes the state
and emits the signals. A failed or cancelled job leaves the session as it was.
"""
from .jobs import (SOURCES, Job, JobResult, Opened, backend_availability, error_message,  # noqa: F401
                   source_of)
from .model import Session

__all__ = ["Session", "Job", "JobResult", "Opened", "source_of", "error_message", "backend_availability",
           "SOURCES"]
