"""Exports fit a page: a legible scale, the part around a node or steps, PDF pages, a GIF that follows.

The plans are checked on the Scene's geometry; the files are read back (PNG with PIL, PDF with pypdf,
SVG parsed) where the image exporters (the gui extra) are installed.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

import gradviz
from gradviz.core.errors import GradvizError
from gradviz.core.edges import edge_spans
from gradviz.core.layout import layered_layout
from gradviz.core.pages import (AROUND_SIZE, LEGIBLE_PX, LEGIBLE_SCALE, PAPER, PT_PER_PX, follow_rect, parse_steps,
                                plan_image, plan_pdf, resolve_region)
from gradviz.core.scene import build_scene
from gradviz.core.scene.text import FONT_PX
from gradviz.core.timeline import Timeline

PNG_SIDE, PNG_PIXELS = 16384, 16384 * 8192  # the PNG exporter's limits (gradviz.qt.export)


@pytest.fixture(scope="module")
def big():
    """rnn-unrolled at 1,700 steps, its timeline and its Scene at the end, laid out as the exports do."""
    rec = gradviz.record("rnn-unrolled", params={"T": 1700}, keep_values=False)
    tl = Timeline(rec)
    lay = layered_layout(rec)
    return rec, tl, build_scene(rec, lay, tl.state_at(len(tl) - 1))


def _inside(rect, bounds) -> bool:
    x, y, w, h = rect
    bx, by, bw, bh = bounds
    return bx - 1e-6 <= x and by - 1e-6 <= y and x + w <= bx + bw + 1e-6 and y + h <= by + bh + 1e-6


def test_the_1700_step_rnn_png_is_legible_and_within_the_limits(big):
    rec, tl, scene = big
    assert edge_spans(scene.layout).max() <= 3
    plan = plan_image(scene, None, None, PNG_SIDE, PNG_PIXELS)
    w, h = plan.source[2] * plan.scale, plan.source[3] * plan.scale
    assert max(w, h) <= PNG_SIDE and w * h <= PNG_PIXELS
    assert FONT_PX * plan.scale >= LEGIBLE_PX
    # the names drawn in it, at their own (possibly shrunk) size, are legible too
    x, y, pw, ph = plan.source
    shown = np.flatnonzero((np.abs(scene.pos[:, 0] - (x + pw / 2)) < pw / 2) & (np.abs(scene.pos[:, 1] - (y + ph / 2)) < ph / 2))
    assert len(shown) > 300
    assert min(scene.name_px(int(g)) for g in shown[:400]) * plan.scale >= LEGIBLE_PX
    # it is too big to be legible whole: the part around this step's node, and the note says how to get the rest
    assert _inside(plan.source, scene.bounds) and plan.source[2] * plan.source[3] < scene.bounds[2] * scene.bounds[3]
    assert scene.current >= 0 and _inside(scene.box(scene.current), plan.source)
    assert any("--around" in n and "--steps" in n for n in plan.notes)


def test_a_small_graph_keeps_scale_one_and_an_asked_scale_is_capped_with_a_note():
    rec = gradviz.record("mlp")
    scene = build_scene(rec, layered_layout(rec), None)
    plan = plan_image(scene, None, None, PNG_SIDE, PNG_PIXELS)
    assert plan.scale == 1.0 and plan.source == scene.bounds and not plan.notes
    plan = plan_image(scene, None, 4.0, 1000, None)
    assert plan.scale < 4.0 and "capped" in plan.notes[0]
    assert max(plan.source[2], plan.source[3]) * plan.scale <= 1000 + 1e-6


def test_around_and_steps_pick_the_part_of_the_drawing(big):
    rec, tl, scene = big
    node = rec.find("MseLoss")[0].id
    rect = resolve_region(rec, scene, tl, around=node)
    assert (rect[2], rect[3]) == AROUND_SIZE and _inside(scene.box(int(scene.group_of[node])), rect)
    notes: list = []
    by_name = resolve_region(rec, scene, tl, around="TanhBackward0", notes=notes)
    assert by_name is not None and "matches 1700 nodes" in notes[0]
    a, b = 10, 40
    rect = resolve_region(rec, scene, tl, steps=f"{a}:{b}")
    for s in tl.steps[a:b + 1]:
        assert _inside(scene.box(int(scene.group_of[s.node])), rect)
    assert rect[2] * rect[3] < scene.bounds[2] * scene.bounds[3] / 20
    assert parse_steps(":5", 9) == (0, 5) and parse_steps("-3:", 9) == (7, 9)
    for bad in ("5", "a:b", "8:3", "0:99"):
        with pytest.raises(GradvizError):
            parse_steps(bad, 9)
    with pytest.raises(GradvizError):
        resolve_region(rec, scene, tl, around="no such node")
    with pytest.raises(GradvizError):
        resolve_region(rec, scene, tl, around=node, steps="1:2")


def test_pdf_pages_of_a_legible_drawing(big):
    rec, tl, scene = big
    one = plan_pdf(scene, None, None, None, 14400.0)
    assert len(one.pages) == 1 and one.scale >= LEGIBLE_SCALE and max(one.page_size) <= 14400.0
    a3 = plan_pdf(scene, None, None, "a3", 14400.0)
    assert a3.page_size == PAPER["a3"] and a3.scale == LEGIBLE_SCALE and len(a3.pages) > 20
    # the pages cover every node, each page the paper's shape at the legible scale
    covered = np.zeros(len(scene), dtype=bool)
    for x, y, w, h in a3.pages:
        assert (w * a3.scale * PT_PER_PX, h * a3.scale * PT_PER_PX) == pytest.approx(PAPER["a3"])
        covered |= (np.abs(scene.pos[:, 0] - (x + w / 2)) <= w / 2) & (np.abs(scene.pos[:, 1] - (y + h / 2)) <= h / 2)
    assert covered.all()
    small = gradviz.record("mlp")
    s_scene = build_scene(small, layered_layout(small), None)
    assert len(plan_pdf(s_scene, None, None, "a4", 14400.0).pages) == 1


def test_follow_holds_still_while_the_node_is_well_inside(big):
    rec, tl, scene = big
    g = int(scene.group_of[rec.root])
    first = follow_rect(scene, g, 1280, 800)
    assert _inside(scene.box(g), first) and _inside(first, scene.bounds)
    near = int(np.argmin(np.hypot(*(scene.pos - scene.pos[g] - (150, 0)).T) + (np.arange(len(scene)) == g) * 1e9))
    if _inside(scene.box(near, 160), first):
        assert follow_rect(scene, near, 1280, 800, first) == first
    far = int(np.argmax(np.hypot(*(scene.pos - scene.pos[g]).T)))
    moved = follow_rect(scene, far, 1280, 800, first)
    assert moved != first and _inside(scene.box(far), moved)


# ---------------------------------------------------------------------------------------------
# the files, read back (needs the image exporters: the gui extra)

@pytest.fixture(scope="module")
def images():
    pytest.importorskip("PySide6")
    from gradviz.core import exporters as ex

    ex.load_plugins()
    if ".png" not in ex.exporters():
        pytest.skip("the image exporters are not installed")
    return ex


def test_exports_read_back(images, tmp_path):
    from PIL import Image
    from pypdf import PdfReader

    rec = gradviz.record("rnn-unrolled", params={"T": 150}, keep_values=False)
    notes: list = []
    png = images.export(rec, tmp_path / "g.png", progress=lambda f, m: notes.append(m) if f < 0 else None)
    with Image.open(png) as im:
        w, h = im.size
    assert max(w, h) <= PNG_SIDE and w > 1000 and h > 1000  # a page, not a 16384 x 11 strip
    part = images.export(rec, tmp_path / "a.png", around=0, scale=1.0)
    with Image.open(part) as im:
        assert im.size == (int(AROUND_SIZE[0]), int(AROUND_SIZE[1]))
    pdf = images.export(rec, tmp_path / "g.pdf", page="a4")
    reader = PdfReader(pdf)
    assert len(reader.pages) > 1
    box = reader.pages[0].mediabox
    assert (float(box.width), float(box.height)) == pytest.approx(PAPER["a4"], abs=1)
    svg = images.export(rec, tmp_path / "s.svg", steps="20:60")
    root = ET.parse(svg).getroot()
    texts = ["".join(el.itertext()) for el in root.iter() if el.tag.endswith("text")]
    assert 0 < sum("TanhBackward0" in t for t in texts) < 150  # a part, not the whole
    gif = images.export(rec, tmp_path / "g.gif", max_frames=12)
    with Image.open(gif) as im:
        assert im.size == (1280, 800) and im.n_frames == 12


def test_the_command_line_exports_a_part_and_says_what_is_wrong_in_one_line(images, tmp_path, capsys):
    from PIL import Image

    from gradviz.cli import main

    out = tmp_path / "part.png"
    assert main(["export", "rnn-unrolled", "-p", "T=30", "-o", str(out), "--steps", "5:12", "--fold", "off"]) == 0
    with Image.open(out) as im:
        assert im.size[0] < 6000  # the steps' part of a 18,000 px strip
    capsys.readouterr()
    for bad in (["--steps", "9"], ["--fold", "x"], ["--around", "nope"], ["--page", "b9"]):
        assert main(["export", "rnn-unrolled", "-p", "T=3", "-o", str(tmp_path / "x.pdf"), *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0].startswith("error: ") and len(err) == 2 and err[1].startswith("hint: "), err
    assert not (tmp_path / "x.pdf").exists()
