"""Readable at first sight: a legible opening zoom, the overview for large graphs, zoom keys, level of detail."""
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter

from gradviz.core import record
from gradviz.core.layout import layered_layout
from gradviz.core.scene import build_scene
from gradviz.core.scene.text import FONT_PX, SMALL_FONT_PX
from gradviz.qt.legible import legible_px, legible_scale
from gradviz.qt.scene_painter import paint_scene

from .conftest import open_and_wait

NET20 = Path(__file__).resolve().parent / "data" / "net20.py"  # a 20-node model script of one's own


def _smallest_drawn_px(view) -> float:
    """The smallest font of any node in view, in screen pixels (the Scene's font size x the view's scale)."""
    scene, vis = view.scene_, view.visible_rect()
    s = view.transform().m11()
    sizes = []
    for g in range(len(scene)):
        if QRectF(*scene.box(g)).intersects(vis):
            sizes += [scene.name_px(g), FONT_PX] + [SMALL_FONT_PX for _ in scene.badges(g)]
    assert sizes, "no node in view"
    return min(sizes) * s


def test_a_model_script_opens_with_every_label_legible_and_the_loss_in_view(qtbot, window, tmp_path):
    path = tmp_path / "net20.py"
    path.write_text(NET20.read_text())
    window.resize(1280, 800)
    open_and_wait(qtbot, window, str(path))
    view = window.graph
    assert len(window.recording.nodes) >= 18
    assert _smallest_drawn_px(view) >= legible_px() - 1e-6
    loss = view.layout_.group_of[window.recording.root]
    assert view.visible_rect().contains(QRectF(*view.scene_.box(int(loss))))
    # the whole graph does not fit at that zoom: the overview shows it, with the visible part outlined
    assert not view.fits_legibly() and view.overview.isVisible()
    box = view.overview.view_box()
    assert 0 < box.width() < view.overview.width()


def test_a_small_graph_opens_whole_and_needs_no_overview(qtbot, window):
    open_and_wait(qtbot, window, "sum-xy-plus-z")
    view = window.graph
    assert view.fits_legibly() and not view.overview.isVisible()
    assert _smallest_drawn_px(view) >= legible_px() - 1e-6


