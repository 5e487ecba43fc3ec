"""Fit a drawing to a page: a legible scale, the part around a node or steps, pages, a GIF that follows.

A picture is legible when its label text is at least `LEGIBLE_PX` pixels high: the Scene's labels,
badges and fold marks are `FONT_PX` at scale 1, so no export chooses a scale below `LEGIBLE_SCALE`
(0.75) on its own; the whole drawing in one image (``whole``) also measures every name
(`gradviz.core.scene.legible.smallest_text_px`, the rule the app's zoom reads). Where the
whole drawing is too big to be legible in one image, an export shows a part of it: around a node
(``around``), the nodes of a range of timeline steps (``steps``), or, for PDF, several pages.

Everything here is plain arithmetic on the Scene's rectangles (x, y, w, h, scene units); the image
exporters (the gui extra) paint what it plans. A plan's notes say in words what was chosen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import GradvizError
from .recording import Recording
from .scene import Scene
from .scene.legible import smallest_text_px
from .scene.text import FONT_PX
from .timeline import Timeline

__all__ = ["LEGIBLE_PX", "LEGIBLE_SCALE", "AROUND_SIZE", "PART_SIDE", "PAPER", "Plan", "fit_scale", "plan_image", "plan_pdf",
           "resolve_region", "parse_steps", "find_node", "follow_rect", "PT_PER_PX"]

LEGIBLE_PX = 9.0  # the smallest label text an export chooses on its own, in pixels
LEGIBLE_SCALE = LEGIBLE_PX / FONT_PX
AROUND_SIZE = (2400.0, 1600.0)  # the part of the drawing `around` shows: a large screen at scale 1
PART_SIDE = 4096.0  # pixels per side of the part an image shows when the whole is not legible in one (quick to encode)
PT_PER_PX = 0.75  # PDF points per drawing pixel (96 px per inch)
PAPER = {"a4": (841.89, 595.28), "a3": (1190.55, 841.89), "a2": (1683.78, 1190.55), "letter": (792.0, 612.0),
         "tabloid": (1224.0, 792.0)}  # landscape, points
_PAD = 40.0  # around the nodes of a part


@dataclass
class Plan:
    """What an image export paints: the drawing's rectangles (one per page) at one scale, and why."""

    scale: float
    pages: list = field(default_factory=list)  # (x, y, w, h) of the drawing, one per page
    notes: list = field(default_factory=list)
    page_size: tuple = (0.0, 0.0)  # PDF: the page in points (0 for images: the drawing's size)

    @property
    def source(self) -> tuple:
        return self.pages[0]


def fit_scale(w: float, h: float, max_side: float, max_pixels: float | None = None) -> float:
    """The largest scale, at most 1, at which a w x h drawing stays within the limits."""
    f = min(1.0, max_side / max(w, 1.0), max_side / max(h, 1.0))
    if max_pixels is not None and w * h * f * f > max_pixels:
        f = min(f, math.sqrt(max_pixels / max(w * h, 1.0)))
    return f


def parse_steps(text, last: int) -> tuple[int, int]:
    """Timeline steps ``"A:B"`` (inclusive; either end may be left out) as a pair within 0..`last`."""
    if isinstance(text, (tuple, list)) and len(text) == 2:
        a, b = text
    else:
        a, sep, b = str(text).partition(":")
        if not sep:
            raise GradvizError(f"steps {text!r} is not a range A:B", hint="for example --steps 100:200")
    try:
        lo = int(a) if str(a).strip() else 0
        hi = int(b) if str(b).strip() else last
    except ValueError:
        raise GradvizError(f"steps {text!r} is not a range of step numbers A:B",
                           hint="for example --steps 100:200") from None
    lo, hi = (lo + last + 1 if lo < 0 else lo), (hi + last + 1 if hi < 0 else hi)
    if not 0 <= lo <= hi <= last:
        raise GradvizError(f"steps {text!r} are outside this recording's steps 0..{last} (or A > B)",
                           hint="gradviz steps TARGET lists them")
    return lo, hi


def find_node(rec: Recording, text, notes: list | None = None) -> int:
    """A node by id (a number) or by name (the first of the nodes `Recording.find` gives)."""
    s = str(text).strip()
    if s.lstrip("-").isdigit():
        nid = int(s)
        if not 0 <= nid < len(rec.nodes):
            raise GradvizError(f"no node {nid}: this recording's nodes are 0..{len(rec.nodes) - 1}",
                               hint="gradviz inspect TARGET lists them")
        return nid
    hits = rec.find(s) if s else []
    if not hits:
        raise GradvizError(f"no node matches {s!r}", hint="give a node id or a name gradviz inspect TARGET shows")
    if len(hits) > 1 and notes is not None:
        notes.append(f"{s!r} matches {len(hits)} nodes: the part around the first, node {hits[0].id} "
                     "(give a node id to pick another)")
    return hits[0].id


