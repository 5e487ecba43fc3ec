"""``gradviz lesson``: list, walk, check and validate lessons in the terminal.

``gradviz lesson --list`` prints one lesson a line, its name first; ``gradviz lesson NAME [--lang zh]``
walks a lesson step by step with the live numbers (asking the predictions on a terminal, showing them
otherwise); ``--check`` runs every step, answers every prediction with its own expression and runs the
checks (exit 0 only if all hold); ``--validate FOLDER`` checks a teacher's lesson the same way.
A lesson folder path works wherever a name does.
"""
from __future__ import annotations

import re
import sys

from .catalog import list_lessons, load_lesson
from .engine import LessonRun, Rendered
from .progress import Progress

__all__ = ["register", "run_lesson_command", "plain_math", "format_blocks"]

_MACROS = {r"\partial": "∂", r"\cdot": "·", r"\times": "×", r"\qquad": "    ", r"\quad": "  ", r"\,": " ",
           r"\sum": "Σ", r"\top": "ᵀ", r"\approx": "≈", r"\leftarrow": "←", r"\rightarrow": "→",
           r"\to": "→", r"\delta": "δ", r"\theta": "θ", r"\odot": "⊙", r"\ldots": "…", r"\tanh": "tanh",
           r"\;": " ", r"\ ": " ", r"\!": ""}


def plain_math(formula: str) -> str:
    """A mathtext formula as readable terminal text (``\\frac{a}{b}`` -> ``a/b``, ``\\partial`` -> ∂)."""
    s = formula.replace(r"\left", "").replace(r"\right", "").replace(r"\_", "_")
    for k in sorted(_MACROS, key=len, reverse=True):
        s = s.replace(k, _MACROS[k])
    s = re.sub(r"\\(?:mathrm|mathbf|mathit|operatorname)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\^\{([^{}]*)\}", r"^\1", s)
    s = re.sub(r"_\{([^{}]*)\}", r"_\1", s)
    for _ in range(4):  # nested fractions, innermost first
        s = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", lambda m: f"{_paren(m.group(1))}/{_paren(m.group(2))}", s)
    s = re.sub(r"\\([A-Za-z]+)", r"\1", s)
    return s.replace("{", "").replace("}", "")


def _paren(t: str) -> str:
    t = t.strip()
    return t if re.fullmatch(r"∂? ?[\w^]*", t) else f"({t})"


def format_blocks(blocks: list[Rendered], indent: str = "  ") -> str:
    """Rendered blocks as terminal text: prose as written, formulas plain, matrices aligned."""
    out = []
    for b in blocks:
        if b.kind == "text":
            out.append(b.text)
        elif b.kind == "math":
            out.append(indent + plain_math(b.text))
        else:
            body = b.text.splitlines()
            cap = f"{b.caption} = " if b.caption else ""
            pad = " " * len(cap)
            out.append("\n".join(indent + (cap if i == 0 else pad) + line for i, line in enumerate(body)))
    return "\n\n".join(out)


def _ask(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


def _walk(run: LessonRun, interactive: bool, progress: Progress) -> int:
    lesson = run.lesson
    zh = run.lang == "zh"
    print(f"{run.text.title}  ({lesson.name}, {len(run)} {'步' if zh else 'steps'})\n")
    for k, step in enumerate(run.steps):
        view = run.go(k)
        progress.visit(lesson.name, step.id)
        print(f"── {k + 1}/{len(run)}  {view.title}   [{view.event}]")
        print(format_blocks(view.blocks))
        if view.kind is not None:
            print()
            print(format_blocks(view.question))
            for i, c in enumerate(view.choices, 1):
                print(f"  {i}. {c}")
            if interactive:
                given = _ask("> ")
                if given is None:
                    interactive = False
                else:
                    verdict = run.grade(k, given)
                    progress.answer(lesson.name, step.id, given, verdict.correct)
                    mark = "✓" if verdict.correct else "✗"
                    print(f"{mark} {verdict.message}")
            if not interactive:
                print(("答案：" if zh else "answer: ") + run.answer_text(k))
            reveal = run.reveal(k)
            if reveal:
                print()
                print(format_blocks(reveal))
        if view.checks is not None:
            print()
            print(view.checks.format())
        print()
    ok, notes = run.checks_hold()
    for note in notes:
        print(note)
    progress.finish(lesson.name)
    progress.save()
    return 0 if ok else 1


def run_lesson_command(args) -> int:
    """The ``gradviz lesson`` command (see the module doc); ``--lang`` sets the tables' language too."""
    if args.lesson_lang:
        from ..core.i18n import using

        with using(args.lesson_lang):
            return _lesson_command(args)
    return _lesson_command(args)


def _lesson_command(args) -> int:
    from ..core.errors import GradvizError

    progress = Progress()
    from ..core.i18n import language  # gradviz --lang (before the command), else the locale's

    lang_given = args.lesson_lang or language()
    if args.list:
        for les in list_lessons():
            lang = lang_given if lang_given in les.texts else "en"
            done = progress.summary(les.name, len(les.steps))
            print(f"{les.name:20s} {les.title(lang)}" + (f"  [{done}]" if done else ""))
        return 0
    if args.validate:
        lesson = load_lesson(args.validate)
        total = 0
        for lang in lesson.languages:
            report = LessonRun(lesson, lang).open().self_check()
            total += len(report.lines)
            if not report.ok:
                print("\n".join(report.lines))
                print(f"{lesson.folder}: the lesson runs but its checks do not hold ({lang})", file=sys.stderr)
                return 1
        print(f"{lesson.folder}: valid ({len(lesson.steps)} steps, languages {', '.join(lesson.languages)}, "
              f"{sum(1 for s in lesson.steps if s.predict)} predictions; every check holds)")
        return 0
    if not args.name:
        raise GradvizError("name a lesson, or use --list", hint="gradviz lesson --list shows the lessons")
    lesson = load_lesson(args.name)
    lang = args.lesson_lang or (lang_given if lang_given in lesson.texts else next(iter(lesson.texts)))
    run = LessonRun(lesson, lang).open()
    if args.check:
        report = run.self_check()
        print(f"{lesson.name} ({run.lang}): {run.text.title}")
        print("\n".join(report.lines))
        print("all hold" if report.ok else "FAILED")
        return 0 if report.ok else 1
    return _walk(run, sys.stdin.isatty() and not args.no_input, progress)


def register(command) -> None:
    """Register ``gradviz lesson`` with the CLI's `command` decorator."""

    @command("lesson", "step through a lesson on a live run (--list shows them; --check, --validate FOLDER)")
    def _cmd_lesson(args) -> int:
        return run_lesson_command(args)

    @_cmd_lesson.arguments
    def _(p):
        p.add_argument("name", nargs="?", help="a lesson name (gradviz lesson --list) or a lesson folder")
        p.add_argument("--lang", dest="lesson_lang", default=None,
                       help="the lesson's language: en or zh (default: gradviz --lang, else the locale's)")
        p.add_argument("--list", action="store_true", help="list the lessons, one a line, name first")
        p.add_argument("--check", action="store_true",
                       help="run every step, answer every prediction with its own answer, run the checks; "
                            "exit 0 only if all hold")
        p.add_argument("--validate", metavar="FOLDER", help="check a lesson folder (a teacher's new lesson)")
        p.add_argument("--no-input", action="store_true", help="do not ask the predictions: show the answers")
