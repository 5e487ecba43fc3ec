"""Read a lesson folder: ``lesson.toml`` (target, steps, bindings, predictions) and its Markdown texts.

Reading checks everything that can be checked without running the target: the TOML syntax, every
key's name and type, that every expression is allowed and calls known functions, and that every step
has a text in every language. Anything wrong raises `LessonError` naming the file and the line.
Resolving bindings to events and evaluating expressions needs the recording: see
`gradviz.lessons.engine`.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LessonError, key_line, line_of
from .expr import check_expression
from .text import MarkdownText, find_placeholders, parse_markdown, split_blocks

__all__ = ["Binding", "Prediction", "Step", "Lesson", "read_lesson", "PHASES", "KINDS", "LANGUAGES"]

PHASES = ("start", "forward", "backward", "end")
KINDS = ("number", "shape", "choice")
LANGUAGES = ("en", "zh")

_LESSON_KEYS = {"target": str, "params": dict, "order": int, "languages": list}
_STEP_KEYS = {"id": str, "at": dict, "predict": dict, "checks": bool, "params": dict, "when": str}
_AT_KEYS = {"phase": str, "node": str, "use": int, "module": str, "backend": str, "nth": int}
_PREDICT_KEYS = {"kind": str, "answer": str, "tolerance": (int, float), "rtol": (int, float)}
_CHECKS_KEYS = {"strict": bool, "finite_diff": bool, "expect_fail": list}
_EXPECT_KEYS = {"kind": str, "what": str}


@dataclass
class Binding:
    """Where a step sits in the recording: a phase and, optionally, a node of it.

    The node is named (``MulBackward0``, a leaf name), and told apart from others of that name by
    module, module use, backend or `nth` (1-based, in the order backward ran them).
    """

    phase: str
    node: str | None = None
    use: int | None = None
    module: str | None = None
    backend: str | None = None
    nth: int = 1

    def describe(self) -> str:
        parts = [self.phase] + ([self.node] if self.node else [])
        parts += [f"{k}={v}" for k, v in (("module", self.module), ("use", self.use), ("backend", self.backend))
                  if v is not None]
        if self.nth != 1:
            parts.append(f"nth={self.nth}")
        return " ".join(parts)


@dataclass
class Prediction:
    """What the learner predicts at a step: its kind, the expression that answers it, the tolerance."""

    kind: str
    answer: str
    tolerance: float = 1e-3
    rtol: float = 0.0


@dataclass
class Step:
    """One step of a lesson."""

    id: str
    at: Binding
    predict: Prediction | None = None
    checks: bool = False
    line: int | None = None
    params: dict = field(default_factory=dict)  # the target's parameters from this step on
    when: str | None = None  # an expression: the step is shown only where it is true


@dataclass
class Lesson:
    """A lesson as read from its folder."""

    name: str
    folder: Path
    target: str
    params: dict
    order: int
    steps: list
    texts: dict  # language -> MarkdownText
    strict: bool = False
    finite_diff: bool = True
    expect_fail: list = field(default_factory=list)  # of (kind, what substring)
    toml_text: str = ""

    @property
    def toml_path(self) -> Path:
        return self.folder / "lesson.toml"

    @property
    def languages(self) -> list[str]:
        return list(self.texts)

    def title(self, lang: str = "en") -> str:
        return self.texts.get(lang, next(iter(self.texts.values()))).title

    def resolved_target(self) -> str:
        """The target as the recorder takes it: a script in the lesson folder becomes its full path."""
        path, sep, fn = self.target.partition(":")
        if path.endswith(".py"):
            return str((self.folder / path).resolve()) + (sep + fn if sep else "")
        return self.target


def _toml_line(message: str) -> int | None:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else None


def _check_keys(path, text, table: dict, allowed: dict, where: str, start: int | None) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise LessonError(path, key_line(text, key, start or 1) or start,
                              f"unknown key {key!r} in {where}; allowed: {', '.join(allowed)}")
        want = allowed[key]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            raise LessonError(path, key_line(text, key, start or 1) or start,
                              f"{where}.{key} must be a {names}, not {value!r}")


def read_lesson(folder, functions) -> Lesson:
    """Read and statically check the lesson in `folder`.

    Parameters
    ----------
    folder : str or Path
    functions : collection of str
        The function names expressions may call (`gradviz.lessons.expr.Scope.functions`).
    """
    folder = Path(folder)
    path = folder / "lesson.toml"
    if not folder.is_dir():
        raise LessonError(folder, None, "no such lesson folder", hint="gradviz lesson --list shows the lessons")
    if not path.is_file():
        raise LessonError(path, None, "the lesson folder has no lesson.toml")
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise LessonError(path, None, "the file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        raise LessonError(path, _toml_line(msg), f"not valid TOML: {re.sub(r' [(]at line.*[)]', '', msg)}") from None

    def err(line, problem, hint=""):
        raise LessonError(path, line, problem, hint)

    for key in data:
        if key not in ("lesson", "step", "checks"):
            err(line_of(text, key), f"unknown table or key {key!r}; a lesson has [lesson], [[step]] and [checks]")
    head = data.get("lesson")
    if not isinstance(head, dict):
        err(None, "no [lesson] table (it names the target: target = \"repeated-layer\")")
    _check_keys(path, text, head, _LESSON_KEYS, "[lesson]", line_of(text, "[lesson]"))
    if "target" not in head:
        err(line_of(text, "[lesson]"), "[lesson] has no target", 'add target = "repeated-layer" or "model.py"')
    target = head["target"]
    script = target.partition(":")[0]
    if script.endswith(".py") and not (folder / script).is_file():
        err(line_of(text, target), f"the target script {script!r} is not in the lesson folder")

    steps_data = data.get("step")
    if not isinstance(steps_data, list) or not steps_data:
        err(None, "the lesson has no steps: add [[step]] tables")
    steps: list[Step] = []
    seen: set[str] = set()
    step_lines = [i for i, ln in enumerate(text.splitlines(), 1) if ln.strip() == "[[step]]"]
    for k, st in enumerate(steps_data):
        start = step_lines[k] if k < len(step_lines) else None
        _check_keys(path, text, st, _STEP_KEYS, "[[step]]", start)
        sid = st.get("id")
        if not sid or not re.fullmatch(r"[A-Za-z0-9_-]+", sid):
            err(start, "every step needs an id of letters, digits, - and _ (id = \"forward\")")
        if sid in seen:
            err(line_of(text, f'"{sid}"', start or 1), f"two steps have the id {sid!r}")
        seen.add(sid)
        at = st.get("at")
        if at is None:
            err(start, f"step {sid!r} has no binding: at = {{ phase = \"backward\", node = \"MulBackward0\" }}")
        at_line = key_line(text, "at", start or 1)
        _check_keys(path, text, at, _AT_KEYS, f"step {sid!r} at", at_line)
        if at.get("phase") not in PHASES:
            err(at_line, f"step {sid!r}: at.phase must be one of {', '.join(PHASES)}, not {at.get('phase')!r}")
        if at["phase"] in ("start", "end") and len(at) > 1:
            err(at_line, f"step {sid!r}: a {at['phase']} step names no node")
        binding = Binding(at["phase"], at.get("node"), at.get("use"), at.get("module"), at.get("backend"),
                          at.get("nth", 1))
        pred = None
        if "predict" in st:
            p = st["predict"]
            p_line = key_line(text, "predict", start or 1)
            _check_keys(path, text, p, _PREDICT_KEYS, f"step {sid!r} predict", p_line)
            if p.get("kind") not in KINDS:
                err(p_line, f"step {sid!r}: predict.kind must be one of {', '.join(KINDS)}, not {p.get('kind')!r}")
            if "answer" not in p:
                err(p_line, f"step {sid!r}: the prediction has no answer expression")
            bad = check_expression(p["answer"], functions)
            if bad:
                err(line_of(text, p["answer"], start or 1) or p_line, f"step {sid!r}: {bad}")
            pred = Prediction(p["kind"], p["answer"], float(p.get("tolerance", 1e-3)), float(p.get("rtol", 0.0)))
        # a step with params re-runs the target with them (added to [lesson] params) from there on
        params = dict(steps[-1].params) if steps else dict(head.get("params", {}))
        params.update(st.get("params", {}))
        when = st.get("when")
        if when is not None:
            bad = check_expression(when, functions)
            if bad:
                err(line_of(text, when, start or 1) or start, f"step {sid!r}: {bad}")
        steps.append(Step(sid, binding, pred, bool(st.get("checks", False)), start, params, when))

    checks = data.get("checks", {})
    c_line = line_of(text, "[checks]")
    _check_keys(path, text, checks, _CHECKS_KEYS, "[checks]", c_line)
    expect = []
    for e in checks.get("expect_fail", []):
        if not isinstance(e, dict):
            err(c_line, "[checks] expect_fail holds tables: { kind = \"local-rule\", what = \"Broken\" }")
        _check_keys(path, text, e, _EXPECT_KEYS, "[checks] expect_fail", c_line)
        if "kind" not in e or "what" not in e:
            err(c_line, "each expect_fail entry names a check kind and a text of its 'what'")
        expect.append((e["kind"], e["what"]))

    langs = head.get("languages") or [lang for lang in LANGUAGES if (folder / f"{lang}.md").is_file()]
    if not langs:
        err(None, "the lesson has no text: add en.md (and zh.md)")
    texts = {}
    for lang in langs:
        md_path = folder / f"{lang}.md"
        if not md_path.is_file():
            err(line_of(text, "languages"), f"the language {lang!r} has no {lang}.md")
        texts[lang] = _read_text(md_path, steps, functions)
    return Lesson(folder.name, folder, target, dict(head.get("params", {})), int(head.get("order", 999)),
                  steps, texts, bool(checks.get("strict", False)), bool(checks.get("finite_diff", True)), expect, text)


def _read_text(md_path: Path, steps: list[Step], functions) -> MarkdownText:
    try:
        md = md_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LessonError(md_path, None, "the file is not UTF-8 text") from None

    def err(line, problem):
        raise LessonError(md_path, line, problem)

    doc = parse_markdown(md_path, md, err)
    ids = {s.id for s in steps}
    for table, part in ((doc.steps, None), (doc.predict, "predict"), (doc.reveal, "reveal")):
        for sid in table:
            if sid not in ids:
                err(doc.heading_line[(sid, part)], f"the section {{#{sid}}} belongs to no step of lesson.toml")
    for s in steps:
        if s.id not in doc.steps:
            err(None, f"step {s.id!r} has no text: add a heading ending in {{#{s.id}}}")
        if s.predict is not None and s.id not in doc.predict:
            err(None, f"step {s.id!r} predicts but has no question: add a heading ending in {{#{s.id}.predict}}")
        if s.predict is not None and s.predict.kind == "choice" and not choices_of(doc.predict[s.id]):
            err(doc.predict[s.id].line, f"the choice question of step {s.id!r} has no '- ' items to choose from")
    # every placeholder and matrix expression must be allowed
    sections = [doc.intro] if doc.intro else []
    sections += [*doc.steps.values(), *doc.predict.values(), *doc.reveal.values()]
    for sec in sections:
        for block in split_blocks(sec):
            exprs = ([(block.line, block.text)] if block.kind == "matrix" else
                     [(block.line + block.text.count("\n", 0, a), e) for a, _, e, _ in
                      find_placeholders(block.text, functions)])
            for line, expr in exprs:
                bad = check_expression(expr, functions)
                if bad:
                    err(line, bad)
    return doc


def choices_of(section) -> list[str]:
    """The ``- `` items of a choice question, in order."""
    return [ln.strip()[2:].strip() for ln in section.body.splitlines() if ln.strip().startswith(("- ", "* "))]
