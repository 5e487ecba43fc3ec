"""Tables for a terminal: every column fits its width by wrapping words onto more lines, never by cutting.

`format_table` lays out any rows; `format_checks` is the check table as `gradviz check` prints it, in
the current language, fitted to the terminal: the wide text columns ("what", "reference") wrap at
word boundaries while numbers and node ids stay whole on their line, so "node 3 … receives node 1"
never loses its node number and "numpy rule for LinearFunctionBackward" never loses its end.
Widths count display cells (a Chinese character takes two).
"""
from __future__ import annotations

import math
import re
import shutil
import unicodedata

from .checktable import FAIL, NO_RULE, PASS
from .i18n import tr, translate

__all__ = ["cell_width", "wrap_cell", "format_table", "format_checks", "terminal_width", "FOLD_AT"]

# a kind of check with more rows than this (one per node of a large graph) shows its passing rows as one
FOLD_AT = 100

_GAP = "  "
_WORD = re.compile(r"(?:node |节点 )\d+\S*|\S+")


def cell_width(text: str) -> int:
    """Terminal cells `text` takes: two for a wide (East Asian) character, one otherwise."""
    if text.isascii():  # no ASCII character is wide: the common case, without a lookup per character
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _split_long(word: str, width: int) -> list[str]:
    """A word wider than `width` in pieces of at most `width` cells (nothing is dropped)."""
    out, cur = [], ""
    for ch in word:
        if cur and cell_width(cur + ch) > width:
            out.append(cur)
            cur = ""
        cur += ch
    return out + [cur] if cur else out


