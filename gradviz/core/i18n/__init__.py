"""The one translation catalogue of gradviz: every string the app, the CLI tables and the exports show.

Text is keyed by its English form. ``tr("Step forward")`` gives it in the current language;
``tr("{op} {nth} of {of}", op="tanh", nth=2, of=2)`` translates the template, then fills it. Text made
elsewhere in English from a catalogued template (a check row's "node 3 TBackward0 receives node 1")
is translated back from its words with `translate`. Missing entries fall back to English and are
remembered (`missing`) so a test can list them.

`set_language` switches at runtime and emits `language_changed`; every view re-reads its texts.
`system_language` reads the locale (``LANG=zh_CN.UTF-8`` gives ``"zh"``); `using` sets a language for
a block (the command line, an export).
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager

from ..events import Signal
from .zh import ZH

__all__ = ["tr", "translate", "set_language", "language", "LANGUAGES", "language_changed", "missing",
           "system_language", "using", "catalogue"]

LANGUAGES = {"en": "English", "zh": "中文"}

_TABLES = {"en": {}, "zh": ZH}
_current = "en"
language_changed = Signal()
_missing: set[str] = set()
_FIELD = re.compile(r"\{(\w+)\}")
_patterns: list | None = None
_FIELD_RX = {**{k: r"\d+" for k in ("id", "src", "n", "i", "nth", "of", "use", "uses", "arrived", "total")},
             **{k: r"\S+(?: \[\w+\])?" for k in ("name", "leaf", "module", "op")}}


def catalogue(code: str) -> dict[str, str]:
    """The table of language `code` (English text -> text); empty for English."""
    return _TABLES[code]


def tr(text: str, /, **fields) -> str:
    """`text` (English, or an English template) in the current language, filled with `fields`."""
    out = text
    if _current != "en":
        got = _TABLES[_current].get(text)
        if got is None:
            _missing.add(text)
        else:
            out = got
    return out.format(**fields) if fields else out


def _compiled() -> list:
    """Every catalogued template with fields, as (regex over the English text, template), longest first."""
    global _patterns
    if _patterns is None:
        keys = set()
        for table in _TABLES.values():
            keys.update(k for k in table if _FIELD.search(k))
        pats = []
        for key in sorted(keys, key=len, reverse=True):
            parts = _FIELD.split(key)
            rx = ""
            for i, part in enumerate(parts):
                if i % 2 == 0:
                    rx += re.escape(part)
                else:  # a count or an id is digits, a name has no spaces; anything else any text
                    rx += f"(?P<{part}>{_FIELD_RX.get(part, '.+?')})"
            pats.append((re.compile(f"^{rx}$", re.S), key))
        _patterns = pats
    return _patterns


def translate(text: str) -> str:
    """English `text` made from a catalogued word or template, in the current language.

    An exact entry wins; else the longest template whose words match, with each filled-in part
    translated the same way (so "3 pass" inside a summary is translated too). Text that matches
    nothing stays English and is remembered in `missing`.
    """
    if _current == "en" or not text:
        return text
    table = _TABLES[_current]
    if text in table:
        return table[text]
    for rx, key in _compiled():
        m = rx.match(text)
        if m is not None and key in table:
            parts = {k: (_translate_part(v) if k in _TEXT_FIELDS else v) for k, v in m.groupdict().items()}
            return table[key].format(**parts)
    if _is_words(text):
        _missing.add(text)
    return text


# template fields that hold text made of catalogue words (others hold names, numbers, shapes: kept)
_TEXT_FIELDS = frozenset({"parts", "a", "b", "names", "summary", "spot", "call", "text", "what", "status"})


def _translate_part(text: str) -> str:
    """A filled-in part of a template, translated like `translate` but not remembered as missing."""
    table = _TABLES[_current]
    if text in table:
        return table[text]
    for rx, key in _compiled():
        m = rx.match(text)
        if m is not None and key in table:
            parts = {k: (_translate_part(v) if k in _TEXT_FIELDS else v) for k, v in m.groupdict().items()}
            return table[key].format(**parts)
    return text


def _is_words(text: str) -> bool:
    """Whether `text` has English words to translate (not a number, a name like fc1.weight, or a shape)."""
    return bool(re.search(r"[A-Za-z]{2,}\s+[A-Za-z]", text))


def language() -> str:
    """The current language code (``"en"`` or ``"zh"``)."""
    return _current


def set_language(code: str) -> None:
    """Switch the language to `code` and tell every view (`language_changed`)."""
    global _current
    if code not in _TABLES:
        raise ValueError(f"unknown language {code!r}: use one of {', '.join(_TABLES)}")
    if code != _current:
        _current = code
        language_changed.emit(code)


@contextmanager
def using(code: str | None):
    """Use language `code` inside the block (None keeps the current one), quietly: no views are told."""
    global _current
    old = _current
    if code is not None:
        if code not in _TABLES:
            raise ValueError(f"unknown language {code!r}: use one of {', '.join(_TABLES)}")
        _current = code
    try:
        yield
    finally:
        _current = old


def system_language(environ=None) -> str:
    """The language of the user's locale: ``"zh"`` for a Chinese locale (``LANG=zh_CN.UTF-8``), else ``"en"``."""
    env = os.environ if environ is None else environ
    for var in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = env.get(var, "")
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def missing() -> set[str]:
    """English texts asked for in a non-English language that have no entry (for tests)."""
    return set(_missing)


def clear_missing() -> None:
    """Forget the texts `missing` remembers (a test starts from none)."""
    _missing.clear()
