"""The app for a classroom: accumulation at one element, every text translated, themes restyle at once."""
import numpy as np

from gradviz.qt.accumulation import QtAccumulation

from .conftest import open_and_wait


def test_accumulation_at_one_element_plots_the_cumulative_sum_of_its_bars(qtbot, window):
    open_and_wait(qtbot, window, "repeated-layer", {"k": 3, "n": 3})
    rec = window.recording
    info = rec.leaves["layer.weight"]
    acc = window.accumulation
    assert isinstance(acc, QtAccumulation)
    window.select_node(info.node)
    assert acc.leaf() == "layer.weight"
    # pick the element drawn in row 1, column 2 of the leaf's heat map
    acc.pick_cell(1, 2)
    assert acc.data.index == (1, 2)
    window.step_last()
    heights, line = acc.plotted()
    want = np.array([float(np.asarray(c.value.value)[1, 2]) for c in info.contributions])
    np.testing.assert_array_equal(heights, want)
    # the running-sum line is exactly the cumulative sum of the bars
    np.testing.assert_array_equal(line, np.cumsum(heights))
    # and it ends at .grad[1, 2] (float32 sums)
    assert line[-1] == np.float64(info.grad.value[1, 2]) or abs(line[-1] - info.grad.value[1, 2]) < 1e-5
    # the table says the same in numbers, row by row
    for k, v in enumerate(want):
        assert float(acc.table.item(k, 2).text()) == float(f"{v:.6g}")
        assert float(acc.table.item(k, 3).text()) == float(f"{np.cumsum(want)[k]:.6g}")
    # before backward nothing has arrived; half-way only the arrived bars are drawn
    window.step_first()
    heights, line = acc.plotted()
    assert len(heights) == 0 and len(line) == 0
    # typing an index picks the element too; a bad one says why in one line
    acc.index_edit.setText("0, 0")
    acc.index_edit.editingFinished.emit()
    assert acc.data.index == (0, 0)
    acc.index_edit.setText("9, 9")
    acc.index_edit.editingFinished.emit()
    assert acc.data.index == (0, 0) and "outside" in acc.error.text()