def wrap_cell(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` cells, broken between words (a longer word is split)."""
    text = str(text)
    if cell_width(text) <= width:
        return [text]
    lines: list[str] = []
    cur = ""
    # "node 3" is one word: a node's number never goes to another line than "node"
    for word in _WORD.findall(text):
        pieces = _split_long(word, width) if cell_width(word) > width else [word]
        for piece in pieces:
            trial = f"{cur} {piece}" if cur else piece
            if cell_width(trial) <= width:
                cur = trial
            else:
                if cur:
                    lines.append(cur)
                cur = piece
    if cur or not lines:
        lines.append(cur)
    return lines


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - cell_width(text))


def format_table(head: tuple, rows: list, width: int, flexible: tuple = (), minimum: int = 10,
                 splittable: tuple = ()) -> list[str]:
    """Aligned lines of `rows` under `head`, at most `width` cells wide where the columns allow.

    Columns in `flexible` give up width down to their longest word and wrap between words; if the
    table is still too wide, columns in `splittable` give up more, down to `minimum` cells, splitting
    their longest words over lines (nothing is ever dropped). A row that wraps takes several lines.
    """
    ncol = len(head)
    table = [head, *rows]
    columns = [[str(r[i]) for r in table] for i in range(ncol)]
    natural = [_widest(col) for col in columns]
    # (words never cross a line break: the longest word of the joined column is the longest of any cell)
    longest = [max(_widest(_WORD.findall("\n".join(col))), 1) for col in columns]
    widths = list(natural)

    def shrink(columns, floor) -> None:
        # take the excess from `columns` in proportion to what each can give above its floor
        excess = sum(widths) + len(_GAP) * (ncol - 1) - width
        room = {i: max(0, widths[i] - floor(i)) for i in columns}
        can = sum(room.values())
        if excess > 0 and can > 0:
            for i in columns:
                widths[i] -= min(room[i], math.ceil(excess * room[i] / can))

    shrink(flexible, lambda i: longest[i])
    shrink(splittable, lambda i: min(minimum, widths[i]))
    # a cell's padded lines, made once per distinct text of a column (most columns repeat a few texts)
    made: list[list] = []
    for i, col in enumerate(columns):
        lines = {text: [_pad(line, widths[i]) for line in wrap_cell(text, widths[i])] for text in set(col)}
        made.append([lines[text] for text in col])
    blank = [" " * w for w in widths]
    out = []
    for j, cells in enumerate(zip(*made)):
        height = max(map(len, cells))
        if height == 1:
            out.append(_GAP.join([c[0] for c in cells]).rstrip())
        else:
            for k in range(height):
                out.append(_GAP.join([c[k] if k < len(c) else blank[i] for i, c in enumerate(cells)]).rstrip())
        if j == 0:
            out.append(_GAP.join("-" * w for w in widths))
    return out


def _widest(texts: list[str]) -> int:
    """The most cells any of `texts` takes (0 for none)."""
    if "".join(texts).isascii():
        return max(map(len, texts), default=0)
    return max(map(cell_width, texts), default=0)


def terminal_width(default: int = 120) -> int:
    """Columns of the terminal (``$COLUMNS`` first), or `default` when output goes elsewhere."""
    return max(40, shutil.get_terminal_size((default, 24)).columns)


def _fmt(x) -> str:
    return "" if x is None else f"{x:.2e}"


def format_checks(table, width: int | None = None, every_row: bool = False) -> str:
    """The check table as text fitted to `width` cells (the terminal's by default), in the current language.

    A kind of check with more than `FOLD_AT` rows (``local-rule`` and ``flow`` have one per node)
    shows the rows that did not pass, and its passing rows as one row, where the first of them was:
    how many, their largest errors, and that ``--all`` lists them. `every_row` shows every row.
    The summary line counts every row either way.
    """
    width = terminal_width() if width is None else width
    head = tuple(tr(h) for h in ("check", "what", "reference", "max abs err", "max rel err", "tolerance", "result"))
    rows, shown = [], []
    for r in _folded(table.rows, every_row):
        if isinstance(r, list):  # the passing rows of one kind, as one row
            worst_a = max((x.max_abs for x in r if x.max_abs is not None), default=None)
            worst_r = max((x.max_rel for x in r if x.max_rel is not None), default=None)
            rows.append((tr(r[0].kind), tr("{n} rows pass (--all lists them)", n=len(r)), "", _fmt(worst_a),
                         _fmt(worst_r), "", tr(PASS)))
            continue
        shown.append(r)
        status = tr(r.status.upper() if r.status == FAIL else r.status)
        if table.strict and r.status == NO_RULE:
            status = tr("FAIL (no rule)")
        rows.append((tr(r.kind), translate(r.what), translate(r.reference), _fmt(r.max_abs), _fmt(r.max_rel),
                     r.tolerance, status))
    out = format_table(head, rows, width, flexible=tuple(range(len(head))), splittable=(1, 2))
    notes = []
    for r in shown:
        detail = r.detail.strip()
        if detail:
            # a note wraps under its own start, whole
            text = f"{tr(r.kind)} {translate(r.what)}: {translate(detail.splitlines()[0])}"
            lines = wrap_cell(text, width - 2)
            notes.append("  " + lines[0])
            if len(lines) > 1:
                notes += ["    " + line for line in wrap_cell(" ".join(lines[1:]), width - 4)]
    if notes:
        out += ["", tr("notes:"), *notes]
    counts = table.counts()
    summary = ", ".join(tr("{n} {status}", n=v, status=tr(k)) for k, v in sorted(counts.items()))
    out += ["", tr("{n} checks: {summary} -> {verdict}", n=len(table.rows), summary=summary,
                   verdict=tr("OK") if table.ok else tr("FAILED"))]
    return "\n".join(out)


def _folded(rows: list, every_row: bool) -> list:
    """`rows` to show: of a kind with more than `FOLD_AT` rows, its passing rows as one list, where the first was."""
    count: dict[str, int] = {}
    for r in rows:
        count[r.kind] = count.get(r.kind, 0) + 1
    fold = set() if every_row else {kind for kind, n in count.items() if n > FOLD_AT}
    if not fold:
        return list(rows)
    out, groups = [], {}
    for r in rows:
        if r.kind in fold and r.status == PASS:
            if r.kind not in groups:
                groups[r.kind] = []
                out.append(groups[r.kind])
            groups[r.kind].append(r)
        else:
            out.append(r)
    return out
