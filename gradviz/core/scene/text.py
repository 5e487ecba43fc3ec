"""Text as a drawing shows it: tensor and shape formatters, and a width model that needs no font engine.

The formatters (`format_tensor`, `format_shape`, `SMALL`) are defined in `gradviz.core.valuetext`,
below the Scene, because explanations write values the same way; they are re-exported here.

Every picture of a step (the app, PNG/SVG/PDF/GIF, DOT, GraphML) shows the same label lines, cut to
the same width: the cut is made here, once, with the advance widths of DejaVu Sans (the font the Qt
painter draws with) stored per character, so no output depends on which font metrics it could load.
Widths are in pixels at a font's pixel size; kerning only ever narrows a line, so a line the model
says fits does fit.
"""
from __future__ import annotations

from ..valuetext import SMALL, format_shape, format_tensor

__all__ = ["format_tensor", "format_shape", "text_width", "elide", "name_px", "SMALL", "ELLIPSIS", "FONT_FAMILY",
           "FONT_PX", "SMALL_FONT_PX", "MIN_NAME_PX"]

ELLIPSIS = "…"
FONT_FAMILY = "DejaVu Sans"
FONT_PX = 12.0  # label text; the first line (the name) is bold
# badges and fold marks: as large as label text, so the one legible scale (9 px / 12 px) covers every text
SMALL_FONT_PX = 12.0
MIN_NAME_PX = 8.0  # a node's name shrinks to fit its box down to this size, then is cut


# advance widths of DejaVu Sans in em (pixel size 1), measured with Qt's QFontMetricsF at 12 px, for
# ' ' .. '~' then the characters below; any other character counts as a full em (wide enough for CJK)
_CHARS = "".join(chr(c) for c in range(32, 127)) + "…×·∑αβγ→←"
_REGULAR = (
    0.3177, 0.3997, 0.4597, 0.8373, 0.6354, 0.9493, 0.7787, 0.2747, 0.3893, 0.3893, 0.5000, 0.8373, 0.3177,
    0.3607, 0.3177, 0.3359, 0.6354, 0.6354, 0.6354, 0.6354, 0.6354, 0.6354, 0.6354, 0.6354, 0.6354, 0.6354,
    0.3359, 0.3359, 0.8373, 0.8373, 0.8373, 0.5299, 1.0000, 0.6836, 0.6849, 0.6979, 0.7695, 0.6315, 0.5743,
    0.7748, 0.7513, 0.2943, 0.2943, 0.6549, 0.5560, 0.8620, 0.7474, 0.7865, 0.6028, 0.7865, 0.6940, 0.6341,
    0.6107, 0.7318, 0.6836, 0.9882, 0.6849, 0.6107, 0.6849, 0.3893, 0.3359, 0.3893, 0.8373, 0.5000, 0.5000,
    0.6120, 0.6341, 0.5495, 0.6341, 0.6146, 0.3516, 0.6341, 0.6328, 0.2773, 0.2773, 0.5782, 0.2773, 0.9740,
    0.6328, 0.6107, 0.6341, 0.6341, 0.4102, 0.5208, 0.3919, 0.6328, 0.5912, 0.8177, 0.5912, 0.5912, 0.5247,
    0.6354, 0.3359, 0.6354, 0.8373, 1.0000, 0.8373, 0.3177, 0.6732, 0.6588, 0.6380, 0.5912, 0.8373, 0.8373
)
_BOLD = (
    0.3477, 0.4558, 0.5208, 0.8373, 0.6953, 1.0013, 0.8711, 0.3060, 0.4570, 0.4570, 0.5222, 0.8373, 0.3789,
    0.4141, 0.3789, 0.3646, 0.6953, 0.6953, 0.6953, 0.6953, 0.6953, 0.6953, 0.6953, 0.6953, 0.6953, 0.6953,
    0.3997, 0.3997, 0.8373, 0.8373, 0.8373, 0.5794, 1.0000, 0.7734, 0.7618, 0.7331, 0.8294, 0.6823, 0.6823,
    0.8203, 0.8359, 0.3711, 0.3711, 0.7748, 0.6368, 0.9948, 0.8359, 0.8490, 0.7318, 0.8490, 0.7695, 0.7201,
    0.6810, 0.8112, 0.7734, 1.1028, 0.7708, 0.7240, 0.7240, 0.4570, 0.3646, 0.4570, 0.8373, 0.5000, 0.5000,
    0.6745, 0.7148, 0.5924, 0.7148, 0.6771, 0.4349, 0.7148, 0.7109, 0.3424, 0.3424, 0.6641, 0.3424, 1.0417,
    0.7109, 0.6862, 0.7148, 0.7148, 0.4922, 0.5951, 0.4778, 0.7109, 0.6510, 0.9232, 0.6445, 0.6510, 0.5820,
    0.7109, 0.3646, 0.7109, 0.8373, 1.0000, 0.8373, 0.3789, 0.7174, 0.6862, 0.7148, 0.6810, 0.8373, 0.8373
)
_WIDTH = {False: dict(zip(_CHARS, _REGULAR)), True: dict(zip(_CHARS, _BOLD))}


def text_width(text: str, px: float = FONT_PX, bold: bool = False) -> float:
    """Width in pixels of `text` in DejaVu Sans at pixel size `px` (an upper bound: kerning is ignored)."""
    table = _WIDTH[bool(bold)]
    return px * sum(table.get(ch, 1.0) for ch in text)


def elide(text: str, room: float, px: float = FONT_PX, bold: bool = False) -> str:
    """`text` if it fits in `room` pixels, else its longest start that fits with "…" after it."""
    table = _WIDTH[bool(bold)]
    widths = [px * table.get(ch, 1.0) for ch in text]
    if sum(widths) <= room:
        return text
    budget = room - px * table[ELLIPSIS]
    used, cut = 0.0, 0
    for w in widths:
        if used + w > budget:
            break
        used += w
        cut += 1
    return text[:cut] + ELLIPSIS


def name_px(text: str, room: float, px: float = FONT_PX, min_px: float = MIN_NAME_PX) -> float:
    """The whole-pixel size at which bold `text` fits in `room` (at most `px`, at least `min_px`)."""
    width = text_width(text, px, bold=True)
    if width <= room:
        return px
    return float(max(min_px, int(px * room / width)))
