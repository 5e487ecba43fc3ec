"""The one error a broken lesson raises: it names the file, the line and the problem."""
from __future__ import annotations

import re

from ..core.errors import GradvizError

__all__ = ["LessonError", "line_of", "key_line"]


class LessonError(GradvizError):
    """A lesson that cannot be loaded or run: ``FILE:LINE: problem`` (exit code 2 on the command line).

    Parameters
    ----------
    path : str or os.PathLike
        The lesson file at fault.
    line : int or None
        Its 1-based line, where known.
    problem : str
        What is wrong, in one sentence.
    hint : str, optional
        What to do about it.
    """

    def __init__(self, path, line: int | None, problem: str, hint: str = ""):
        where = f"{path}:{line}" if line else f"{path}"
        super().__init__(f"{where}: {problem}", hint=hint)
        self.path = str(path)
        self.line = line
        self.problem = problem


def key_line(text: str, key: str, start: int = 1) -> int | None:
    """The 1-based line at or after `start` where TOML key `key` is set (``key = ...``), else `line_of`."""
    pat = re.compile(rf"^\s*{re.escape(key)}\s*=|[{{,]\s*{re.escape(key)}\s*=")
    lines = text.splitlines()
    for i in range(max(0, start - 1), len(lines)):
        if pat.search(lines[i]):
            return i + 1
    return line_of(text, key, start)


def line_of(text: str, needle: str, start: int = 1) -> int | None:
    """The 1-based line of the first occurrence of `needle` in `text` at or after line `start`."""
    if not needle:
        return None
    lines = text.splitlines()
    for i in range(max(0, start - 1), len(lines)):
        if needle in lines[i]:
            return i + 1
    # a needle spanning lines (a multi-line string): find its first line
    first = needle.strip().splitlines()[0] if needle.strip() else ""
    if first and first != needle:
        return line_of(text, first, start)
    return None
