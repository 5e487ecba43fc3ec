"""Lessons: guided walks through live recordings that ask the learner to predict, then reveal and check.

A lesson is data: a folder with ``lesson.toml`` and one Markdown text per language (docs/lessons.md).
This package never imports Qt; the app's Lesson dock and ``gradviz lesson`` are its two front ends.

    from gradviz.lessons import load_lesson, LessonRun
    run = LessonRun(load_lesson("reusing-a-layer"), lang="zh").open()
    view = run.go(0)
"""
from .catalog import find_lesson, list_lessons, load_lesson
from .engine import CheckReport, LessonRun, Rendered, StepView, Verdict
from .errors import LessonError
from .format import Lesson
from .progress import Progress

__all__ = ["load_lesson", "list_lessons", "find_lesson", "LessonRun", "StepView", "Rendered", "Verdict",
           "CheckReport", "Lesson", "LessonError", "Progress"]
