"""Light and dark colour themes: the core's one table (`gradviz.core.scene.theme`), re-exported here."""
from __future__ import annotations

from gradviz.core.scene.theme import THEMES, get_theme, theme_names

__all__ = ["THEMES", "get_theme", "theme_names"]
