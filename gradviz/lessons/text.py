"""A lesson's Markdown text: sections tied to step ids, formula and matrix blocks, live placeholders.

One file per language (``en.md``, ``zh.md``). A heading that ends in ``{#ID}`` starts the text of step
ID; ``{#ID.predict}`` the question of its prediction (the ``- `` items are the choices of a choice
question); ``{#ID.reveal}`` the explanation shown once the learner has answered. The first ``#``
heading is the lesson's title; text before the first step's heading is shown with the first step.

Inside a section, a fenced block ```` ```math ```` holds formulas (matplotlib mathtext, one a line)
and ```` ```matrix ```` holds ``caption = expression`` lines shown as small tables. Anywhere, a
placeholder ``{expression}`` or ``{expression:format}`` whose expression calls a lesson function
(``{grad("x")[0, 0]:.4f}``) is replaced by its live value; other braces (mathtext's ``\\frac{a}{b}``)
stay as written.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

__all__ = ["Section", "Block", "MarkdownText", "parse_markdown", "find_placeholders", "split_blocks"]

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*\{#([A-Za-z0-9_-]+)(?:\.(predict|reveal))?\}\s*$")
_TITLE = re.compile(r"^#\s+(.+?)\s*$")


@dataclass
class Section:
    """The text of one step (or of its question or reveal), with the line it starts at."""

    title: str
    body: str
    line: int  # 1-based line of the body's first line in the file


@dataclass
class MarkdownText:
    """One language's text of a lesson."""

    path: str
    title: str
    intro: Section | None
    steps: dict = field(default_factory=dict)    # id -> Section
    predict: dict = field(default_factory=dict)  # id -> Section
    reveal: dict = field(default_factory=dict)   # id -> Section
    heading_line: dict = field(default_factory=dict)  # (id, part) -> line


@dataclass
class Block:
    """A piece of a section: ``kind`` is ``"text"`` (Markdown), ``"math"`` (one mathtext formula)
    or ``"matrix"`` (``caption``, ``expr``); ``line`` is its first line in the file."""

    kind: str
    text: str
    line: int
    caption: str = ""


def parse_markdown(path, text: str, error) -> MarkdownText:
    """Split `text` (the file `path`) into its sections; `error(line, problem)` raises."""
    lines = text.splitlines()
    title = ""
    intro_lines: list[str] = []
    intro_start = 1
    out = MarkdownText(str(path), "", None)
    current: tuple[str, str | None] | None = None
    buf: list[str] = []
    start = 1
    heading_title = ""
    in_fence = False

    def flush():
        if current is None:
            return
        sid, part = current
        lead = 0
        while lead < len(buf) and not buf[lead].strip():
            lead += 1  # the body starts at its first non-blank line
        sec = Section(heading_title, "\n".join(buf[lead:]).rstrip("\n"), start + lead)
        table = {None: out.steps, "predict": out.predict, "reveal": out.reveal}[part]
        table[sid] = sec

    for i, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line)
        if m:
            flush()
            sid, part = m.group(3), m.group(4)
            table = {None: out.steps, "predict": out.predict, "reveal": out.reveal}[part]
            if sid in table:
                error(i, f"a second section {{#{sid}{'.' + part if part else ''}}}")
            current, buf, start, heading_title = (sid, part), [], i + 1, m.group(2)
            out.heading_line[(sid, part)] = i
            continue
        if current is None:
            t = _TITLE.match(line)
            if t and not title and not in_fence:
                title = t.group(1)
                intro_start = i + 1
                continue
            intro_lines.append(line)
        else:
            buf.append(line)
    if in_fence:
        error(len(lines), "a ``` block is not closed")
    flush()
    if not title:
        error(1, "the text has no title (a first line '# Title')")
    out.title = title
    lead = 0
    while lead < len(intro_lines) and not intro_lines[lead].strip():
        lead += 1
    body = "\n".join(intro_lines[lead:]).rstrip("\n")
    out.intro = Section("", body, intro_start + lead) if body.strip() else None
    return out


def split_blocks(section: Section) -> list[Block]:
    """The text, formula and matrix blocks of a section, in order."""
    blocks: list[Block] = []
    text: list[str] = []
    text_start = section.line
    fence: str | None = None
    fence_lines: list[str] = []
    fence_start = 0
    for i, line in enumerate(section.body.splitlines(), section.line):
        stripped = line.strip()
        if fence is None and stripped in ("```math", "```matrix"):
            if "".join(text).strip():
                blocks.append(Block("text", "\n".join(text).strip("\n"), text_start))
            text, fence, fence_lines, fence_start = [], stripped[3:], [], i + 1
            continue
        if fence is not None:
            if stripped == "```":
                for j, fl in enumerate(fence_lines):
                    if not fl.strip():
                        continue
                    if fence == "math":
                        blocks.append(Block("math", fl.strip(), fence_start + j))
                    else:
                        caption, sep, expr = fl.partition("=")
                        if not sep:
                            caption, expr = "", fl
                        blocks.append(Block("matrix", expr.strip(), fence_start + j, caption.strip()))
                fence, text_start = None, i + 1
            else:
                fence_lines.append(line)
            continue
        if not text:
            text_start = i
        text.append(line)
    if "".join(text).strip():
        blocks.append(Block("text", "\n".join(text).strip("\n"), text_start))
    return blocks


def _match_close(text: str, i: int) -> int:
    """Index of the ``}`` closing the ``{`` at `i` (brackets and quotes respected), or -1."""
    depth = 0
    quote = None
    j = i
    while j < len(text):
        c = text[j]
        if quote:
            if c == "\\":
                j += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return j if c == "}" else -1
        elif c == "\n":
            return -1
        j += 1
    return -1


def _split_spec(content: str) -> tuple[str, str]:
    """Split ``expr:spec`` at the last ``:`` outside brackets and quotes."""
    depth = 0
    quote = None
    cut = -1
    for k, c in enumerate(content):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == ":" and depth == 0:
            cut = k
    if cut < 0:
        return content, ""
    return content[:cut], content[cut + 1:]


def _is_placeholder(expr: str, functions) -> bool:
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        return False
    for sub in ast.walk(tree):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name):
            if sub.func.id in functions:
                return True
            if any(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in sub.args):
                return True  # looks like a lesson call with an unknown function: report it
    return False


def find_placeholders(text: str, functions) -> list[tuple[int, int, str, str]]:
    """``(start, end, expression, format)`` of every placeholder in `text` (see the module doc)."""
    out = []
    i = 0
    while True:
        i = text.find("{", i)
        if i < 0:
            return out
        j = _match_close(text, i)
        if j < 0:
            i += 1
            continue
        expr, spec = _split_spec(text[i + 1:j])
        if _is_placeholder(expr, functions):
            out.append((i, j + 1, expr.strip(), spec.strip()))
            i = j + 1
        else:
            i += 1
