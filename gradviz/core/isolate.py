"""Run model code in a child process: a crash, an exit, an endless loop or a memory hog ends only the child.

`record_isolated` runs ``gradviz record TARGET -o FILE`` in a fresh interpreter (its own process
group, its data segment limited by ``max_memory_mb``), waits at most ``timeout`` seconds (or until
`cancel` says stop) and returns the ``.gradviz`` file the child wrote, recording and checks. The
caller opens it as data, so the model never runs in the caller's process. What went wrong in the
child becomes one `GradvizError` line: its own one-line error, "the model ran past the time limit",
"the model's process crashed with a segmentation fault (SIGSEGV)", "ended with exit code 0 before
the recording was made (did the model call os._exit()?)".

Each run has a process of its own, used once. Starting one costs an interpreter and ``import torch``
(a second or more); with ``warm=True`` the next run's child is started as soon as a run ends and waits,
imports done, for its request (`gradviz.isolate_child`), so the app's next recording does not
pay for it. The child reports ``gradviz-isolate: progress FRACTION MESSAGE`` lines on stdout, passed
on to `progress`.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from .errors import Cancelled, GradvizError

__all__ = ["record_isolated", "IsolatedRun", "discard_spare", "spare_ready", "prestart", "APP_TIMEOUT_S",
           "app_max_memory_mb", "STARTUP_GRACE_S", "TAG"]

TAG = "gradviz-isolate:"  # the child's lines on stdout that the parent reads start with this
APP_TIMEOUT_S = 300.0  # the app's default time limit for one run of model code
STARTUP_GRACE_S = 120.0  # a child that has not begun its run this long after the limit is stopped too

_SIGNAL_WORDS = {signal.SIGSEGV: "crashed with a segmentation fault", signal.SIGBUS: "crashed with a bus error",
                 signal.SIGILL: "crashed on an illegal instruction", signal.SIGFPE: "crashed on an arithmetic error",
                 signal.SIGABRT: "aborted", signal.SIGKILL: "was killed (out of memory?)"}


def app_max_memory_mb() -> float:
    """The app's default memory limit for the model's process: half of this machine's RAM, in MiB."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4096.0
    return float(max(2048, total // 2 // 2**20))


class IsolatedRun:
    """A recording made in a child process: ``path`` is its ``.gradviz`` file; `close` removes it."""

    def __init__(self, folder: Path, path: Path, messages: list[str] | None = None):
        self.folder = folder
        self.path = path
        # the child's warning and notice lines, each once, in the order it printed them
        self.messages = messages or []

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "IsolatedRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Child:
    """One interpreter, started in its own process group, that will make one recording."""

    def __init__(self, max_memory_mb: float | None):
        self.key = _key(max_memory_mb)
        self.folder = Path(tempfile.mkdtemp(prefix="gradviz-isolate-"))
        self.err_path = self.folder / "stderr.txt"
        argv = [sys.executable, "-m", "gradviz.isolate_child"]
        if max_memory_mb:
            argv += ["--max-memory", str(float(max_memory_mb))]
        env = {k: v for k, v in os.environ.items() if k not in ("GRADVIZ_TEST_WRITE_PAUSE", "GRADVIZ_DEBUG")}
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.ready: float | None = None  # when the child said its imports were done (time.monotonic)
        self.begun: float | None = None  # when the child said it began the run
        self.progress: tuple[float, str] | None = None  # the newest progress it reported
        try:
            with open(self.err_path, "wb") as err:
                self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                             env=env, start_new_session=True)
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self._reader = threading.Thread(target=self._read, name="gradviz-isolate-reader", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        """Read the child's stdout to its end: our lines set `begun` and `progress`; the model's are dropped."""
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line.startswith(TAG):
                continue
            words = line[len(TAG):].strip().split(" ", 2)
            if words[0] == "ready":
                self.ready = time.monotonic()
            elif words[0] == "begin":
                self.begun = time.monotonic()
            elif words[0] == "progress" and len(words) >= 2:
                try:
                    self.progress = (min(1.0, max(0.0, float(words[1]))), words[2] if len(words) > 2 else "")
                except ValueError:
                    pass
        self.proc.stdout.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, argv: list[str]) -> None:
        """Ask for the run: ``gradviz ARGV`` in this process's current folder."""
        request = json.dumps({"argv": argv, "cwd": os.getcwd()}) + "\n"
        try:
            self.proc.stdin.write(request.encode())
            self.proc.stdin.close()  # the model's own reads of stdin see its end
        except OSError:  # it died already: its exit status says how
            pass

    def kill(self) -> None:
        """End the child and everything it started (its process group) now, and reap it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self.proc.kill()
        self.proc.wait()
        self._reader.join(5)

    def discard(self) -> None:
        """Kill it and remove its folder (a spare that is not needed)."""
        if self.alive():
            self.kill()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def _key(max_memory_mb: float | None) -> tuple:
    """What a spare child must match to be used: its memory limit, interpreter and import path."""
    return (float(max_memory_mb or 0), sys.executable, os.environ.get("PYTHONPATH", ""))


_spare: _Child | None = None
_spare_lock = threading.Lock()


def _take(max_memory_mb: float | None) -> _Child:
    """The waiting spare child if it fits and lives, else a new one."""
    global _spare
    with _spare_lock:
        child, _spare = _spare, None
    if child is not None and (child.key != _key(max_memory_mb) or not child.alive()):
        child.discard()
        child = None
    return child if child is not None else _Child(max_memory_mb)


def _start_spare(max_memory_mb: float | None) -> None:
    """Start the next run's child now: it imports torch while nothing else is asked of it."""
    global _spare
    child = _Child(max_memory_mb)
    with _spare_lock:
        old, _spare = _spare, child
    if old is not None:
        old.discard()


def prestart(max_memory_mb: float | None = None) -> None:
    """Start a spare child now unless one with this memory limit waits (the app, as its window is built)."""
    with _spare_lock:
        fits = _spare is not None and _spare.key == _key(max_memory_mb) and _spare.alive()
    if not fits:
        _start_spare(max_memory_mb)


def spare_ready() -> bool:
    """Whether a spare child waits with its imports done (the next warm run starts at once)."""
    with _spare_lock:
        return _spare is not None and _spare.ready is not None and _spare.alive()


def discard_spare() -> None:
    """End the waiting spare child, if any (at exit, and for tests)."""
    global _spare
    with _spare_lock:
        child, _spare = _spare, None
    if child is not None:
        child.discard()


atexit.register(discard_spare)


def _argv(target: str, params, out: Path, *, keep_values, max_nodes, budget_mb, checks, finite_diff,
          fd_max_elements, checks_max_nodes, lang) -> list[str]:
    argv = ["--lang", lang] if lang else []
    argv += ["record", str(target), "-o", str(out), "--progress"]
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
    if not finite_diff:
        argv.append("--no-fd")
    if fd_max_elements is not None:
        argv += ["--fd-elements", str(int(fd_max_elements))]
    if checks_max_nodes is not None:
        argv += ["--checks-max-nodes", str(int(checks_max_nodes))]
    return argv


def record_isolated(target: str, params: list[str] | None = None, *, keep_values: bool = True,
                    max_nodes: int | None = None, budget_mb: float | None = None, checks: bool = True,
                    finite_diff: bool = True, fd_max_elements: int | None = None,
                    checks_max_nodes: int | None = None, timeout: float | None = None, max_memory_mb: float | None = None,
                    cancel: Callable[[], bool] | None = None, progress: Callable[[float, str], None] | None = None,
                    started: Callable[[int], None] | None = None, warm: bool = False,
                    lang: str | None = None) -> IsolatedRun:
    """Record `target` (and run its checks) in a child process; return the file it wrote.

    Parameters
    ----------
    target : str
        A built-in model or a model script (``file.py[:function]``).
    params : list of str, optional
        ``NAME=VALUE`` parameters.
    keep_values, max_nodes, budget_mb, checks
        As for ``gradviz record``.
    finite_diff, fd_max_elements
        The finite-difference checks' options (``--no-fd``, ``--fd-elements``).
    checks_max_nodes : int, optional
        Run no checks for a graph of more nodes than this (``--checks-max-nodes``).
    timeout : float, optional
        Stop the child after its run has taken this many seconds (default: no limit).
    max_memory_mb : float, optional
        The child's data segment limit in MiB (heap and tensors; torch itself needs about 300).
    cancel : callable, optional
        Polled every 0.05 s; returning True kills the child (its process group) and raises `Cancelled`.
    progress : callable, optional
        ``progress(fraction, message)`` as the child reports how far it got.
    started : callable, optional
        ``started(pid)`` with the child's process id (also its process group's) once it has the request.
    warm : bool
        Use the spare child if one waits, and start the next run's spare when this run ends.
    lang : str, optional
        The language of the child's messages (``"en"``, ``"zh"``).

    Raises
    ------
    GradvizError
        One line saying what happened to the child.
    Cancelled
    """
    child = _take(max_memory_mb) if warm else _Child(max_memory_mb)
    out = child.folder / "run.gradviz"
    try:
        child.send(_argv(target, params, out, keep_values=keep_values, max_nodes=max_nodes, budget_mb=budget_mb,
                         checks=checks, finite_diff=finite_diff, fd_max_elements=fd_max_elements,
                         checks_max_nodes=checks_max_nodes, lang=lang))
        if started is not None:
            started(child.pid)
        _wait(child, timeout, cancel, progress)
        run = _result(child, out, max_memory_mb)
    except Cancelled:
        shutil.rmtree(child.folder, ignore_errors=True)
        raise  # no spare: a cancel is often the window closing
    except BaseException as exc:
        if child.alive():
            child.kill()
        shutil.rmtree(child.folder, ignore_errors=True)
        if warm and isinstance(exc, GradvizError):  # the model failed: the next run still wants a child
            _start_spare(max_memory_mb)
        raise
    if warm:
        _start_spare(max_memory_mb)
    return run


def _wait(child: _Child, timeout: float | None, cancel, progress) -> None:
    """Wait for the child to end; kill it on `cancel` or past `timeout` (counted from its run's start)."""
    sent = time.monotonic()
    shown = None
    while child.alive():
        if cancel is not None and cancel():
            child.kill()
            raise Cancelled()
        now, begun = time.monotonic(), child.begun
        if timeout is not None and (now - (begun if begun is not None else sent)
                                    > timeout + (0 if begun is not None else STARTUP_GRACE_S)):
            child.kill()
            raise GradvizError(f"the model ran past the time limit of {timeout:g} s and was stopped",
                               hint="raise --timeout, or make the model smaller")
        if progress is not None and child.progress is not None and child.progress != shown:
            shown = child.progress
            progress(*shown)
        time.sleep(0.05)
    child.proc.wait()
    child._reader.join(5)


def _result(child: _Child, out: Path, max_memory_mb: float | None) -> IsolatedRun:
    """The run's file, or its failure as one `GradvizError` line."""
    code = child.proc.returncode
    lines = [ln for ln in child.err_path.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln[len("error: "):] for ln in lines if ln.startswith("error: ")]
    if code == 0 and out.is_file():
        messages = list(dict.fromkeys(ln for ln in lines if ln.startswith(("warning: ", "notice: "))))
        return IsolatedRun(child.folder, out, messages)
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