def _clamp(x: float, y: float, w: float, h: float, bounds: tuple) -> tuple:
    """Rectangle (x, y, w, h) moved inside `bounds`, and cut to it where it is larger."""
    bx, by, bw, bh = bounds
    w, h = min(w, bw), min(h, bh)
    x = min(max(x, bx), bx + bw - w)
    y = min(max(y, by), by + bh - h)
    return (float(x), float(y), float(w), float(h))


def follow_rect(scene: Scene, group: int, w: float, h: float, prev: tuple | None = None,
                within: tuple | None = None) -> tuple:
    """A w x h part of the drawing (of `within`, the whole by default) showing drawn node `group`:
    `prev` while the node is well inside it (the picture holds still), else centred on the node."""
    within = within or scene.bounds
    if group < 0:
        return prev if prev is not None else _clamp(within[0], within[1], w, h, within)
    cx, cy = scene.pos[group]
    nw, nh = scene.size[group]
    if prev is not None:
        px, py, pw, ph = prev
        if px + nw <= cx <= px + pw - nw and py + nh <= cy <= py + ph - nh:
            return prev
    return _clamp(cx - w / 2, cy - h / 2, w, h, within)


def resolve_region(rec: Recording, scene: Scene, timeline: Timeline, around=None, steps=None,
                   notes: list | None = None) -> tuple | None:
    """The part of the drawing asked for: around a node (`AROUND_SIZE`), or the nodes of timeline
    steps A..B; None for the whole drawing."""
    if around is not None and steps is not None:
        raise GradvizError("give either --around or --steps, not both")
    if around is not None:
        g = int(scene.group_of[find_node(rec, around, notes)])
        x, y = scene.pos[g]
        return _clamp(x - AROUND_SIZE[0] / 2, y - AROUND_SIZE[1] / 2, *AROUND_SIZE, scene.bounds)
    if steps is not None:
        a, b = parse_steps(steps, len(timeline) - 1)
        nodes = [s.node for s in timeline.steps[a:b + 1] if s.node is not None]
        if not nodes:
            raise GradvizError(f"steps {a}:{b} run no node", hint="pick steps of the forward or backward phase")
        groups = np.unique(scene.group_of[np.asarray(nodes, dtype=np.int64)])
        lo = (scene.pos[groups] - scene.size[groups] / 2).min(0) - _PAD
        hi = (scene.pos[groups] + scene.size[groups] / 2).max(0) + _PAD
        return (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))
    return None


def _focus(scene: Scene) -> int:
    """The drawn node a part of the drawing is centred on: this step's node, else the loss."""
    if scene.current >= 0:
        return scene.current
    return int(scene.group_of[scene.recording.root]) if len(scene.group_of) else -1


def plan_image(scene: Scene, region: tuple | None, asked: float | None, max_side: float,
               max_pixels: float | None = None, what: str = "PNG", whole: bool = False) -> Plan:
    """The scale and the part of the drawing an image shows.

    With no scale asked for, the whole drawing (or `region`) at scale 1, or smaller to fit the
    limits but never below `LEGIBLE_SCALE`; where even that does not fit, a part of at most
    `PART_SIDE` pixels per side around this step's node, at the legible scale. An asked-for scale is lowered to fit the
    limits, with a note. `whole` asks for the whole drawing at the largest scale within `max_side`
    per side, `max_pixels` aside (the drawing folded to fit a square: ``fold="fit"``), as long as it
    is legible there.
    """
    src = region or scene.bounds
    w, h = src[2], src[3]
    if whole and asked is None and region is None:
        f = fit_scale(w, h, max_side)
        # every text the drawing has, names measured one by one (the export paints them all anyway)
        smallest = smallest_text_px(scene, None)
        if f >= LEGIBLE_SCALE and f * smallest >= LEGIBLE_PX:
            return Plan(f, [src], [f"the whole graph legible in one {what}: {math.ceil(w * f):,} x "
                                   f"{math.ceil(h * f):,} px at scale {f:.3g} (smallest text "
                                   f"{smallest * f:.1f} px)"])
    f = fit_scale(w, h, max_side, max_pixels)
    if asked is not None:
        scale = asked * fit_scale(w * asked, h * asked, max_side, max_pixels)
        plan = Plan(scale, [src])
        if scale < asked:
            small = " (labels below 9 px: use --around or --steps for a legible part)" if scale < LEGIBLE_SCALE else ""
            plan.notes.append(f"{what} capped at {int(max_side)} px per side"
                              + (f" and {int(max_pixels) // 2**20} Mpx" if max_pixels else "")
                              + f": drawn at scale {scale:.3g} instead of {asked:g}{small}")
        return plan
    if f >= LEGIBLE_SCALE:
        plan = Plan(f, [src])
        if f < 1.0:
            plan.notes.append(f"{what} drawn at scale {f:.3g} to fit {int(max_side)} px per side (labels "
                              f"{FONT_PX * f:.1f} px)")
        return plan
    s = LEGIBLE_SCALE
    side = min(max_side, PART_SIDE)  # a part: a large page, not the largest image allowed (slow to encode)
    pw, ph = min(w, side / s), min(h, side / s)
    if max_pixels is not None and pw * ph * s * s > max_pixels:
        # as wide as allowed (rows of a folded drawing read across), as high as the pixels allow
        ph = min(ph, max_pixels / (s * s * pw))
    g = _focus(scene)
    x, y = scene.pos[g] if g >= 0 else (src[0] + w / 2, src[1] + h / 2)
    part = _clamp(x - pw / 2, y - ph / 2, pw, ph, src)
    plan = Plan(s, [part])
    if whole and region is None:
        plan.notes.append(f"the whole graph is not legible within {int(max_side)} px per side, even folded to fit")
    plan.notes.append(f"{'the part asked for' if region else 'the whole graph'} needs {w * s:,.0f} x {h * s:,.0f} "
                      f"px to be legible (labels "
                      f"{LEGIBLE_PX:g} px), more than one {what} holds: this one shows the part around "
                      f"node {scene.members[g][0] if g >= 0 else '?'}; export another part with --around NODE or "
                      "--steps A:B, every part as PDF pages (--page a3), fewer boxes (--collapse N)"
                      + ("" if whole else ", or the whole folded to fit one large image (--whole)"))
    return plan


