"""The main window against the core: stepping, selection, inspector, accumulation, checks, errors, cancel."""
import importlib.util

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from gradviz.core.backends import backend_names, get_backend
from gradviz.core.models import MODELS
from gradviz.core.timeline import BACKWARD_DONE
from gradviz.qt import i18n
from gradviz.qt.graph_view import format_tensor

from .conftest import open_and_wait


def _assert_view_matches_core(win):
    """The graph shows exactly the core's state: current node, status, pending, flowing gradients."""
    state = win.stepper.state
    lay = win.graph.layout_
    item = win.graph._item
    expected_current = -1 if state.current is None else lay.group_of[state.current]
    assert win.graph.current_group() == expected_current, state.step
    n = len(state.status)  # drawn nodes past n are proxies of a shared weight: they show their true node
    np.testing.assert_array_equal(item.status[:n], state.status)
    np.testing.assert_array_equal(item.pending[:n], state.pending)
    np.testing.assert_array_equal(item.status[n:], state.status[lay.proxy_of[n:]])
    expected_flow = [(s, d, format_tensor(g) if g is not None else "None") for s, d, _slot, g in state.flowing]
    true = [(s, int(lay.proxy_of[d]) if d >= n else d, text) for s, d, text in win.graph.flowing_texts()]
    assert true == expected_flow
    # edges carry a gradient once their sender ran backward
    for k, (s, _d, _slot) in enumerate(win.recording.edges):
        assert item.edge_done[lay.edge_of[k]] == (state.status[s] == BACKWARD_DONE)
    assert win.transport.slider.value() == state.step.index
    assert state.step.describe(win.recording) in win.transport.phase_label.text()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_step_through_every_model(qtbot, window, name):
    open_and_wait(qtbot, window, name)
    assert window.last_error == "", window.last_error
    n = len(window.timeline)
    _assert_view_matches_core(window)
    for i in range(1, n):
        window.step_next()
        assert window.stepper.index == i
        _assert_view_matches_core(window)
    window.step_next()  # past the end: stays
    assert window.stepper.index == n - 1
    for i in range(n - 2, -1, -1):
        window.step_prev()
        assert window.stepper.index == i
        _assert_view_matches_core(window)
    # random jumps (slider, event list) land on the same state as stepping
    for i in (n - 1, n // 2, 0, window.timeline.phase_start("backward")):
        window.transport.slider.setValue(i)
        assert window.stepper.index == i
        _assert_view_matches_core(window)


def test_keys_step_play_and_fit(qtbot, window):
    open_and_wait(qtbot, window, "repeated-layer")
    window.activateWindow()
    window.graph.setFocus()
    qtbot.keyClick(window.graph, Qt.Key.Key_Right)
    assert window.stepper.index == 1
    qtbot.keyClick(window.graph, Qt.Key.Key_End)
    assert window.stepper.index == len(window.timeline) - 1
    qtbot.keyClick(window.graph, Qt.Key.Key_Left)
    assert window.stepper.index == len(window.timeline) - 2
    qtbot.keyClick(window.graph, Qt.Key.Key_Home)
    assert window.stepper.index == 0
    window.transport.speed.setCurrentIndex(window.transport.speed.count() - 1)  # fastest
    qtbot.keyClick(window.graph, Qt.Key.Key_Space)
    assert window.is_playing()
    qtbot.waitUntil(lambda: not window.is_playing(), timeout=5000)
    assert window.stepper.index == len(window.timeline) - 1
    # while playing the panels catch up at most 25 times a second; stopping brings them up to date
    _assert_view_matches_core(window)
    assert window.events.currentIndex().row() == window.stepper.index
    window.graph.zoom(4.0)
    zoomed = window.graph.visible_rect()
    qtbot.keyClick(window.graph, Qt.Key.Key_F)
    assert window.graph.visible_rect().width() > zoomed.width()
    assert window.graph.visible_rect().contains(window.graph.graph_rect().center())


def test_waiting_counts_and_labels(qtbot, window):
    """During backward the shared weight waits for one gradient per use; labels show use i/k and values."""
    open_and_wait(qtbot, window, "repeated-layer", {"k": 3})
    rec = window.recording
    leaf = rec.leaves["layer.weight"].node
    window.jump_backward()
    assert window.graph.node_style(leaf) == (1, 3)
    waits = []
    while window.stepper.index < len(window.timeline) - 1:
        window.step_next()
        waits.append(window.graph.node_style(leaf)[1])
    assert waits[-1] == 0 and sorted(set(waits), reverse=True) == [3, 2, 1, 0]
    mm = [n for n in rec.nodes if n.name == "MmBackward0"]
    assert sorted(window.graph.label_of(n.id)[1] for n in mm) == [f"layer · use {u}/3" for u in (1, 2, 3)]
    # small tensors show values: the loss node shows its value and, after backward, its gradient
    loss_label = window.graph.label_of(rec.root)
    assert format_tensor(rec.nodes[rec.root].tensor) in loss_label and "grad 1" in loss_label


def test_click_node_inspects_it_and_double_click_jumps(qtbot, window):
    open_and_wait(qtbot, window, "repeated-layer")
    window.step_last()
    rec = window.recording
    mm1 = next(n for n in rec.nodes if n.name == "MmBackward0" and n.use == 1)
    window.graph.centerOn(*window.graph._item.pos_[window.graph.layout_.group_of[mm1.id]])
    qtbot.mouseClick(window.graph.viewport(), Qt.MouseButton.LeftButton, pos=window.graph.node_view_pos(mm1.id))
    assert window.graph.selected_node() == mm1.id
    ins = window.inspector
    assert ins.node_id == mm1.id
    assert ins.fields["module"] == "layer" and ins.fields["use"] == "1/2"
    assert ins.fields["source"].endswith(mm1.source.rsplit(":", 1)[1])
    assert ins.fields["shape"] == str(tuple(mm1.tensor.shape))
    assert {"value", "grad_output[0]", "grad_input[1]"} <= set(ins.tensor_views)
    assert ins.tensor_views["value"].mode == "table"
    qtbot.mouseDClick(window.graph.viewport(), Qt.MouseButton.LeftButton, pos=window.graph.node_view_pos(mm1.id))
    assert window.stepper.index == window.timeline.step_of(mm1.id, "backward")
    # event list: clicking an event jumps there
    window.events.pick(2)
    assert window.stepper.index == 2


def test_tensor_views_table_heatmap_histogram(qtbot):
    from gradviz.core.tensors import TensorData
    from gradviz.qt.inspector import QtTensorView

    rng = np.random.default_rng(0)
    cases = {"table": (3, 4), "heatmap": (12, 9), "histogram": (2000,)}
    for mode, shape in cases.items():
        v = rng.standard_normal(shape).astype(np.float32)
        tv = QtTensorView(TensorData(shape, "float32", "cpu", v))
        qtbot.addWidget(tv)
        assert tv.mode == mode
    tv = QtTensorView(TensorData((2, 2), "float32", "cpu", np.array([[1, 2], [3, 4.5]], np.float32)))
    qtbot.addWidget(tv)
    assert tv.widget.item(1, 1).text() == "4.5"
    stats = QtTensorView(TensorData((9, 9), "float32", "cpu", None, {"min": 0.0, "max": 1.0, "mean": .5, "norm": 3.0}))
    assert stats.mode == "stats"


def test_inspector_shows_matrix_as_heatmap(qtbot, window):
    open_and_wait(qtbot, window, "rnn-unrolled", {"T": 3, "hidden": 10})
    window.step_last()
    rec = window.recording
    leaf = rec.leaves["cell.weight_hh"].node  # 10 x 10
    window.select_node(leaf)
    assert window.inspector.tensor_views["value"].mode == "heatmap"


def test_accumulation_builds_up(qtbot, window):
    open_and_wait(qtbot, window, "repeated-layer", {"k": 3})
    rec = window.recording
    info = rec.leaves["layer.weight"]
    window.select_node(info.node)
    acc = window.accumulation
    assert acc.leaf() == "layer.weight"
    window.step_first()
    assert acc.table.item(0, 2).text() == i18n.tr("not yet")
    window.step_last()
    text = acc.equation.text()
    assert "layer · use 3/3 + layer · use 2/3 + layer · use 1/3 = layer.weight.grad" in text
    # at the element shown: each contribution's value there and the running sum, as numbers
    at = acc.data.index
    running = 0.0
    for i, c in enumerate(info.contributions):
        v = float(np.asarray(c.value.value)[at])
        running += v
        assert acc.table.item(i, 2).text() == f"{v:.6g}"
        assert acc.table.item(i, 3).text() == f"{running:.6g}"
    assert acc.table.item(len(info.contributions), 3).text() == f"{float(info.grad.value[at]):.6g}"
    np.testing.assert_allclose(info.contributions[-1].running_sum.value, info.grad.value, rtol=1e-6)


def test_checks_run_in_worker_and_select_nodes(qtbot, window):
    open_and_wait(qtbot, window, "linear-function")
    assert window.check_table is not None  # checked on opening
    window.run_checks()  # and again on request
    qtbot.waitUntil(lambda: window.check_table is not None and not window.is_busy(), timeout=60000)
    table = window.check_table
    assert window.checks.table.rowCount() == len(table.rows) > 0
    assert "OK" in window.checks.summary.text() and table.ok
    row = next(i for i, r in enumerate(table.rows) if r.node is not None)
    window.checks.table.selectRow(row)
    assert window.graph.selected_node() == table.rows[row].node
    colour = window.checks.table.item(row, 0).background().color().name()
    assert colour == "#d3f9d8"  # pass: green


@pytest.mark.parametrize("backend", backend_names())
def test_backend_combo(qtbot, window, backend):
    """Every backend is listed; unavailable ones are disabled with the reason; available ones record."""
    open_and_wait(qtbot, window, "linear-function")
    combo = window.model_panel.editors["backend"]
    items = [combo.itemText(i) for i in range(combo.count())]
    assert items == backend_names()
    info = get_backend(backend)
    i = items.index(backend)
    assert combo.model().item(i).isEnabled() == info.available
    if not info.available:
        assert combo.itemData(i, Qt.ItemDataRole.ToolTipRole) == info.reason
        return
    window.model_panel.set_param("backend", backend)
    window.rerun()
    qtbot.waitUntil(lambda: not window.is_busy(), timeout=60000)
    custom = [n for n in window.recording.nodes if n.kind == "custom"]
    assert custom and custom[0].backend == backend
    assert f"[{backend}]" in window.graph.label_of(custom[0].id)[0]
    # the inspector names the op the user called, never torch.library's generated Function
    window.select_node(custom[0].id)
    assert window.inspector.fields["op"] == {"torch": "LinearFunctionBackward", "cpp": "gradviz::linear",
                                             "cuda": "gradviz::linear"}[backend]
    assert not any("GeneratedBackwardFor" in v for v in window.inspector.fields.values())


def test_script_that_raises_shows_message_and_keeps_graph(qtbot, window, tmp_path):
    open_and_wait(qtbot, window, "repeated-layer")
    before = window.recording
    script = tmp_path / "broken.py"
    script.write_text("def build():\n    raise ValueError('the model is broken on purpose')\n")
    window.open_script(str(script))
    qtbot.waitUntil(lambda: not window.is_busy(), timeout=60000)
    assert window.banner.isVisible()
    assert "ValueError" in window.banner_label.text() and "broken on purpose" in window.banner_label.text()
    assert window.recording is before  # the app keeps what it had
    window.step_last()  # and still works
    assert window.stepper.index == len(window.timeline) - 1


def test_open_good_script(qtbot, window, tmp_path):
    script = tmp_path / "model.py"
    script.write_text("import torch\n\ndef build():\n    w = torch.ones(2, requires_grad=True)\n"
                      "    return (w * 3).sum(), {'w': w}\n")
    open_and_wait(qtbot, window, str(script))
    assert window.last_error == "" and window.recording.target.endswith("model.py")
    window.step_last()
    assert "3" in window.accumulation.equation.text()
    # the model list names no built-in model while a script is open; picking one switches to it
    panel = window.model_panel
    assert panel.combo.currentIndex() == -1 and panel.description.text().endswith("model.py")
    panel.combo.setCurrentText("mlp")
    assert panel.target == "mlp" and "seed" in panel.editors


def test_cancel_long_recording(qtbot, window):
    open_and_wait(qtbot, window, "repeated-layer")
    before = window.recording
    window.open_target("rnn-unrolled", {"T": 3000, "hidden": 16})
    assert window.model_panel.cancel_button.isVisible() or not window.is_busy()
    qtbot.waitUntil(lambda: window.model_panel.progress.value() > 0, timeout=30000)
    window.model_panel.cancel_button.click()
    qtbot.waitUntil(lambda: not window.is_busy(), timeout=60000)
    assert window.recording is before
    assert window.statusBar().currentMessage() == i18n.tr("Cancelled")
    assert not window.model_panel.cancel_button.isVisible()


def test_gradient_flow_picks_nodes(qtbot, window):
    open_and_wait(qtbot, window, "rnn-unrolled", {"T": 6})
    flow = window.flow
    rec = window.recording
    assert len(flow.nodes) == len(rec.backward)
    assert np.isfinite(flow.norms).all()
    assert len(flow.use_nodes) == 6  # one point per time step (module use)
    flow.pick_index(3)
    assert window.graph.selected_node() == rec.backward[3].node
    assert window.inspector.node_id == rec.backward[3].node


def test_rolled_and_direction_toggles(qtbot, window):
    open_and_wait(qtbot, window, "repeated-layer", {"k": 3})
    rec = window.recording
    n = len(rec.nodes)
    window.actions_["rolled"].trigger()
    lay = window.graph.layout_
    assert lay.rolled and len(lay) == n - 4  # 3 uses of 2 nodes fold into 2
    mm = [g for g, m in enumerate(lay.members) if rec.nodes[m[0]].name == "MmBackward0"]
    assert len(mm) == 1 and len(lay.members[mm[0]]) == 3
    window.step_last()
    assert window.graph.label_of(lay.members[mm[0]][0])[1] == "layer · 3 uses"
    window.set_rolled(False)
    assert len(window.graph.layout_) == n
    w_lr = window.graph.graph_rect()
    window.actions_["direction"].trigger()
    assert window.graph.direction == "tb"
    assert window.graph.graph_rect().height() > w_lr.height()
    assert window.settings.value("direction") == "tb"


def test_find_node(qtbot, window):
    open_and_wait(qtbot, window, "mlp")
    nid = window.find_node("MseLoss") or window.find_node("loss")
    assert nid is not None and window.graph.selected_node() == nid
    assert window.find_node("no-such-node-xyz") is None


def test_theme_language_and_settings_persist(qtbot, window, settings):
    from gradviz.qt.app import QtMainWindow

    open_and_wait(qtbot, window, "repeated-layer")
    window.set_theme("dark")
    assert window.graph.backgroundBrush().color().name() == "#1e2026"
    window.set_language("zh")
    assert window.menuBar().actions()[0].text() == "文件(&F)"
    assert window.docks["inspector"].windowTitle() == "检查器"
    assert not (i18n.missing() & {t for _, t in window._texts}), "untranslated menu/dock texts"
    window.close()
    # a new window starts with the theme, language and last model of the last one
    i18n.set_language("en")
    win2 = QtMainWindow(settings)
    qtbot.addWidget(win2)
    assert win2.theme == "dark" and i18n.language() == "zh"
    assert settings.value("last_target") == "repeated-layer"
    win2.shutdown()


def test_open_recording_and_export_actions(qtbot, window):
    open_and_wait(qtbot, window, "repeated-layer")
    if importlib.util.find_spec("gradviz.core.storage") is None:
        window.actions_["open_recording"].trigger()
        assert "not available in this build" in window.banner_label.text()
    if importlib.util.find_spec("gradviz.qt.export") is None:
        window.clear_error()
        window.actions_["export"].trigger()
        assert "not available in this build" in window.banner_label.text()
    assert window.actions_["export"].shortcut().toString() == "Ctrl+E"


def test_a_saved_recording_opens_as_a_target_without_running_the_model(qtbot, window, tmp_path):
    from gradviz.core import record
    from gradviz.core.rerun import rerun_of
    from gradviz.core.storage import save_recording

    path = tmp_path / "run.gradviz"
    save_recording(record("rnn-unrolled", params={"T": 3}), path)
    open_and_wait(qtbot, window, str(path))
    assert window.recording is not None and rerun_of(window.recording) is None
    assert window.recording.target == "rnn-unrolled"
    assert len(window.recording.nodes) == len(record("rnn-unrolled", params={"T": 3}).nodes)
    assert not window.banner_label.isVisible() or not window.banner_label.text()


def test_values_too_wide_for_a_node_end_in_an_ellipsis(qtbot, window, tmp_path):
    script = tmp_path / "wide.py"
    script.write_text("import torch\n\ndef build():\n"
                      "    x = torch.tensor([277.125, -52.8125, -392.5], requires_grad=True)\n"
                      "    return (x * x).sum(), {'x': x}\n")
    open_and_wait(qtbot, window, str(script))
    window.step_last()
    leaf = window.recording.leaves["x"].node
    name, grad = window.graph.label_of(leaf)[:2]
    # "grad [554, -106, -785]" does not fit between a leaf's rounded ends: cut, and it says so
    assert name == "x" and grad.startswith("grad [554, -106") and grad.endswith("…"), grad
    mul = next(n.id for n in window.recording.nodes if n.name == "MulBackward0")
    assert window.graph.label_of(mul)[0] == "MulBackward0"  # names stay whole


def test_check_notes_say_why_in_their_own_column(qtbot, window, tmp_path):
    script = tmp_path / "hooked.py"
    script.write_text("import torch\n\ndef build():\n"
                      "    x = torch.tensor([1.0, 2.0], requires_grad=True)\n"
                      "    y = x * 3\n"
                      "    y.register_hook(lambda g: g * 10)\n"
                      "    return (y * y).sum(), {'x': x}\n")
    open_and_wait(qtbot, window, str(script))  # checked on opening
    assert window.check_table is not None
    panel = window.checks
    note_col = panel.COLUMNS.index("note")
    rows = {panel.table.item(i, 0).text(): panel.table.item(i, note_col).text()
            for i in range(panel.table.rowCount())
            if panel.table.item(i, panel.COLUMNS.index("result")).text() == "fail"}
    assert set(rows) == {"finite-diff", "flow"}
    assert rows["finite-diff"].startswith("gradient hooks (") and "hooked.py:6" in rows["finite-diff"]
    assert "a gradient hook does that" in rows["flow"]


def test_cyclic_garbage_is_collected_in_the_gui_thread_only(qtbot, window):
    # a widget destroyed by the collector in a worker thread deadlocks Qt (it hung this suite once)
    import gc
    import threading

    from gradviz.qt import gc_guard

    assert gc_guard.active() and not gc.isenabled()
    threads = []

    def on_gc(phase, info):
        if phase == "start":
            threads.append(threading.current_thread().name)

    gc.callbacks.append(on_gc)
    try:
        for _ in range(3):
            # a recording in a worker (it makes hundreds of thousands of objects) while the GUI
            # thread leaves widgets in reference cycles behind
            window.open_target("rnn-unrolled", {"T": 300})
            for _ in range(20):
                w = QWidget()
                w.cycle = w
                del w
            qtbot.waitUntil(lambda: not window.is_busy(), timeout=60000)
        qtbot.waitUntil(lambda: len(threads) > 0, timeout=5000)  # the timer collected
    finally:
        gc.callbacks.remove(on_gc)
    assert set(threads) == {threading.main_thread().name}, threads


def test_the_automatic_collector_is_back_after_the_last_window(qtbot, settings):
    import gc

    from gradviz.qt import gc_guard
    from gradviz.qt.app import QtMainWindow

    first, second = QtMainWindow(settings), QtMainWindow(settings)
    assert gc_guard.active()
    first.shutdown()
    first.shutdown()  # twice: released once
    assert gc_guard.active() and not gc.isenabled()
    second.shutdown()
    assert not gc_guard.active() and gc.isenabled()
