"""View > Collapse time steps: blocks of module uses drawn as one box each, opened in place by a double-click."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt

from gradviz.core.collapse import block_key

from .conftest import open_and_wait


def test_collapse_time_steps_and_open_a_block_in_place(qtbot, window):
    open_and_wait(qtbot, window, "rnn-unrolled", {"T": 12})
    graph = window.graph
    n_plain = len(graph.layout_)
    window.actions_["collapsed"].trigger()
    qtbot.waitUntil(lambda: bool(graph.layout_.titles), timeout=60000)
    lay = graph.layout_
    assert graph.collapse == 1 and len(lay.titles) == 12 and len(lay) < n_plain  # T=12: one box per step
    assert window.actions_["collapsed"].isChecked()
    # double-click the box of step 5: its nodes come back, the other steps stay boxes
    box = next(g for g, t in lay.titles.items() if t[1] == 5)
    first = lay.members[box][0]
    graph.resetTransform()
    graph.centerOn(*lay.pos[box])
    at = graph.mapFromScene(QPointF(*lay.pos[box]))
    qtbot.mouseDClick(graph.viewport(), Qt.MouseButton.LeftButton, pos=at)
    opened = graph.layout_
    assert block_key(lay.titles[box], 1) in graph.expanded
    assert len(opened.titles) == 11 and all(t[1] != 5 for t in opened.titles.values())
    g = int(opened.group_of[first])
    assert opened.members[g] == [first]
    # in place: the first of its nodes is where the box was on the screen (along the layers; across
    # them the view cannot scroll a graph lower than the window) and in view
    now = graph.mapFromScene(QPointF(*opened.pos[g]))
    assert abs(now.x() - at.x()) < 4 and graph.viewport().rect().contains(now)
    # the stepper still drives it: every step's state shows in the opened and the collapsed boxes
    window.step_last()
    scene = graph.scene_
    status = window.stepper.state.status
    np.testing.assert_array_equal(scene.status[g], status[first])
    # unchecking draws every node again
    window.actions_["collapsed"].trigger()
    qtbot.waitUntil(lambda: not graph.layout_.titles, timeout=60000)
    assert len(graph.layout_) == n_plain and graph.collapse is None
