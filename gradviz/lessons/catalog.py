"""The lessons shipped with gradviz, and finding a lesson by name or folder."""
from __future__ import annotations

from pathlib import Path

from .errors import LessonError
from .expr import Scope
from .format import Lesson, read_lesson

__all__ = ["DATA", "FUNCTION_NAMES", "lesson_folders", "find_lesson", "load_lesson", "list_lessons"]

DATA = Path(__file__).parent / "data"
def _function_names() -> frozenset:
    from ..core.recording import Recording

    empty = Recording("", {}, [], [], [], [], [], {})
    return frozenset(Scope(empty).functions)


# the functions a lesson expression may call (the same for every recording)
FUNCTION_NAMES = _function_names()


def lesson_folders() -> list[Path]:
    """The folders of the shipped lessons."""
    return sorted(p for p in DATA.iterdir() if (p / "lesson.toml").is_file()) if DATA.is_dir() else []


def find_lesson(name_or_path) -> Path:
    """The folder of a shipped lesson called `name_or_path`, or `name_or_path` itself when it is a folder."""
    p = Path(str(name_or_path)).expanduser()
    if p.is_dir():
        return p
    if p.name == "lesson.toml" and p.is_file():
        return p.parent
    for folder in lesson_folders():
        if folder.name == str(name_or_path):
            return folder
    names = ", ".join(f.name for f in lesson_folders())
    raise LessonError(name_or_path, None, "no such lesson or lesson folder",
                      hint=f"the lessons: {names} (gradviz lesson --list)")


def load_lesson(name_or_path) -> Lesson:
    """Read and statically check a lesson by name or folder."""
    return read_lesson(find_lesson(name_or_path), FUNCTION_NAMES)


def list_lessons() -> list[Lesson]:
    """Every shipped lesson, in its order."""
    return sorted((load_lesson(f) for f in lesson_folders()), key=lambda les: (les.order, les.name))
