"""The one colour table of gradviz (light and dark): plain data, read by every drawing.

The app's graph item, its panels, the image exports (PNG, SVG, PDF, GIF) and the text formats
(DOT, GraphML) all take their colours from here, through the `Scene` where a step is drawn.
"""
from __future__ import annotations

__all__ = ["THEMES", "KINDS", "get_theme", "theme_names", "blend"]

KINDS = ("op", "custom", "leaf", "input")

_LIGHT = {
    "name": "light",
    "background": "#fbfbfd",
    "text": "#1d2330",
    "text_dim": "#a3a9b5",
    "edge": "#c3c8d2",
    "edge_done": "#e8a25c",
    "edge_input": "#c9ccd3",
    "flow": "#d9480f",
    "flow_text": "#b23a06",
    "current": "#d6336c",
    "selected": "#1c7ed6",
    "badge": "#495057",
    "badge_text": "#ffffff",
    "wait": "#f08c00",
    # per kind: (fill not reached, fill computed, fill backward done, border)
    "op": ("#f1f3f5", "#dbe7fb", "#ffe2c4", "#4c6ef5"),
    "custom": ("#f3f0fa", "#e7dcfb", "#f9d9e9", "#7048e8"),
    "leaf": ("#eef6ee", "#d3f0d0", "#b2f2bb", "#2b8a3e"),
    "input": ("#f4f4f6", "#ececf0", "#ececf0", "#9aa0aa"),
    "saved": "#845ef7",
    "ok": "#d3f9d8",
    "fail": "#ffc9c9",
    "neutral": "#f1f3f5",
    "plot_bg": "#ffffff",
    "plot_fg": "#343a40",
    "plot_line": "#1c7ed6",
    "plot_line2": "#e8590c",
    "error_bg": "#fff0f0",
    "error_fg": "#a51d2d",
}

_DARK = {
    "name": "dark",
    "background": "#1e2026",
    "text": "#e6e8ee",
    "text_dim": "#6b7080",
    "edge": "#4a4f5c",
    "edge_done": "#b86e2a",
    "edge_input": "#454955",
    "flow": "#ff922b",
    "flow_text": "#ffc078",
    "current": "#f783ac",
    "selected": "#4dabf7",
    "badge": "#ced4da",
    "badge_text": "#1e2026",
    "wait": "#ffa94d",
    "op": ("#262a33", "#23395e", "#5c3a17", "#748ffc"),
    "custom": ("#2a2633", "#3b2a63", "#5e2746", "#9775fa"),
    "leaf": ("#232b25", "#1f4a2a", "#2b6e3a", "#69db7c"),
    "input": ("#25272d", "#30333b", "#30333b", "#7d828f"),
    "saved": "#b197fc",
    "ok": "#1f4a2a",
    "fail": "#5c1f24",
    "neutral": "#2b2e36",
    "plot_bg": "#1e2026",
    "plot_fg": "#ced4da",
    "plot_line": "#4dabf7",
    "plot_line2": "#ff922b",
    "error_bg": "#4a1d22",
    "error_fg": "#ffc9c9",
}

THEMES = {"light": _LIGHT, "dark": _DARK}


def theme_names() -> list[str]:
    """Names of the themes."""
    return list(THEMES)


def get_theme(name: str) -> dict:
    """Return the colours of theme `name` (light when unknown)."""
    return THEMES.get(name, _LIGHT)


def blend(color: str, under: str, alpha: float) -> str:
    """``#rrggbb`` of `color` laid with opacity `alpha` over `under` (an opaque colour every format reads)."""
    a = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    b = [int(under[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(alpha * x + (1 - alpha) * y):02x}" for x, y in zip(a, b))