def _tiles(src: tuple, tw: float, th: float, scene: Scene) -> list:
    """A grid of tw x th rectangles over `src`, row by row, leaving out those with no node."""
    x0, y0, w, h = src
    cols, rows = max(1, math.ceil(w / tw - 1e-9)), max(1, math.ceil(h / th - 1e-9))
    lo, hi = scene.pos - scene.size / 2, scene.pos + scene.size / 2
    out = []
    for r in range(rows):
        for c in range(cols):
            x, y = x0 + c * tw, y0 + r * th
            hit = (hi[:, 0] >= x) & (lo[:, 0] <= x + tw) & (hi[:, 1] >= y) & (lo[:, 1] <= y + th)
            if hit.any():
                out.append((x, y, tw, th))
    return out


def plan_pdf(scene: Scene, region: tuple | None, asked: float | None, page: str | None,
             max_points: float) -> Plan:
    """The pages of a PDF: the whole drawing (or `region`) on one page when it is legible there,
    else pages of the legible drawing.

    `page` is a paper size of `PAPER` (landscape; portrait for a drawing taller than wide) or None for
    one page the drawing's size (at most `max_points` per side).
    """
    src = region or scene.bounds
    w, h = src[2], src[3]
    want = 1.0 if asked is None else asked
    if page is None:
        pw_pt, ph_pt = w * want * PT_PER_PX, h * want * PT_PER_PX
        f = fit_scale(pw_pt, ph_pt, max_points)
        scale = want * f
        if scale >= LEGIBLE_SCALE or asked is not None:
            plan = Plan(scale, [src], page_size=(pw_pt * f, ph_pt * f))
            if f < 1.0:
                plan.notes.append(f"PDF page capped at {max_points:g} pt (200 in) per side: the drawing is shrunk "
                                  f"by {f:.3g} (still vector: zoom in to read it)")
            return plan
        scale = LEGIBLE_SCALE
        page_pt = (min(max_points, w * scale * PT_PER_PX), min(max_points, h * scale * PT_PER_PX))
    else:
        key = str(page).lower()
        if key not in PAPER:
            raise GradvizError(f"unknown page size {page!r}", hint=f"use one of {', '.join(PAPER)}")
        page_pt = PAPER[key] if w >= h else PAPER[key][::-1]
        f = min(page_pt[0] / (w * want * PT_PER_PX), page_pt[1] / (h * want * PT_PER_PX), 1.0)
        if want * f >= LEGIBLE_SCALE:  # the whole on one page, shrunk to it if need be
            return Plan(want * f, [src], page_size=page_pt)
        scale = want if asked is not None else LEGIBLE_SCALE
    tw, th = page_pt[0] / PT_PER_PX / scale, page_pt[1] / PT_PER_PX / scale
    pages = _tiles(src, tw, th, scene)
    plan = Plan(scale, pages, page_size=page_pt)
    plan.notes.append(f"the drawing is legible (labels {FONT_PX * scale:.1f} px) on {len(pages)} pages of "
                      f"{page_pt[0]:.0f} x {page_pt[1]:.0f} pt, row by row")
    return plan
