"""One step, every output: the DOT file, the SVG, the PNG and the app's graph show the Scene they were drawn from."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage
from PySide6.QtWidgets import QApplication

import gradviz
from gradviz.core import exporters as ex
from gradviz.core.layout import layered_layout
from gradviz.core.scene import build_scene, format_shape, format_tensor, text_width
from gradviz.core.timeline import Stepper, Timeline

_ATTR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _dot_items(text: str):
    """Nodes ``{id: attrs}`` and grad edges ``{(s, d, slot): attrs}`` of a DOT file gradviz wrote."""
    nodes, edges = {}, {}
    for line in text.splitlines():
        m = re.match(r"\s*n(\d+) (?:-> n(\d+) )?\[(.*)\];$", line)
        if not m:
            continue
        attrs = {k: v.replace("\\n", "\n").replace('\\"', '"') for k, v in _ATTR.findall(m.group(3))}
        if m.group(2) is None:
            nodes[int(m.group(1))] = attrs
        elif attrs["flow"] == "grad":
            edges[(int(m.group(1)), int(m.group(2)), int(attrs["slot"]))] = attrs
    return nodes, edges


def _scene_texts(scene) -> Counter:
    """Every piece of text the scene draws, counted."""
    out = Counter()
    for g in range(len(scene)):
        out.update(scene.lines(g))
        out.update(b.text for b in scene.badges(g))
    out.update(f.text for f in scene.flowing)
    return out


def _mode_colour(img: QImage, x0: float, y0: float, x1: float, y1: float) -> str:
    """The most common colour in a rectangle of `img` (a box's fill: text and borders are thin)."""
    seen = Counter(QColor(img.pixel(x, y)).name() for x in range(int(x0), int(x1), 2) for y in range(int(y0), int(y1), 2))
    return seen.most_common(1)[0][0]


def _check_fills(img: QImage, scene, to_image) -> None:
    """Each node's box in `img` is filled with the colour of its Scene style."""
    for g in range(len(scene)):
        x, y, w, h = scene.box(g)
        (ax, ay), (bx, by) = to_image(x + 8, y + 8), to_image(x + w - 8, y + h - 8)
        assert _mode_colour(img, ax, ay, bx, by) == scene.node_style(g).fill, (g, scene.lines(g))


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_dot_svg_png_and_the_app_show_the_scene(qtbot, tmp_path, theme):
    assert ex.load_plugins([EntryPoint("qt", "gradviz.qt.export:register", ex.PLUGIN_GROUP)]) == []
    rec = gradviz.record("mlp")
    tl = Timeline(rec)
    step = tl.first_backward + 2
    scene = build_scene(rec, layered_layout(rec, "lr"), tl.state_at(step), theme)
    assert scene.flowing and any(scene.badges(g) for g in range(len(scene)))

    # DOT: labels, fill, border and text colours per node; the flowing gradients' colour and value
    nodes, edges = _dot_items(ex.export(rec, tmp_path / "g.dot", step=step, theme=theme).read_text())
    assert set(nodes) == set(range(len(rec.nodes)))
    for g, a in nodes.items():
        st = scene.node_style(g)
        assert a["label"] == "\n".join(scene.lines(g))
        assert (a["fillcolor"], a["fontcolor"]) == (st.fill, st.text)
        assert a["color"] == (scene.theme["current"] if g == scene.current else st.border)
        assert a.get("xlabel", "") == "; ".join(b.text for b in scene.badges(g))
    for f in scene.flowing:
        a = edges[(f.sender, f.receiver, f.slot)]
        assert a["color"] == scene.edge_styles["flowing"].color and a["label"].endswith(f.text)

    # SVG: exactly the scene's text (each piece as often as drawn), and its colours
    root = ET.parse(ex.export(rec, tmp_path / "g.svg", step=step, theme=theme)).getroot()
    texts = Counter("".join(el.itertext()) for el in root.iter() if el.tag.endswith("text"))
    texts.pop("", None)
    assert texts == _scene_texts(scene)
    fills = {el.get("fill").lower() for el in root.iter() if el.get("fill", "").startswith("#")}
    want = {scene.node_style(g).fill for g in range(len(scene))} | {scene.background, scene.edge_styles["flowing"].color}
    want |= {b.fill for g in range(len(scene)) for b in scene.badges(g)}
    assert want <= fills, want - fills

    # PNG (scale 1: one pixel per scene unit, from the scene's top-left corner)
    png = QImage(str(ex.export(rec, tmp_path / "g.png", step=step, theme=theme)))
    bx, by = scene.bounds[:2]
    assert QColor(png.pixel(1, 1)).name() == scene.background
    _check_fills(png, scene, lambda x, y: (x - bx, y - by))

    # the app's graph view, painted by Qt into its (offscreen) viewport
    from gradviz.qt.graph_view import QtGraphView

    view = QtGraphView(rec, Stepper(tl, step), theme=theme)
    qtbot.addWidget(view)
    view.resize(int(scene.bounds[2]) + 40, int(scene.bounds[3]) + 40)
    view.show()
    view.resetTransform()
    view.centerOn(bx + scene.bounds[2] / 2, by + scene.bounds[3] / 2)
    QApplication.processEvents()
    shown = view.scene_
    assert [shown.lines(g) for g in range(len(shown))] == [scene.lines(g) for g in range(len(scene))]
    np.testing.assert_array_equal(shown.style, scene.style)
    assert shown.styles == scene.styles and shown.current == scene.current
    grab = view.viewport().grab().toImage()

    def to_view(x, y):
        p = view.mapFromScene(QPointF(x, y))
        return p.x(), p.y()

    _check_fills(grab, scene, to_view)


def test_width_model_bounds_qt_text_widths(qapp):
    """The core's width model, used to cut labels, is Qt's width of the painter's font, or a little more."""
    rec = gradviz.record("rnn-unrolled", params={"T": 3})
    tl = Timeline(rec)
    scene = build_scene(rec, None, tl.state_at(len(tl) - 1))
    lines = {line for g in range(len(scene)) for line in scene.lines(g)} | {"grad [554, -106, -785]", "x · 3 uses"}
    for bold in (False, True):
        font = QFont("DejaVu Sans")
        font.setPixelSize(12)
        font.setBold(bold)
        metrics = QFontMetricsF(font)
        for line in lines:
            qt, model = metrics.horizontalAdvance(line), text_width(line, bold=bold)
            assert qt - 0.05 <= model <= qt * 1.05 + 0.5, (line, bold, qt, model)


def test_formatters_are_reexported_where_they_were():
    from gradviz.qt import graph_view

    assert graph_view.format_tensor is format_tensor and graph_view.format_shape is format_shape


def test_proxies_and_folded_rows_agree_in_the_app_and_the_images(qtbot, tmp_path):
    """A folded RNN with proxies of its weights: the SVG, the PNG and the app's view show its Scene,
    fold marks included, and selecting a proxy outlines every copy of the parameter."""
    assert ex.load_plugins([EntryPoint("qt", "gradviz.qt.export:register", ex.PLUGIN_GROUP)]) == []
    rec = gradviz.record("rnn-unrolled", params={"T": 20})
    tl = Timeline(rec)
    step = tl.first_backward + 9
    scene = build_scene(rec, layered_layout(rec, "lr"), tl.state_at(step))
    proxies = np.flatnonzero(scene.proxy_of >= 0)
    assert len(proxies) and scene.fold is not None and scene.fold_marks()

    root = ET.parse(ex.export(rec, tmp_path / "g.svg", step=step)).getroot()
    texts = Counter("".join(el.itertext()) for el in root.iter() if el.tag.endswith("text"))
    texts.pop("", None)
    assert texts == _scene_texts(scene) + Counter(m.text for m in scene.fold_marks())

    png = QImage(str(ex.export(rec, tmp_path / "g.png", step=step, scale=1.0)))
    bx, by = scene.bounds[:2]
    _check_fills(png, scene, lambda x, y: (x - bx, y - by))

    from gradviz.qt.graph_view import QtGraphView

    view = QtGraphView(rec, Stepper(tl, step))
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    shown = view.scene_
    assert [shown.lines(g) for g in range(len(shown))] == [scene.lines(g) for g in range(len(scene))]
    np.testing.assert_array_equal(shown.style, scene.style)
    np.testing.assert_array_equal(shown.pos, scene.pos)
    # click a proxy: its true node is selected, and the view paints an outline around every copy
    p = int(proxies[len(proxies) // 2])
    view.resetTransform()
    view.centerOn(*shown.pos[p])
    QApplication.processEvents()
    leaf = view.node_at_view(view.mapFromScene(QPointF(*shown.pos[p])))
    assert leaf == shown.members[p][0] and rec.nodes[leaf].kind == "leaf"
    view.select_node(leaf, center=False)
    assert shown.selected == shown.proxy_of[p]
    assert p in [o.group for o in shown.linked_outlines()]
    QApplication.processEvents()
    grab = view.viewport().grab().toImage()
    x, y, w, h = shown.box(p, 5)
    corner = view.mapFromScene(QPointF(x + w / 2, y))  # the dashed outline's top edge, above the proxy
    near = {QColor(grab.pixel(corner.x() + dx, corner.y() + dy)).name() for dx in range(-12, 13) for dy in (-1, 0, 1)}
    assert shown.theme["selected"] in near
