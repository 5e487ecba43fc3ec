"""Atomic file writes: a temporary file in the same folder, fsync, then ``os.replace``.

A write that fails or is cancelled half-way leaves no partial file and never replaces the old one.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import GradvizError

__all__ = ["atomic_path", "check_writable", "TEMP_PREFIX"]

TEMP_PREFIX = ".gradviz-tmp-"


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on a clean exit it replaces `path` atomically.

    The caller writes the whole file to the yielded path (by name, for writers that need one). On an
    exception (including a cancel) the temporary file is removed and `path` is left as it was.

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
        The path cannot be written (see `check_writable`).
    """
    final = check_writable(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=final.suffix, dir=final.parent)
    except OSError as exc:
        raise GradvizError(f"cannot write {str(final)!r}: {exc.strerror or exc}",
                           hint="choose a folder you can write to") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # the writer may have closed and replaced the file: sync what is there now
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        mode = (os.stat(final).st_mode & 0o7777) if final.exists() else (0o666 & ~umask)
        os.chmod(tmp, mode)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise GradvizError(f"cannot write {str(final)!r}: {exc.strerror or exc}") from None
        _fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
