"""Run a lesson on a live recording: resolve its steps to events, fill in its text, grade predictions.

`LessonRun` drives a `gradviz.core.session.Session`: it records the lesson's
target, binds every step to the timeline step of its event, moves the stepper there on `go`, renders
the step's text with the live values in it, grades the learner's answers against the prediction's own
expression, and decides whether the lesson's check table holds (every check passes, or exactly the
failures the lesson expects).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.session import Session
from .errors import LessonError, key_line, line_of
from .expr import ExpressionError, Scope, find_nodes, format_value
from .format import Lesson, Step, choices_of
from .text import Block, Section, find_placeholders, split_blocks

__all__ = ["Rendered", "StepView", "Verdict", "LessonRun", "CheckReport"]


@dataclass
class Rendered:
    """A block with its live values filled in: ``text`` (Markdown), ``math`` (mathtext without the
    ``$``), or ``matrix`` (``value`` is the array, ``caption`` its name)."""

    kind: str
    text: str
    caption: str = ""
    value: Any = None


@dataclass
class StepView:
    """What a front end shows at one step of a lesson."""

    index: int
    id: str
    title: str
    event: str  # the timeline caption of the step's event
    timeline_step: int
    blocks: list
    question: list = field(default_factory=list)
    choices: list = field(default_factory=list)
    kind: str | None = None
    checks: Any = None  # the CheckTable, on a step that shows it


@dataclass
class Verdict:
    """The grade of one answer."""

    correct: bool
    given: str
    expected: str
    message: str


@dataclass
class CheckReport:
    """What ``gradviz lesson NAME --check`` found: one line per item, and whether all hold."""

    lines: list = field(default_factory=list)
    ok: bool = True

    def add(self, ok: bool, text: str) -> None:
        self.lines.append(f"{'ok  ' if ok else 'FAIL'}  {text}")
        self.ok = self.ok and ok


class LessonRun:
    """One learner's walk through one lesson, in one language.

    Parameters
    ----------
    lesson : Lesson
    lang : str
        ``"en"`` or ``"zh"`` (any language the lesson has a text for).
    session : gradviz.core.session.Session, optional
        The session the lesson drives (it records the target, moves the step, runs the checks); a new
        one when None.
    """

    def __init__(self, lesson: Lesson, lang: str = "en", session=None):
        if lang not in lesson.texts:
            raise LessonError(lesson.folder, None, f"the lesson has no {lang!r} text; it has "
                              f"{', '.join(lesson.texts)}")
        if session is None:
            session = Session()
        self.lesson = lesson
        self.lang = lang
        self.session = session
        self.position = 0
        self._steps: list[int] = []
        self._scope: Scope | None = None
        # a part: the steps that run on one set of the target's parameters
        self._parts: list[dict] = []
        for s in lesson.steps:
            if s.params not in self._parts:
                self._parts.append(s.params)
        self._part_of_all = [self._parts.index(s.params) for s in lesson.steps]  # per step of the lesson
        self._part_of = list(self._part_of_all)  # per step shown
        self._part: int | None = None
        self._made: dict = {}  # part -> the session's snapshot of its recording
        self.steps: list[Step] = list(lesson.steps)  # the steps shown here (a step's `when` may drop it)

    # -- set-up ---------------------------------------------------------------------------------
    @property
    def text(self):
        return self.lesson.texts[self.lang]

    @property
    def recording(self):
        return self.session.recording

    def __len__(self) -> int:
        return len(self.steps)

    def open(self) -> "LessonRun":
        """Record the lesson's target (once per parameter set) and resolve every step to a timeline step."""
        steps = self.lesson.steps
        resolved: dict[int, int] = {}
        for part in reversed(range(len(self._parts))):
            self._open_part(part)
            for k, s in enumerate(steps):
                if self._part_of_all[k] != part:
                    continue
                if s.when is not None:
                    line = line_of(self.lesson.toml_text, s.when, s.line or 1)
                    if not self._evaluate(s.when, self.lesson.toml_path, line):
                        continue
                resolved[k] = self.resolve(s)
        keep = sorted(resolved)
        self.steps = [steps[k] for k in keep]
        self._part_of = [self._part_of_all[k] for k in keep]
        self._steps = [resolved[k] for k in keep]
        return self

    def _open_part(self, part: int) -> None:
        """Run the target with the parameters of `part` (the session records it afresh)."""
        if self._part == part:
            return
        made = self._made.get(part)
        if made is not None:
            # recorded before: shown again as it was (no model code runs, no child process starts)
            self.session.restore(made)
        else:
            self.session.open(self.lesson.resolved_target(), dict(self._parts[part]) or None)
            if hasattr(self.session, "snapshot"):
                self._made[part] = self.session.snapshot()
        self._scope = Scope(self.session.recording, getattr(self.session, "checks", None))
        self._part = part

    @property
    def parts(self) -> int:
        """How many parameter sets the lesson runs its target with."""
        return len(self._parts)

    def set_language(self, lang: str) -> None:
        """Show the text in `lang` from now on."""
        if lang not in self.lesson.texts:
            raise LessonError(self.lesson.folder, None, f"the lesson has no {lang!r} text")
        self.lang = lang

    def resolve(self, step: Step) -> int:
        """The timeline step that `step`'s binding names; `LessonError` at its line when none does."""
        tl = self.session.timeline
        at = step.at
        if at.phase == "start":
            return 0
        if at.phase == "end":
            return len(tl) - 1
        if at.node is None:
            return tl.phase_start(at.phase)
        hits = find_nodes(self.recording, at.node, module=at.module, use=at.use, backend=at.backend)
        steps = [i for i in (tl.step_of(n.id, at.phase) for n in hits) if i is not None]
        steps = sorted(set(steps))
        if not 1 <= at.nth <= len(steps):
            names = sorted({n.name for n in self.recording.nodes} | set(self.recording.leaves))
            line = key_line(self.lesson.toml_text, "at", step.line or 1) or step.line
            found = f"{len(steps)} such event(s)" if hits else "no such node"
            raise LessonError(self.lesson.toml_path, line,
                              f"step {step.id!r}: no event {at.describe()} in the recording of "
                              f"{self.lesson.target} ({found}); its nodes: {', '.join(names)}")
        return steps[at.nth - 1]

    def timeline_step(self, k: int) -> int:
        """The timeline step of lesson step `k`."""
        return self._steps[k]

    # -- moving ---------------------------------------------------------------------------------
    def go(self, k: int) -> StepView:
        """Go to lesson step `k` (clamped): move the session's stepper to its event; return its view."""
        k = max(0, min(int(k), len(self) - 1))
        self.position = k
        self._open_part(self._part_of[k])
        self.session.step_to(self._steps[k])
        return self.view(k)

    def next(self) -> StepView:
        return self.go(self.position + 1)

    def back(self) -> StepView:
        return self.go(self.position - 1)

    # -- text -----------------------------------------------------------------------------------
    def _evaluate(self, expr: str, path, line: int | None):
        try:
            return self._scope.evaluate(expr)
        except ExpressionError as exc:
            raise LessonError(path, line, str(exc)) from None

    def fill(self, text: str, line: int, path=None) -> str:
        """`text` with every placeholder replaced by its live value."""
        path = path or self.text.path
        out, last = [], 0
        for a, b, expr, spec in find_placeholders(text, self._scope.functions):
            value = self._evaluate(expr, path, line + text.count("\n", 0, a))
            try:
                shown = format_value(value, spec)
            except (ValueError, TypeError):
                raise LessonError(path, line + text.count("\n", 0, a),
                                  f"the format {spec!r} does not apply to the value of {expr!r}") from None
            out += [text[last:a], shown]
            last = b
        out.append(text[last:])
        return "".join(out)

    def render(self, section: Section | None, skip_items: bool = False) -> list[Rendered]:
        """The blocks of `section` with live values."""
        if section is None:
            return []
        out = []
        for block in split_blocks(section):
            out.append(self._render_block(block, skip_items))
        return [r for r in out if r is not None]

    def _render_block(self, block: Block, skip_items: bool) -> Rendered | None:
        path = self.text.path
        if block.kind == "matrix":
            value = self._evaluate(block.text, path, block.line)
            return Rendered("matrix", format_value(value), block.caption, value)
        text = block.text
        if skip_items:
            text = "\n".join(ln for ln in text.splitlines() if not ln.strip().startswith(("- ", "* ")))
            if not text.strip():
                return None
        return Rendered(block.kind, self.fill(text, block.line, path))

    def view(self, k: int) -> StepView:
        """The view of lesson step `k`: title, event, text, question and choices (no reveal)."""
        step = self.steps[k]
        tl = self.session.timeline
        ti = self._steps[k]
        sec = self.text.steps[step.id]
        table = self.ensure_checks() if step.checks else None
        blocks = (self.render(self.text.intro) if k == 0 else []) + self.render(sec)
        view = StepView(k, step.id, sec.title, tl.steps[ti].describe(self.recording), ti, blocks)
        if step.predict is not None:
            q = self.text.predict[step.id]
            view.kind = step.predict.kind
            view.question = self.render(q, skip_items=step.predict.kind == "choice")
            if step.predict.kind == "choice":
                view.choices = [self.fill(c, q.line) for c in choices_of(q)]
        view.checks = table
        return view

    def reveal(self, k: int) -> list[Rendered]:
        """The explanation shown once step `k`'s prediction is answered."""
        return self.render(self.text.reveal.get(self.steps[k].id))

    # -- predictions ----------------------------------------------------------------------------
    def expected(self, k: int):
        """The right answer of step `k`'s prediction, from its expression: a float, a shape or a choice."""
        step = self.steps[k]
        p = step.predict
        line = line_of(self.lesson.toml_text, p.answer, step.line or 1)
        value = self._evaluate(p.answer, self.lesson.toml_path, line)
        try:
            if p.kind == "number":
                return float(np.asarray(value, dtype=np.float64).reshape(-1)[0]) if np.size(value) == 1 else _bad()
            if p.kind == "shape":
                return tuple(int(s) for s in value)
            n = int(value)
            if not 1 <= n <= len(choices_of(self.text.predict[step.id])):
                _bad()
            return n
        except (TypeError, ValueError):
            kinds = {"number": "one number", "shape": "a shape (a tuple)", "choice": "the number of a choice"}
            raise LessonError(self.lesson.toml_path, line, f"step {step.id!r}: the answer {p.answer!r} is "
                              f"{format_value(value)}, not {kinds[p.kind]}") from None

    def answer_text(self, k: int) -> str:
        """The right answer of step `k` as the learner would type it."""
        value = self.expected(k)
        p = self.steps[k].predict
        if p.kind == "number":
            if float(value).is_integer() and abs(value) < 1e15:
                return str(int(value))
            return f"{value:.4f}" if abs(value) >= 1e-3 else f"{value:.4g}"
        if p.kind == "shape":
            return format_value(value)
        return str(value)

    def _w(self, text: str) -> str:
        """A word of the grading messages in the run's language."""
        return _ZH.get(text, text) if self.lang == "zh" else text

    def grade(self, k: int, given: str) -> Verdict:
        """Grade the learner's answer `given` (text) to step `k`'s prediction."""
        p = self.steps[k].predict
        if p is None:
            raise ValueError(f"step {self.steps[k].id!r} asks nothing")
        expected = self.expected(k)
        shown = self.answer_text(k)
        given = str(given).strip()
        if p.kind == "number":
            try:
                x = float(given.replace("−", "-"))
            except ValueError:
                return Verdict(False, given, shown, f"{given!r} {self._w('is not a number')}")
            tol = p.tolerance + p.rtol * abs(expected)
            ok = abs(x - expected) <= tol
            return Verdict(ok, given, shown, f"{self._w('right' if ok else 'not quite')}: "
                           f"{self._w('the answer is')} {shown} ({self._w('within')} {tol:.3g})")
        if p.kind == "shape":
            parsed = _parse_shape(given)
            if parsed is None:
                return Verdict(False, given, shown, f"{given!r} {self._w('is not a shape; write it as (2, 3)')}")
            ok = parsed == expected
            return Verdict(ok, given, shown, f"{self._w('right' if ok else 'not quite')}: "
                           f"{self._w('the shape is')} {shown}")
        choices = choices_of(self.text.predict[self.steps[k].id])
        pick = _parse_choice(given, choices)
        if pick is None:
            return Verdict(False, given, shown, f"{given!r} {self._w('is not one of the choices')} 1..{len(choices)}")
        ok = pick == expected
        return Verdict(ok, given, shown, f"{self._w('right' if ok else 'not quite')}: "
                       f"{self._w('the answer is')} {expected}. {self.fill(choices[expected - 1], 1)}")

    # -- checks ---------------------------------------------------------------------------------
    def ensure_checks(self):
        """Run the check table once (for the step that shows it, and for ``--check``)."""
        if getattr(self.session, "checks", None) is None:
            self.session.run_checks(strict=self.lesson.strict)
        table = self.session.checks
        self._scope.checks = table
        return table

    def checks_hold(self, part: int | None = None) -> tuple[bool, list[str]]:
        """Whether the check table (of the current part, or of `part`) is as the lesson says: all pass,
        or exactly the expected failures."""
        if part is not None:
            self._open_part(part)
        table = self.ensure_checks()
        failed = table.failed
        notes = []
        ok = True
        for kind, what in self.lesson.expect_fail:
            hits = [r for r in failed if r.kind == kind and what in r.what]
            notes.append(f"expected failure {kind} '{what}': {'seen' if hits else 'NOT seen'}"
                         + (f" ({hits[0].what.strip()})" if hits else ""))
            ok = ok and bool(hits)
        for r in failed:
            if not any(r.kind == kind and what in r.what for kind, what in self.lesson.expect_fail):
                notes.append(f"unexpected failure: {r.kind} {r.what}")
                ok = False
        return ok, notes

    def self_check(self) -> CheckReport:
        """Walk every step, render it, answer every prediction with its own expression, run the checks."""
        report = CheckReport()
        for k, step in enumerate(self.steps):
            view = self.go(k)
            report.add(True, f"step {step.id}: {view.event}")
            self.reveal(k)
            if step.predict is not None:
                verdict = self.grade(k, self.answer_text(k))
                report.add(verdict.correct, f"step {step.id}: prediction ({step.predict.kind}) "
                           f"{step.predict.answer} = {verdict.expected}")
        for part, params in enumerate(self._parts):
            ok, notes = self.checks_hold(part)
            table = self.session.checks
            counts = ", ".join(f"{v} {k}" for k, v in table.counts().items())
            with_params = ", ".join(f"{k}={v}" for k, v in params.items())
            report.add(ok, f"check table of {self.lesson.target}" + (f" ({with_params})" if with_params else "")
                       + f": {len(table.rows)} checks ({counts})"
                       + (f"; {len(self.lesson.expect_fail)} failure(s) expected" if self.lesson.expect_fail else ""))
            for note in notes:
                report.add("NOT" not in note and "unexpected" not in note, note)
        return report


_ZH = {"right": "正确", "not quite": "不对", "the answer is": "答案是", "the shape is": "形状是", "within": "误差不超过",
       "is not a number": "不是一个数", "is not a shape; write it as (2, 3)": "不是形状，请写成 (2, 3) 的形式",
       "is not one of the choices": "不是选项之一"}


def _bad():
    raise ValueError


def _parse_shape(text: str) -> tuple | None:
    t = text.strip().lower()
    if t in ("()", "scalar", "标量", ""):
        return ()
    if not re.fullmatch(r"[\s(\[]*\d+(\s*[,x×*]\s*\d+)*\s*,?[\s)\]]*", t):
        return None
    return tuple(int(s) for s in re.findall(r"\d+", t))


def _parse_choice(text: str, choices: list[str]) -> int | None:
    t = text.strip().rstrip(".)")
    if t.isdigit() and 1 <= int(t) <= len(choices):
        return int(t)
    for i, c in enumerate(choices, 1):
        if t and t.lower() == c.strip().lower():
            return i
    return None
