"""What a Scene draws around its nodes: badges, fold marks and outlines.

Badges sit on a node's top border ("2 saved": tensors saved for backward; in backward "waits 1" or
"ready"), fold marks at the start of each row of a folded layout ("↪ row 2"), outlines around this
step's node, the selection and the other copies of a shared parameter. Badge text is `SMALL_FONT_PX`
(as large as label text) and each tab is sized to its text.
"""
from __future__ import annotations

import numpy as np

from ..tensors import TensorData
from ..timeline import BACKWARD_DONE
from .items import Badge, Outline
from .text import SMALL_FONT_PX, text_width
from .theme import KINDS

__all__ = ["Decorations", "BADGE_H"]

BADGE_H = 17.0  # a badge's or fold mark's height: its text (`SMALL_FONT_PX`) and 2-3 px above and below


class Decorations:
    """Badges, fold marks and outlines of the Scene's nodes (a part of `Scene`)."""

    def saved_count(self, g: int) -> int:
        """Tensors saved for backward by drawn node `g` (its first member)."""
        saved = self.recording.nodes[self.members[g][0]].saved
        return sum(isinstance(v, TensorData) for v in saved.values())

    def badges(self, g: int) -> list[Badge]:
        """The badges on drawn node `g` at this step: tensors it saved; in backward, why it waits."""
        cached = self._badges[g]
        if cached is None or not self._badges_ok[g]:
            cached = self._badges[g] = self._make_badges(g)
            self._badges_ok[g] = True
        return cached

    def _make_badges(self, g: int) -> list[Badge]:
        th, tr = self.theme, self.tr
        x, y, w, h = self.box(g)
        out = []
        if self.proxy_of[g] >= 0:  # the true node carries the badges
            return out
        nsaved = self.saved_count(g)
        if nsaved:  # on the top border, its right end 4 px past the box's
            text = f"{nsaved} {tr('saved')}"
            bw = text_width(text, SMALL_FONT_PX) + 10
            out.append(Badge(x + w + 4 - bw, y - 9, bw, BADGE_H, text, th["saved"], th["badge_text"], 4))
        kind = KINDS[int(self.kind[g])]
        if self.phase == "backward" and int(self.status[g]) != BACKWARD_DONE and kind != "input":
            # gradients still to arrive (the engine's dependency count); on the top border, from its left end
            wait = int(self.pending[g])
            text = f"{tr('waits')} {wait}" if wait else tr("ready")
            bw = text_width(text, SMALL_FONT_PX) + 14
            out.append(Badge(x - 6, y - 10, bw, BADGE_H, text, th["wait"] if wait else th["badge"],
                             th["badge_text"], 8))
        return out

    def current_outline(self) -> Outline | None:
        """The outline around this step's node, or None."""
        if self.current < 0:
            return None
        x, y, w, h = self.box(self.current, 4)
        return Outline(self.current, x, y, w, h, self.theme["current"], 4.0, 12.0, False)

    def selected_outline(self) -> Outline | None:
        """The outline around the node a view selected, or None."""
        if self.selected < 0:
            return None
        x, y, w, h = self.box(self.selected, 9)
        return Outline(self.selected, x, y, w, h, self.theme["selected"], 3.0, 14.0, True)

    def fold_marks(self) -> list[Badge]:
        """A tab at the start of every row (column, top to bottom) of a folded layout but the first
        ("↪ row 2"): the drawing
        continues there from the end of the row before, like the next line of a paragraph."""
        fold = self.fold
        if fold is None or len(fold.rows) < 2:
            return []
        if self._fold_marks is not None:  # made once per theme and language
            return self._fold_marks
        th, tr = self.theme, self.tr
        out = []
        for k, (x, y, _w, _h) in enumerate(fold.rows.tolist()[1:], start=2):
            text = f"↪ {tr('row' if self.layout.direction == 'lr' else 'column')} {k}"
            w = text_width(text, SMALL_FONT_PX) + 12
            # above the row, clear of the "waits" badge on its first node's top border (10 px above it)
            out.append(Badge(x, y - BADGE_H - 13, w, BADGE_H, text, th["edge_done"], th["background"], 4))
        self._fold_marks = out
        return out

    def linked(self, g: int) -> list[int]:
        """Drawn node `g`'s true node and every proxy of it (just `g` for a node without proxies)."""
        if g < 0:
            return []
        true = int(self.proxy_of[g]) if self.proxy_of[g] >= 0 else g
        return [true] + self._proxies.get(true, np.zeros(0, dtype=np.int64)).tolist()

    def linked_outlines(self) -> list[Outline]:
        """Outlines around the other drawn copies of the selected node: its true node and its proxies."""
        if self.selected < 0:
            return []
        out = []
        for g in self.linked(self.selected):
            if g != self.selected:
                x, y, w, h = self.box(g, 5)
                out.append(Outline(g, x, y, w, h, self.theme["selected"], 2.0, 10.0, True))
        return out
