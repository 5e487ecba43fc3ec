"""What a node's box says: its label lines at this step, cut to the box, and its name's font size.

Every picture shows the same lines (the app, PNG/SVG/PDF/GIF, DOT, GraphML): the name, bold, shrunk
to fit the box (`gradviz.core.scene.text.name_px`) and cut only if even that does not fit; the shape
or value; in backward the gradient that arrived. Lines are made when first drawn and kept until the
node's state changes.
"""
from __future__ import annotations

from ..explain import leaf_buffer_text
from ..labels import label_lines
from ..proxies import proxy_label
from ..timeline import BACKWARD_DONE, COMPUTED
from .text import FONT_PX, SMALL, elide, format_shape, format_tensor, name_px
from .theme import KINDS

__all__ = ["NodeText", "MAX_LINES", "TEXT_TOP", "LINE_STEP"]

MAX_LINES = 4  # label lines drawn in a box
TEXT_TOP = 6.0  # the first line's top, below the box's top
LINE_STEP = 14.5  # from one line's top to the next


class NodeText:
    """The label lines of the Scene's nodes (a part of `Scene`)."""

    def text_room(self, g: int) -> float:
        """Width a label line of node `g` may take: a leaf's rounded ends leave less than a box's corners."""
        w, h = self.size[g]
        return float(w - (h * 0.55 if KINDS[int(self.kind[g])] == "leaf" else 10))

    def lines(self, g: int) -> list[str]:
        """The label lines of drawn node `g` exactly as drawn (at most `MAX_LINES`): the first line, the
        name, bold, in a smaller font when it is too wide for the box (`name_px`), cut only if even
        that does not fit; value lines too wide for the box end in "…", so a cut value never reads as
        whole."""
        cached = self._lines[g]
        if cached is None or not self._lines_ok[g]:
            raw = self._raw_lines(g)
            room = self.text_room(g)
            px = self._name_px[g] = name_px(raw[0], room)
            cached = self._lines[g] = ([elide(raw[0], room, px, bold=True)]
                                       + [elide(line, room, FONT_PX) for line in raw[1:MAX_LINES]])
            self._lines_ok[g] = True
        return cached

    def name_px(self, g: int) -> float:
        """The pixel size of drawn node `g`'s first line (the name): `FONT_PX` unless it had to shrink."""
        self.lines(g)
        return self._name_px[g]

    def _raw_lines(self, g: int) -> list[str]:
        """The text of drawn node `g` at this step, before cutting to the box."""
        rec, tr = self.recording, self.tr
        members = self.members[g]
        node = rec.nodes[members[0]]
        if self.proxy_of[g] >= 0:  # a proxy: the shared parameter's short name, nothing else
            return [proxy_label(node.leaf or node.name)]
        title = self.layout.titles.get(g) if self.layout is not None else None
        if title is not None:  # a block of a module's uses drawn as one box
            module, first, last, count = title
            uses = f"{tr('use')} {first}" if first == last else f"{tr('uses')} {first}–{last}"
            return [module, uses, f"{count} × {tr('node')}"]
        lines = label_lines(rec, node)
        if len(members) > 1 and node.module:
            lines = [lines[0], f"{node.module} · {len(members)} {tr('uses')}"]
        state = self.state
        status = int(self.status[g])
        t = node.tensor
        if node.kind in ("leaf", "input"):
            if node.kind == "leaf" and node.leaf and state is not None and state._timeline is not None \
                    and node.leaf in rec.leaves:
                ls = state.leaf(node.leaf)
                if ls.accumulated and ls.grad is not None:
                    # AccumulateGrad has run: .grad is set
                    lines.append(tr("grad {value}", value=format_tensor(ls.grad)))
                    return lines
                if ls.arrived:
                    # before AccumulateGrad runs, what has arrived waits in the engine's input buffer
                    lines.extend(leaf_buffer_text(ls.arrived, ls.total, ls.buffer))
                    return lines
            if t is not None:
                lines.append(format_tensor(t))
            return lines
        if t is not None:
            if status >= COMPUTED and t.value is not None and t.numel <= SMALL:
                lines.append(format_tensor(t))
            else:
                lines.append(format_shape(t.shape))
        if status == BACKWARD_DONE and len(members) == 1:
            ev = self._backward_event(members[0])
            if ev is not None and ev.grad_outputs and ev.grad_outputs[0] is not None:
                lines.append(tr("grad {value}", value=format_tensor(ev.grad_outputs[0])))
        return lines

    def _backward_event(self, nid: int):
        """The first backward run of recording node `nid`, or None."""
        if self._bwd_event is None:
            first: dict = {}
            for ev in self.recording.backward:
                first.setdefault(ev.node, ev)
            self._bwd_event = first
        return self._bwd_event.get(nid)
