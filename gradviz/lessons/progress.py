"""A learner's progress through the lessons, kept between runs in a small JSON file.

The file is ``lessons.json`` in the user's config folder: ``$GRADVIZ_CONFIG_DIR`` when set (tests use
it), else ``$XDG_CONFIG_HOME/gradviz`` or ``~/.config/gradviz`` (``%APPDATA%\\gradviz`` on Windows).
A damaged file is read as empty progress; a failed write keeps the old file (an atomic replace).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.atomic import atomic_path

__all__ = ["config_dir", "Progress"]


def config_dir() -> Path:
    """The folder gradviz keeps user settings in."""
    env = os.environ.get("GRADVIZ_CONFIG_DIR")
    if env:
        return Path(env)
    if os.name == "nt" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "gradviz"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "gradviz"


class Progress:
    """Per lesson: the step reached, the steps seen, the answers given and whether it was finished."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else config_dir() / "lessons.json"
        self.data: dict = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.data = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.data = {}

    def lesson(self, name: str) -> dict:
        """The progress record of lesson `name` (created empty)."""
        rec = self.data.setdefault(name, {})
        if not isinstance(rec, dict):
            rec = self.data[name] = {}
        rec.setdefault("step", None)
        rec.setdefault("seen", [])
        rec.setdefault("answers", {})
        rec.setdefault("finished", False)
        return rec

    def visit(self, name: str, step_id: str) -> None:
        rec = self.lesson(name)
        rec["step"] = step_id
        if step_id not in rec["seen"]:
            rec["seen"].append(step_id)

    def answer(self, name: str, step_id: str, given: str, correct: bool) -> None:
        self.lesson(name)["answers"][step_id] = {"given": given, "correct": bool(correct)}

    def finish(self, name: str) -> None:
        self.lesson(name)["finished"] = True

    def summary(self, name: str, total: int) -> str:
        """``"3/7 steps, finished"``-style text (empty when the lesson was never opened)."""
        rec = self.data.get(name)
        if not isinstance(rec, dict):
            return ""
        right = sum(1 for a in rec.get("answers", {}).values() if isinstance(a, dict) and a.get("correct"))
        text = f"{min(len(rec.get('seen', [])), total)}/{total} steps"
        if rec.get("answers"):
            text += f", {right}/{len(rec['answers'])} predictions right"
        return text + (", finished" if rec.get("finished") else "")

    def save(self) -> bool:
        """Write the file atomically; False (and the old file kept) when it cannot be written."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path) as tmp:
                Path(tmp).write_text(json.dumps(self.data, indent=1, ensure_ascii=False), encoding="utf-8")
            return True
        except OSError:
            return False