def _texts(win):
    """Every user-visible string of the window: labels, buttons, tooltips, dock titles, menus, combo
    items, table headers and cells, list rows, plot titles and axis labels."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import (QAbstractButton, QComboBox, QDockWidget, QLabel, QListView, QMenu,
                                   QTableWidget, QWidget)

    out = []
    for w in win.findChildren(QWidget):
        if not w.isVisibleTo(win):
            continue
        if isinstance(w, QLabel):
            out.append(getattr(w, "text")())
        if isinstance(w, QAbstractButton):
            out.append(w.text())
        if isinstance(w, QDockWidget):
            out.append(w.windowTitle())
        if isinstance(w, QComboBox):
            out += [w.itemText(i) for i in range(w.count())]
        if isinstance(w, QTableWidget):
            out += [w.horizontalHeaderItem(j).text() for j in range(w.columnCount()) if w.horizontalHeaderItem(j)]
            out += [w.item(i, j).text() for i in range(w.rowCount()) for j in range(w.columnCount())
                    if w.item(i, j) is not None]
        if isinstance(w, QListView) and w.model() is not None:
            m = w.model()
            out += [str(m.data(m.index(i, 0))) for i in range(min(m.rowCount(), 200))]
        if isinstance(w, pg.PlotWidget):
            pi = w.getPlotItem()
            out.append(pi.titleLabel.text)
            out += [pi.getAxis(a).labelText for a in ("left", "bottom")]
        if w.toolTip():
            out.append(w.toolTip())
    for menu in win.menuBar().findChildren(QMenu):
        out.append(menu.title())
        out += [a.text() for a in menu.actions() if a.text()]
    return [t for t in out if t]


def _untranslated(texts, names):
    """Texts with an English word left in them (names from the model and code words allowed)."""
    import re

    bad = []
    for t in texts:
        # code, not words: torch's names of saved tensors (in italics), source paths, dotted, snake_case
        # and CamelCase identifiers (fc1.weight.grad, grad_inputs, TBackward0), rich-text tags
        rest = re.sub(r"<i>[^<]*</i>|<[^>]+>", " ", t)
        rest = re.sub(r"\S+\.py:\d+|[A-Za-z_]\w*(?:\.[\w\[\]]+)+|[A-Za-z0-9]*_[A-Za-z0-9_]*|"
                      r"(?<![A-Za-z])[A-Z][a-z]+[A-Z][A-Za-z0-9]*", " ", rest, flags=re.ASCII)
        for name in sorted(names, key=len, reverse=True):
            # a name counts only as a whole token (a leaf "x" must not hide the x of "next")
            rest = re.sub(rf"(?<![A-Za-z0-9_.]){re.escape(name)}(?![A-Za-z0-9_])", " ", rest)
        words = re.findall(r"[A-Za-z]{3,}", re.sub(r"[A-Za-z0-9_.]*\d[A-Za-z0-9_.]*", " ", rest))
        if words:
            bad.append(t)
    return bad


def test_every_text_is_chinese_after_stepping_through_a_model(qtbot, window):
    from gradviz.core.models import MODELS
    from gradviz.qt import i18n

    open_and_wait(qtbot, window, "repeated-layer", {"k": 3})
    window.run_checks()
    qtbot.waitUntil(lambda: window.check_table is not None and not window.is_busy(), timeout=120000)
    window.set_language("zh")
    rec = window.recording
    names = {"gradviz", "PyTorch", "numpy", "torch", "atol", "rtol", "None", "float32", "float64", "cpu", "grad",
             "AccumulateGrad", "English", "DejaVu", "Ctrl", "Shift", "Space", "Home", "End", "Left", "Right",
             "cpp", "cuda", "triton", "python", "scalar", "autograd",
             "loss", "sum", "output", "MSE", "RNN", "MLP", "ReLU", "tanh", "label"}  # math and model words
    names |= set(MODELS) | {k for m in MODELS.values() for k in m.defaults}
    names |= {n.name for n in rec.nodes} | set(rec.leaves) | {e.op for e in rec.forward}
    names |= {n.module for n in rec.nodes if n.module} | {n.torch_name for n in rec.nodes}
    seen = set()
    for i in range(len(window.timeline)):
        window.step_to(i)
        seen |= set(_texts(window))
    bad = sorted(set(_untranslated(seen, names)))
    assert not bad, f"{len(bad)} untranslated: {bad[:60]}"


def test_switching_theme_restyles_every_plot_at_once(qtbot, window):
    import pyqtgraph as pg

    from gradviz.core.scene import get_theme

    open_and_wait(qtbot, window, "rnn-unrolled")
    window.step_last()
    for theme in ("dark", "light", "dark"):
        window.set_theme(theme)
        want = get_theme(theme)["plot_bg"].lower()
        plots = [w for w in window.findChildren(pg.GraphicsView)]
        assert len(plots) >= 4  # two flow plots, the accumulation plot, heat maps
        for w in plots:
            assert w.backgroundBrush().color().name() == want, (theme, w)
        for w in window.findChildren(pg.PlotWidget):
            assert w.getAxis("bottom").textPen().color().name() == get_theme(theme)["plot_fg"].lower()


def test_first_start_follows_the_system_locale(qtbot, settings, monkeypatch):
    from gradviz.core.session import Session
    from gradviz.qt import i18n
    from gradviz.qt.app import QtMainWindow

    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    for var in ("LC_ALL", "LC_MESSAGES", "LANGUAGE"):
        monkeypatch.delenv(var, raising=False)
    win = QtMainWindow(Session(), settings=settings)
    qtbot.addWidget(win)
    try:
        assert i18n.language() == "zh"
        assert win.docks["model"].windowTitle() == "模型"
        win.set_language("en")  # the choice made in View is kept over the locale
        win2 = QtMainWindow(Session(), settings=settings)
        qtbot.addWidget(win2)
        assert i18n.language() == "en"
        win2.shutdown()
    finally:
        win.shutdown()
        i18n.set_language("en")


def test_flow_plot_ticks_are_whole_backward_steps(qtbot, window):
    open_and_wait(qtbot, window, "rnn-unrolled")
    ticks = window.flow.plot.getAxis("bottom")._tickLevels
    assert ticks and all(float(v).is_integer() for v, _label in ticks[0])
    assert ticks[0][-1][0] == len(window.flow.nodes) - 1


def test_checks_run_on_opening_in_the_worker(qtbot, window):
    """A model opened is a model checked: the Checks dock shows the results without Run checks."""
    from gradviz.qt.i18n import tr

    open_and_wait(qtbot, window, "repeated-layer")
    table = window.check_table
    assert table is not None and table.ok
    assert window.checks.table.rowCount() == len(table.rows) > 0
    assert window.checks.summary.text() != tr("Checks not run yet.")
    # a parameter changed: recorded again and checked again
    open_and_wait(qtbot, window, "repeated-layer", {"k": 3})
    assert window.check_table is not None and window.check_table is not table
    assert window.checks.table.rowCount() == len(window.check_table.rows)
