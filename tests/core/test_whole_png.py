"""The whole 1,700-step RNN in one legible PNG (``whole=True``, ``--whole``): folded to fit a square.

The geometry is checked on the Scene (every label's text at the chosen scale, both sides of the
image); the file is exported and read back (its size, and dark text inside a node's box), which
needs the image exporters (the gui extra). The export draws a 16k x 16k image: about 1.5 GiB and
tens of seconds on 2 cores (benchmarks/RESULTS_export.md), hence the slow mark.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import gradviz
from gradviz.core.edges import edge_spans
from gradviz.core.fold import FIT_BOX
from gradviz.core.layout import NODE_H, layered_layout
from gradviz.core.pages import LEGIBLE_PX, LEGIBLE_SCALE, PT_PER_PX, plan_image, plan_pdf
from gradviz.core.scene import build_scene
from gradviz.core.scene.text import FONT_PX
from gradviz.core.timeline import Timeline

PNG_SIDE, PNG_PIXELS = 16384, 16384 * 8192  # the PNG exporter's limits (gradviz.qt.export)
PDF_POINTS = 14400.0


@pytest.fixture(scope="module")
def rnn():
    rec = gradviz.record("rnn-unrolled", params={"T": 1700}, keep_values=False)
    tl = Timeline(rec)
    return rec, tl


def _plan(rec, tl, direction="lr"):
    scene = build_scene(rec, layered_layout(rec, direction, fold=FIT_BOX), tl.state_at(len(tl) - 1))
    return scene, plan_image(scene, None, None, PNG_SIDE, PNG_PIXELS, whole=True)


def _text_px(scene) -> dict:
    """The smallest pixel size (at scale 1) of every kind of text `scene` draws at its step: names, the
    other label lines, badges, fold marks and the values on flowing gradients."""
    n = len(scene)
    names = np.fromiter((scene.name_px(g) for g in range(n)), dtype=float, count=n)
    lines = [FONT_PX for g in range(n) if len(scene.lines(g)) > 1]
    badges = [b.px for g in range(n) for b in scene.badges(g)]
    return {"name": float(names.min()), "line": min(lines, default=np.inf), "badge": min(badges, default=np.inf),
            "fold mark": min((b.px for b in scene.fold_marks()), default=np.inf),
            "gradient value": FONT_PX if scene.flowing else np.inf}


def test_the_whole_rnn_folds_to_a_square_where_every_label_is_legible(rnn):
    rec, tl = rnn
    scene, plan = _plan(rec, tl)
    assert edge_spans(scene.layout).max() <= 3
    # the whole drawing, not a part, within 16,384 px per side
    assert plan.pages == [scene.bounds]
    w, h = math.ceil(scene.bounds[2] * plan.scale), math.ceil(scene.bounds[3] * plan.scale)
    assert max(w, h) <= PNG_SIDE and min(w, h) > PNG_SIDE * 0.8  # a square, not a page of its old shape
    # every text drawn at the chosen scale: names (possibly shrunk to fit), label lines, badges, fold marks,
    # and, in the middle of backward, the "waits" badges and the value on the gradient flowing
    assert len(scene) > 18000
    mid = build_scene(rec, scene.layout, tl.state_at(len(tl) - 40))
    assert mid.phase == "backward" and mid.flowing
    sizes = {k: min(a, b) for (k, a), b in zip(_text_px(scene).items(), _text_px(mid).values())}
    assert max(sizes.values()) < np.inf  # every kind of text is drawn (and so checked)
    small = {k: round(px * plan.scale, 2) for k, px in sizes.items() if px * plan.scale < LEGIBLE_PX}
    assert not small, f"text under {LEGIBLE_PX:g} px at scale {plan.scale:.3g}: {small}"
    assert plan.scale >= LEGIBLE_SCALE and "legible in one PNG" in plan.notes[0]
    # the page-shaped fold (the default) does not fit legibly: that is what the square fold is for
    default = build_scene(rec, layered_layout(rec), None)
    assert plan_image(default, None, None, PNG_SIDE, PNG_PIXELS, whole=True).pages != [default.bounds]
    # a PDF of the same fold is one legible page
    pdf = plan_pdf(scene, None, None, None, PDF_POINTS)
    assert len(pdf.pages) == 1 and pdf.scale >= LEGIBLE_SCALE
    assert max(pdf.page_size) <= PDF_POINTS and pdf.page_size[0] == pytest.approx(scene.bounds[2] * pdf.scale * PT_PER_PX)


def test_a_whole_that_cannot_be_legible_is_a_part_with_a_note(rnn):
    rec, tl = rnn
    scene, plan = _plan(rec, tl)
    small = plan_image(scene, None, None, PNG_SIDE / 2, PNG_PIXELS, whole=True)
    assert small.scale == LEGIBLE_SCALE and small.source[2] * small.source[3] < scene.bounds[2] * scene.bounds[3]
    assert "not legible within 8192 px per side" in small.notes[0]


@pytest.mark.slow
def test_the_whole_rnn_png_is_written_legible(rnn, tmp_path):
    pytest.importorskip("PySide6")
    from PIL import Image

    from gradviz.core import exporters as ex

    ex.load_plugins()
    if ".png" not in ex.exporters():
        pytest.skip("the image exporters are not installed")
    rec, tl = rnn
    scene, plan = _plan(rec, tl)
    notes: list = []
    path = ex.export(rec, tmp_path / "whole.png", whole=True, progress=lambda f, m: notes.append(m) if f < 0 else None)
    assert any("legible in one PNG" in n for n in notes)
    x0, y0, bw, bh = scene.bounds
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # 260 Mpx: larger than PIL's bomb guard
    try:
        with Image.open(path) as im:
            assert im.size == (math.ceil(bw * plan.scale), math.ceil(bh * plan.scale))
            assert max(im.size) <= PNG_SIDE
            # the op box nearest the top-left corner, as the image shows it: its text is drawn
            full = np.flatnonzero(scene.size[:, 1] >= NODE_H)
            near = full[np.argsort(scene.pos[full].sum(1))[:50]].tolist()
            g = next(k for k in near if scene.lines(k)[0] == "TanhBackward0")
            (cx, cy), (nw, nh) = scene.pos[g], scene.size[g]
            box = [round((cx - nw / 2 - x0) * plan.scale) + 3, round((cy - nh / 2 - y0) * plan.scale) + 3,
                   round((cx + nw / 2 - x0) * plan.scale) - 3, round((cy + nh / 2 - y0) * plan.scale) - 3]
            crop = np.asarray(im.crop(box).convert("L"))
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    dark = crop < 110  # label text (the box is a light fill with a coloured outline)
    assert dark.sum() > 40
    rows = np.flatnonzero(dark.any(1))
    assert rows.max() - rows.min() >= 2 * LEGIBLE_PX  # two or more lines of text, each at least 9 px apart


def test_the_command_line_whole_folds_a_short_rnn_into_a_square_png(tmp_path, capsys):
    pytest.importorskip("PySide6")
    from PIL import Image

    from gradviz.cli import main

    out, page = tmp_path / "whole.png", tmp_path / "page.png"
    assert main(["export", "rnn-unrolled", "-p", "T=60", "-o", str(out), "--whole"]) == 0
    assert "legible in one PNG" in capsys.readouterr().err
    assert main(["export", "rnn-unrolled", "-p", "T=60", "-o", str(page)]) == 0
    with Image.open(out) as im, Image.open(page) as pm:
        (w, h), (pw, ph) = im.size, pm.size
    assert 0.7 < w / h < 1.3 and pw / ph > w / h  # a square, where the default fold is a page's shape
