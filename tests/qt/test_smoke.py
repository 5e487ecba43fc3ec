"""The window opens on the default model and draws it; QtGraphView works without a window."""
import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter

from gradviz.core import Stepper, Timeline, record
from gradviz.qt.graph_view import QtGraphView

from .conftest import open_and_wait


def _distinct_colours(img: QImage) -> int:
    img = img.convertToFormat(QImage.Format.Format_RGB32)
    arr = np.frombuffer(img.constBits(), dtype=np.uint32, count=img.width() * img.height())
    return len(np.unique(arr))


def test_window_opens_default_model(qtbot, window):
    open_and_wait(qtbot, window, "repeated-layer")
    assert window.recording is not None and window.last_error == ""
    assert window.windowTitle() == "gradviz — repeated-layer"
    assert len(window.graph.layout_) == len(window.recording.nodes)


def test_graph_view_standalone_render_to(qtbot):
    rec = record("repeated-layer")
    stepper = Stepper(Timeline(rec))
    view = QtGraphView(rec, stepper=None, layout="lr", theme="light")
    qtbot.addWidget(view)
    view.resize(800, 500)
    r = view.graph_rect()
    assert r.width() > 500 and r.height() > 50
    assert not view.visible_rect().isEmpty()
    img = QImage(1000, 400, QImage.Format.Format_ARGB32)
    img.fill(0xFFFFFFFF)
    p = QPainter(img)
    view.render_to(p, QRectF(0, 0, 1000, 400))
    p.end()
    assert _distinct_colours(img) > 50  # nodes, text, edges: not a blank image
    # with a stepper: the current node is drawn highlighted, and render_to shows it
    view2 = QtGraphView(rec, stepper=stepper, layout="tb", theme="dark")
    qtbot.addWidget(view2)
    stepper.last()
    assert view2.current_group() == view2.layout_.group_of[stepper.state.current]
    img2 = QImage(600, 800, QImage.Format.Format_ARGB32)
    p = QPainter(img2)
    view2.render_to(p, QRectF(0, 0, 600, 800), view2.graph_rect())
    p.end()
    assert _distinct_colours(img2) > 50
