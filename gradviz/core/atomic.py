"""Atomic file writes: a temporary file in the same folder, the writer's status checked, fsync, rename.

A write that fails, is cancelled or is stopped by SIGTERM, SIGINT or SIGHUP half-way leaves no
partial file and never replaces the old one: the temporary file is removed (signal handlers are
installed for the duration of the write, when it runs on the main thread, and the old ones restored).
A write killed outright (SIGKILL, power loss) can leave a ``.gradviz-tmp-<pid>-*`` file; the next
write to that folder removes those whose process is gone. A full disk or a read-only target is one
line, ``cannot write FILE: no space left on device``, and the old file stays byte for byte.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from .errors import GradvizError

__all__ = ["atomic_path", "atomic_write_bytes", "check_writable", "write_error", "sweep_leftovers",
           "TEMP_PREFIX", "PAUSE_ENV"]

TEMP_PREFIX = ".gradviz-tmp-"
PAUSE_ENV = "GRADVIZ_TEST_WRITE_PAUSE"  # tests only: seconds to wait with the temporary file written
_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))
_REASONS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "the disk quota is exceeded",
            errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.EFBIG: "the file is too large for the file system",
            errno.EIO: "an input/output error on the device"}


def write_error(path: str | os.PathLike, exc: OSError) -> GradvizError:
    """The one line for an `OSError` while writing `path`: ``cannot write FILE: no space left on device``."""
    reason = _REASONS.get(exc.errno) or exc.strerror or str(exc) or type(exc).__name__
    return GradvizError(f"cannot write {str(path)!r}: {reason}")


def check_writable(path: str | os.PathLike) -> Path:
    """Return `path` as an absolute Path, or raise a clear `GradvizError` if it cannot be written.

    Parameters
    ----------
    path : str or os.PathLike
        The file that will be written.

    Raises
    ------
    GradvizError
        The folder does not exist, the path is a folder, or the folder or file is not writable.
    """
    p = Path(os.fspath(path)).expanduser()
    if not p.name or p.is_dir():
        raise GradvizError(f"cannot write {str(p)!r}: it is a folder", hint="give a file name, e.g. run.gradviz")
    folder = p.absolute().parent
    if not folder.is_dir():
        raise GradvizError(f"cannot write {str(p)!r}: the folder {str(folder)!r} does not exist",
                           hint="create the folder first or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GradvizError(f"cannot write {str(p)!r}: no permission to write in {str(folder)!r}",
                           hint="choose a folder you can write to")
    if p.exists() and not os.access(p, os.W_OK):
        raise GradvizError(f"cannot write {str(p)!r}: the file is read-only",
                           hint="choose another name or make the file writable")
    return p.absolute()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def sweep_leftovers(folder: str | os.PathLike) -> list[str]:
    """Remove the temporary files of writes that were killed in `folder` (their process is gone).

    A name carries its writer's pid (``.gradviz-tmp-<pid>-*``); one without a pid is removed when it is
    older than this process. Returns the names removed.
    """
    removed = []
    started = _process_start()
    try:
        names = [n for n in os.listdir(folder) if n.startswith(TEMP_PREFIX)]
    except OSError:
        return removed
    for name in names:
        pid_text = name[len(TEMP_PREFIX):].split("-", 1)[0]
        full = os.path.join(folder, name)
        try:
            if pid_text.isdigit():
                pid = int(pid_text)
                if pid == os.getpid() or _alive(pid):
                    continue
            elif os.lstat(full).st_mtime >= started:
                continue
            os.unlink(full)
            removed.append(name)
        except OSError:
            continue
    return removed


def _process_start() -> float:
    """When this process started (wall clock), from /proc where there is one."""
    try:
        with open(f"/proc/{os.getpid()}/stat", "rb") as fh:
            ticks = int(fh.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/uptime", "rb") as fh:
            uptime = float(fh.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()


@contextlib.contextmanager
def _removed_on_signal(tmp: Path) -> Iterator[None]:
    """While the block runs (on the main thread), SIGTERM/SIGINT/SIGHUP first remove `tmp`."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread only; a killed worker's file is swept later
        return
    old = {}

    def handler(signum, frame):
        with contextlib.suppress(OSError):
            tmp.unlink()
        previous = old.get(signum, signal.SIG_DFL)
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            os.kill(os.getpid(), signum)  # die as the signal says, now that nothing is left behind

    try:
        for sig in _SIGNALS:
            try:
                old[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # pragma: no cover - not settable here
                pass
        yield
    finally:
        for sig, previous in old.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on a clean exit it replaces `path` atomically.

    The caller writes the whole file to the yielded path (by name, for writers that need one). On an
    exception (including a cancel) or SIGTERM/SIGINT/SIGHUP the temporary file is removed and `path`
    is left as it was. Leftovers of killed writes in the folder are removed first.

    Parameters
    ----------
    path : str or os.PathLike
        The final file.

    Yields
    ------
    pathlib.Path
        Where to write.

    Raises
    ------
    GradvizError
        The path cannot be written (see `check_writable`), or the write failed with an `OSError`
        (``cannot write FILE: no space left on device``).
    """
    final = check_writable(path)
    sweep_leftovers(final.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=final.suffix, dir=final.parent)
    except OSError as exc:
        raise write_error(final, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _removed_on_signal(tmp):
            try:
                yield tmp
                pause = os.environ.get(PAUSE_ENV)
                if pause:
                    time.sleep(float(pause))
                # the writer may have closed and replaced the file: sync what is there now
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                umask = os.umask(0)
                os.umask(umask)
                mode = (os.stat(final).st_mode & 0o7777) if final.exists() else (0o666 & ~umask)
                os.chmod(tmp, mode)
                os.replace(tmp, final)
            except OSError as exc:
                raise write_error(final, exc) from None
        _fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (see `atomic_path`); return the absolute path."""
    final = check_writable(path)
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
    return final
