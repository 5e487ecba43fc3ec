"""English and Chinese UI text: the core's one catalogue (`gradviz.core.i18n`), seen from the app.

Views call ``tr("Step forward")``; `set_language` switches at runtime and emits `language_changed`,
on which every view re-reads its texts (`retranslate`). Missing entries fall back to English.
"""
from __future__ import annotations

from gradviz.core.i18n import (LANGUAGES, clear_missing, language, language_changed, missing, set_language,
                               system_language, tr, translate)

__all__ = ["tr", "translate", "set_language", "language", "LANGUAGES", "language_changed", "missing",
           "clear_missing", "system_language"]
