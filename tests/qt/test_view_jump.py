"""A jump at a large graph repaints what changed in view, nothing off screen, and leaves no stale pixel."""
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRectF
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from gradviz.core import record
from gradviz.core.timeline import Stepper, Timeline
from gradviz.qt.graph_view import QtGraphView
from gradviz.qt.step_repaint import FULL_REPAINT


def _view(rec, stepper):
    view = QtGraphView(rec, stepper)
    view.overview.enabled_by_user = False  # (the corner picture is a widget of its own, over the viewport)
    view.resize(900, 600)
    view.show()
    QApplication.processEvents()
    view.fit()
    QApplication.processEvents()
    return view


def _on_screen(view):
    """The viewport's pixels as the window shows them: what Qt painted step by step, not a fresh paint."""
    vp = view.viewport()
    at = vp.mapTo(view.window(), QPoint(0, 0))
    return view.screen().grabWindow(view.window().winId(), at.x(), at.y(), vp.width(), vp.height()).toImage()


def _full_paint(view):
    """A fresh paint of the whole viewport at the place the window has it (not at (0, 0), as `grab` paints).

    Where on the device the viewport is changes the text: under the view's zoom Qt places each glyph at
    its device x truncated to 1/64 px toward zero (`QFixed::fromReal`), so a glyph left of the device's
    origin rounds the other way from the same glyph one frame pixel to the right, and a label cut by the
    viewport's left edge lands 1 px apart in `grab` and in the window (seen with the app's font's zoom).
    """
    vp = view.viewport()
    at = vp.mapTo(view.window(), QPoint(0, 0))
    dpr = vp.devicePixelRatioF()
    img = QImage(round((at.x() + vp.width()) * dpr), round((at.y() + vp.height()) * dpr), QImage.Format.Format_RGB32)
    img.setDevicePixelRatio(dpr)
    vp.render(img, at)
    return img.copy(round(at.x() * dpr), round(at.y() * dpr), round(vp.width() * dpr), round(vp.height() * dpr))


def _same_picture(a, b) -> bool:
    """Equal up to antialiasing: a partial repaint clips edge lines to its rectangle, which moves an
    edge pixel's coverage by a level or two, while a stale node or edge is off by a whole colour."""
    def channels(img):
        img = img.convertToFormat(img.Format.Format_RGB32)
        return np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, :4 * img.width()]

    x, y = channels(a).astype(int), channels(b).astype(int)
    return x.shape == y.shape and int(np.abs(x - y).max()) <= 6


def _settled(qtbot, view) -> None:
    """Wait (2 s at most) until the window shows what a fresh full paint of the view there shows."""
    qtbot.waitUntil(lambda: _same_picture(_on_screen(view), _full_paint(view)), timeout=2000)


def _changed_groups(view, a, b):
    sa, sb = view.stepper.timeline.state_at(a), view.stepper.timeline.state_at(b)
    ids = np.flatnonzero((sa.status != sb.status) | (sa.pending != sb.pending))
    return np.unique(view.layout_.group_of[ids])


@pytest.fixture
def plain_font():
    """Qt's default application font for the test, whatever an earlier test (the app's window) set."""
    from PySide6.QtGui import QFontDatabase

    before = QApplication.font()
    QApplication.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.GeneralFont))
    yield
    QApplication.setFont(before)


def test_a_jump_with_the_apps_font_matches_a_full_paint(qtbot):
    """The app's font (DejaVu Sans, 10 pt at least) opens the view at another zoom, where a label is cut by
    the viewport's left edge: the partial repaint still matches a full paint at the window's place."""
    from gradviz.qt.app import _app

    before = QApplication.font()
    _app()  # the font the app's window sets
    try:
        test_a_jump_repaints_only_the_changed_nodes_in_view_and_the_picture_is_whole(qtbot, None)
    finally:
        QApplication.setFont(before)


def test_a_jump_repaints_only_the_changed_nodes_in_view_and_the_picture_is_whole(qtbot, plain_font):
    rec = record("rnn-unrolled", params={"T": 150})
    tl = Timeline(rec)
    a, b = tl.first_backward + 3, len(tl) - 3  # both in the backward pass: no phase change
    assert tl.state_at(a).phase == tl.state_at(b).phase == "backward"
    stepper = Stepper(tl, a)
    view = _view(rec, stepper)
    qtbot.addWidget(view)
    view.follow = False  # the view stays where it is: the jump's changes are mostly off screen
    assert not view.fits_legibly()  # the graph is larger than the view at a legible zoom
    old_current = view.current_group()
    stepper.set_step(b)
    QApplication.processEvents()
    groups, rows, full = view.last_repaint
    scene = view.scene_
    # the changed drawn nodes: changed recording nodes, the proxies of changed parameters, the old current node
    changed = {p for g in _changed_groups(view, a, b).tolist() for p in scene.linked(g)} | {old_current}
    vis = view.visible_rect()
    # many nodes changed, a few of them in view: those (and only changed ones) got a rectangle each
    assert not full and len(changed) > FULL_REPAINT
    assert 0 < len(groups) < len(changed) / 4 and set(groups.tolist()) <= changed | {view.current_group()}
    for g in changed:
        assert g in groups or not QRectF(*scene.box(g)).intersects(vis)
    # and the changed edges in view (one of their segments is), no other
    lo, hi = scene.seg_lo, scene.seg_hi
    near = (hi[:, 0] >= vis.left() - 100) & (lo[:, 0] <= vis.right() + 100) & (hi[:, 1] >= vis.top() - 40) \
        & (lo[:, 1] <= vis.bottom() + 40)
    assert len(rows) and set(rows.tolist()) <= set(scene.seg_edge[near].tolist())
    # what Qt shows after the partial repaint is what a full paint of the new step shows (Qt's queued
    # repaints may take a few rounds of events on a loaded machine; a region never asked for stays stale)
    _settled(qtbot, view)
    # and when the view follows the current step (it scrolls there), too
    view.follow = True
    stepper.set_step(tl.first_backward + 1)
    QApplication.processEvents()
    assert view.visible_rect().intersects(QRectF(*view.scene_.box(view.current_group())))
    _settled(qtbot, view)