def test_zoom_keys_and_ctrl_0_back_to_the_legible_fit(qtbot, window):
    open_and_wait(qtbot, window, "rnn-unrolled", {"T": 12})
    view = window.graph
    window.activateWindow()
    view.setFocus()
    s0 = view.transform().m11()
    assert abs(s0 - legible_scale(view.scene_)) < 1e-9  # the graph is too large to fit legibly
    qtbot.keyClick(view, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    s1 = view.transform().m11()
    assert s1 > s0
    qtbot.keyClick(view, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(view, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert view.transform().m11() < s0
    qtbot.keyClick(view, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert abs(view.transform().m11() - s0) < 1e-9


def test_clicking_the_overview_moves_the_view_there(qtbot, window):
    open_and_wait(qtbot, window, "rnn-unrolled", {"T": 12})
    view, ov = window.graph, window.graph.overview
    assert ov.isVisible()
    before = view.visible_rect().center()
    qtbot.mouseClick(ov, Qt.MouseButton.LeftButton, pos=QPoint(4, ov.height() // 2))
    after = view.visible_rect().center()
    assert after.x() < before.x() - 100  # towards the leaves on the left
    box = ov.view_box()
    assert box.left() < ov.width() / 3
    # View > Overview off hides it
    window.actions_["overview"].setChecked(False)
    assert not ov.isVisible()


def _pixels(scene, scale: float, color: str) -> int:
    """Paint `scene` at `scale` and count the pixels in `color`."""
    x, y, w, h = scene.bounds
    img = QImage(max(1, int(w * scale)), max(1, int(h * scale)), QImage.Format.Format_RGB32)
    p = QPainter(img)
    paint_scene(p, scene, QRectF(0, 0, img.width(), img.height()), None, False)
    p.end()
    arr = np.frombuffer(img.constBits(), dtype=np.uint32, count=img.width() * img.height()) & 0xFFFFFF
    return int(np.count_nonzero(arr == (QColor(color).rgb() & 0xFFFFFF)))


def test_at_low_zoom_nodes_are_shapes_coloured_by_state(qapp):
    rec = record("rnn-unrolled", params={"T": 30})
    scene = build_scene(rec, layered_layout(rec), None)
    idle_op = scene.styles[0]
    # far out: flat boxes in the idle op's colour, no text
    assert _pixels(scene, 0.1, idle_op.coarse) > 100
    assert _pixels(scene, 0.1, idle_op.text) == 0
    # at a readable zoom the same boxes carry their labels
    assert _pixels(scene, 1.0, idle_op.text) > 100


def _icon_luminance(action) -> float:
    """The mean luminance (0 black .. 1 white) of the opaque pixels of `action`'s icon."""
    img = action.icon().pixmap(32, 32).toImage().convertToFormat(QImage.Format.Format_ARGB32)
    arr = np.frombuffer(img.constBits(), dtype=np.uint32, count=img.width() * img.height())
    opaque = arr[(arr >> 24) > 200]
    r, g, b = (opaque >> 16) & 255, (opaque >> 8) & 255, opaque & 255
    return float(np.mean(0.2126 * r + 0.7152 * g + 0.0722 * b) / 255)


def test_transport_icons_contrast_with_either_theme(qtbot, window):
    for key in ("first", "prev", "play", "next", "last"):
        assert _icon_luminance(window.actions_[key]) < 0.3  # dark icons on the light theme
    window.set_theme("dark")
    for key in ("first", "prev", "play", "next", "last"):
        assert _icon_luminance(window.actions_[key]) > 0.7  # light icons on the dark one
    window._play_icon(True)  # the pause icon too
    assert _icon_luminance(window.actions_["play"]) > 0.7
    window._play_icon(False)
    window.set_theme("light")


def test_far_out_the_view_pans_one_cached_picture_and_repaints_it_after_a_step(qtbot, window):
    open_and_wait(qtbot, window, "rnn-unrolled", {"T": 40})
    view = window.graph
    far = view._item.far
    view.zoom(0.1 / view.transform().m11())  # far out: every node a flat box
    view.viewport().repaint()
    painted = far.paints
    assert painted >= 1 and far.image is not None
    for _ in range(5):  # panning draws the same picture
        view.horizontalScrollBar().setValue(view.horizontalScrollBar().value() + 40)
        view.viewport().repaint()
    assert far.paints == painted
    before = far.image.copy()
    window.jump_backward()  # a step: the picture is stale, then painted again once stepping pauses
    window.step_next()
    assert far.stale
    qtbot.waitUntil(lambda: far.paints > painted and not far.stale, timeout=5000)
    assert far.image != before  # the nodes that ran show their new state
    # zoomed back in: steps no longer repaint a far picture nobody sees
    window.graph.fit()
    view.viewport().repaint()
    painted = far.paints
    window.step_next()
    qtbot.waitUntil(lambda: not far._timer.isActive(), timeout=5000)
    assert far.paints == painted and far.image is None


def test_a_node_name_cut_to_its_box_is_whole_in_its_tooltip(qtbot, window):
    open_and_wait(qtbot, window, "linear-function")
    view, scene = window.graph, window.graph.scene_
    # "LinearFunction [torch]" is too wide for its box at the normal size: it is drawn smaller
    g = next(g for g in range(len(scene)) if scene.name_px(g) < FONT_PX)
    view.centerOn(*scene.pos[g])
    tip = view.tooltip_at(view.mapFromScene(*scene.pos[g]))
    assert tip.splitlines()[0] == "LinearFunction [torch]"
    # off every node: no tooltip
    empty = view.mapFromScene(scene.bounds[0] + 2, scene.bounds[1] + 2)
    assert view.node_at_view(empty) is None and view.tooltip_at(empty) == ""


def test_graph_text_scales_with_the_system_font(qtbot, window):
    from PySide6.QtWidgets import QApplication

    open_and_wait(qtbot, window, "rnn-unrolled", {"T": 12})
    view = window.graph
    normal_px, normal_scale = legible_px(), view.transform().m11()
    font = QApplication.font()
    try:
        big = QApplication.font()
        big.setPointSizeF(font.pointSizeF() * 1.6)
        QApplication.setFont(big)
        assert legible_px() > normal_px  # a larger desktop font asks for larger graph text
        view.fit()
        assert view.transform().m11() > normal_scale
        assert _smallest_drawn_px(view) >= legible_px() - 1e-6
    finally:
        QApplication.setFont(font)
        view.fit()


def test_following_the_steps_keeps_the_sent_values_in_view(qtbot, window):
    open_and_wait(qtbot, window, "rnn-unrolled", {"T": 12})
    view = window.graph
    window.jump_backward()
    for _ in range(12):
        window.step_next()
        vis = view.visible_rect()
        for f in view.scene_.flowing:
            assert vis.contains(QRectF(*f.label_box)), f.text
