"""Run model code in a child process: a crash, an exit, an endless loop or a memory hog ends only the child.

`record_isolated` runs ``gradviz record TARGET -o FILE`` in a fresh interpreter (its own process
group, its data segment limited by ``max_memory_mb``), waits at most ``timeout`` seconds (or until
`cancel` says stop) and returns the ``.gradviz`` file the child wrote, recording and checks. The
caller opens it as data, so the model never runs in the caller's process. What went wrong in the
child becomes one `GradvizError` line: its own one-line error, "the model ran past the time limit",
"the model's process crashed with a segmentation fault (SIGSEGV)", "ended with exit code 0 before
the recording was made (did the model call os._exit()?)".
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from .errors import Cancelled, GradvizError

__all__ = ["record_isolated", "IsolatedRun"]

_SIGNAL_WORDS = {signal.SIGSEGV: "crashed with a segmentation fault", signal.SIGBUS: "crashed with a bus error",
                 signal.SIGILL: "crashed on an illegal instruction", signal.SIGFPE: "crashed on an arithmetic error",
                 signal.SIGABRT: "aborted", signal.SIGKILL: "was killed (out of memory?)"}


class IsolatedRun:
    """A recording made in a child process: ``path`` is its ``.gradviz`` file; `close` removes it."""

    def __init__(self, folder: Path, path: Path):
        self.folder = folder
        self.path = path

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "IsolatedRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _limit(max_memory_mb: float | None) -> Callable[[], None] | None:
    if not max_memory_mb:
        return None
    limit = int(max_memory_mb * 2**20)

    def apply() -> None:  # in the child, before it runs anything
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    return apply


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def record_isolated(target: str, params: list[str] | None = None, *, keep_values: bool = True,
                    max_nodes: int | None = None, budget_mb: float | None = None, checks: bool = True,
                    timeout: float | None = None, max_memory_mb: float | None = None,
                    cancel: Callable[[], bool] | None = None) -> IsolatedRun:
    """Record `target` (and run its checks) in a child process; return the file it wrote.

    Parameters
    ----------
    target : str
        A built-in model or a model script (``file.py[:function]``).
    params : list of str, optional
        ``NAME=VALUE`` parameters.
    keep_values, max_nodes, budget_mb, checks
        As for ``gradviz record``.
    timeout : float, optional
        Stop the child after this many seconds (default: no limit).
    max_memory_mb : float, optional
        The child's data segment limit in MiB (heap and tensors; torch itself needs about 300).
    cancel : callable, optional
        Polled every 0.1 s; returning True kills the child and raises `Cancelled`.

    Raises
    ------
    GradvizError
        One line saying what happened to the child.
    Cancelled
    """
    folder = Path(tempfile.mkdtemp(prefix="gradviz-isolate-"))
    out = folder / "run.gradviz"
    argv = [sys.executable, "-m", "gradviz.cli", "record", str(target), "-o", str(out)]
    for p in params or []:
        argv += ["--param", p]
    if max_nodes:
        argv += ["--max-nodes", str(int(max_nodes))]
    if budget_mb is not None:
        argv += ["--budget-mb", str(budget_mb)]
    if not keep_values:
        argv.append("--no-values")
    if not checks:
        argv.append("--no-checks")
    env = {k: v for k, v in os.environ.items() if k not in ("GRADVIZ_TEST_WRITE_PAUSE", "GRADVIZ_DEBUG")}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    err_path = folder / "stderr.txt"
    try:
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                    preexec_fn=_limit(max_memory_mb), start_new_session=True)
            start = time.monotonic()
            try:
                while proc.poll() is None:
                    if cancel is not None and cancel():
                        _kill(proc)
                        raise Cancelled()
                    if timeout is not None and time.monotonic() - start > timeout:
                        _kill(proc)
                        raise GradvizError(f"the model ran past the time limit of {timeout:g} s and was stopped",
                                           hint="raise --timeout, or make the model smaller")
                    time.sleep(0.1)
            except BaseException:
                if proc.poll() is None:
                    _kill(proc)
                raise
        code = proc.returncode
        lines = [ln for ln in err_path.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln[len("error: "):] for ln in lines if ln.startswith("error: ")]
        if code == 0 and out.is_file():
            return IsolatedRun(folder, out)
        if errors:
            message = errors[0]
            if ("out of memory" in message or "MemoryError" in message) and max_memory_mb:
                message += f" (the model's process is limited to {max_memory_mb:g} MiB by --max-memory)"
            hints = [ln[len("hint: "):] for ln in lines if ln.startswith("hint: ")]
            raise GradvizError(message, hint=hints[0] if hints else "")
        if code < 0:
            sig = signal.Signals(-code)
            words = _SIGNAL_WORDS.get(sig, "was stopped by a signal")
            raise GradvizError(f"the model's process {words} ({sig.name}); gradviz itself is fine",
                               hint="the crash is in the model code or a library it calls")
        raise GradvizError(f"the model's process ended with exit code {code} before the recording was made "
                           "(did the model call os._exit()?)", hint="build() must return the loss")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
