"""The app's panels: tensors, inspector, accumulation, gradient flow, checks, model, events, transport.

Every panel views the core's objects (Recording, StepState, CheckTable) and keeps no state of its own
beyond what it shows; user requests leave as Qt signals the main window turns into commands.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractListModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QComboBox, QFormLayout, QHBoxLayout, QHeaderView,
                               QLabel, QListView, QPushButton, QScrollArea, QSizePolicy, QSlider, QTableWidget,
                               QTableWidgetItem, QToolButton, QVBoxLayout, QWidget)

from gradviz.core.flow import GradientFlow, tensor_norm
from gradviz.core.recording import Recording, short_source
from gradviz.core.tensors import TensorData
from gradviz.core.timeline import BACKWARD_DONE, StepState

from .graph_view import format_tensor
from .accumulation import QtAccumulation
from .i18n import tr, translate
from .plots import QtPlot, style_plot
from .theme import get_theme

__all__ = ["QtElidedLabel", "QtTensorView", "QtInspector", "QtAccumulation", "QtGradientFlow", "QtChecksPanel",
           "QtEventList", "section_label", "QtTransport", "tensor_norm", "SPEEDS"]

TABLE_MAX = 64  # tensors with at most this many elements (and at most 2 dims) show as a table
SPEEDS = [1, 2, 5, 10, 30, 100, 1000]


def _plot_widget(theme: str) -> QtPlot:
    w = QtPlot(theme)
    w.setMinimumHeight(90)
    return w


_style_plot = style_plot


class QtTensorView(QWidget):
    """One tensor: a table when small, a heat map for a matrix, a histogram when large."""

    def __init__(self, tensor: TensorData | None, theme: str = "light", parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.mode = "none"
        if tensor is None:
            lay.addWidget(QLabel("None"))
            return
        head = f"{tuple(tensor.shape)} {tensor.dtype} {tensor.device}"
        v = tensor.value
        if v is None:
            self.mode = "stats"
            stats = tensor.stats or {}
            text = head + "  — " + tr("no value kept")
            if stats:
                text += "\n" + ", ".join(f"{k} {val:.4g}" for k, val in stats.items())
            lay.addWidget(QLabel(text))
            return
        v = np.asarray(v)
        lay.addWidget(QLabel(head))
        if v.size <= TABLE_MAX and v.ndim <= 2:
            self.mode = "table"
            m = v.reshape(1, -1) if v.ndim < 2 else v
            table = QTableWidget(m.shape[0], m.shape[1])
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    x = m[i, j]
                    item = QTableWidgetItem(f"{float(x):.5g}" if v.dtype.kind in "fc" else str(x))
                    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                    table.setItem(i, j, item)
            table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
            table.verticalHeader().setDefaultSectionSize(22)
            table.setFixedHeight(min(26 + 22 * m.shape[0] + 4, 200))
            lay.addWidget(table)
            self.widget = table
        elif v.ndim == 2 and v.dtype.kind in "fiub":
            self.mode = "heatmap"
            pw = _plot_widget(theme)
            img = pg.ImageItem(v.astype(np.float32).T)
            lim = float(np.nanmax(np.abs(v))) or 1.0
            img.setLookupTable(pg.colormap.get("CET-D1").getLookupTable(nPts=256))
            img.setLevels((-lim, lim))
            pw.addItem(img)
            pw.invertY(True)
            pw.setAspectLocked(False)
            pw.setFixedHeight(180)
            lay.addWidget(pw)
            self.widget = pw
        else:
            self.mode = "histogram"
            flat = v.astype(np.float64).reshape(-1)
            flat = flat[np.isfinite(flat)]
            pw = _plot_widget(theme)
            if flat.size:
                counts, edges = np.histogram(flat, bins=min(60, max(10, int(np.sqrt(flat.size)))))
                pw.plot(edges, counts, stepMode="center", fillLevel=0,
                        brush=pg.mkBrush(get_theme(theme)["plot_line"]), pen=pg.mkPen(get_theme(theme)["plot_fg"]))
            pw.setFixedHeight(160)
            lay.addWidget(pw)
            self.widget = pw
            lay.addWidget(QLabel(f"min {flat.min():.4g}  max {flat.max():.4g}  mean {flat.mean():.4g}  "
                                 f"{tr('norm')} {np.linalg.norm(flat):.4g}" if flat.size else ""))


def section_label(title: str) -> QLabel:
    """A bold heading of a panel's part, wrapping instead of widening its dock."""
    lab = QLabel(title)
    lab.setWordWrap(True)  # "grad_inputs (sent on) [0] → TanhBackward0" wraps instead of widening the dock
    f = lab.font()
    f.setBold(True)
    lab.setFont(f)
    lab.setContentsMargins(0, 8, 0, 2)
    return lab


class QtInspector(QScrollArea):
    """Everything about the selected node: op, module and use, backend, source, values and gradients."""

    MAX_SAVED = 8

    def __init__(self, parent=None, theme: str = "light"):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.theme = theme
        self.node_id: int | None = None
        self.fields: dict[str, str] = {}
        self.tensor_views: dict[str, QtTensorView] = {}
        self._rec: Recording | None = None
        self.show_node(None, None, None)

    def show_node(self, rec: Recording | None, node_id: int | None, state: StepState | None, timeline=None) -> None:
        """Show node `node_id` of `rec` at `state` (None: a hint to select a node)."""
        self._rec, self.node_id = rec, node_id
        body = QWidget()
        lay = QVBoxLayout(body)
        self.fields, self.tensor_views = {}, {}
        if rec is None or node_id is None:
            lay.addWidget(QLabel(tr("Select a node to inspect it.")))
            lay.addStretch(1)
            self.setWidget(body)
            return
        node = rec.nodes[node_id]
        info = rec.leaves.get(node.leaf) if node.leaf else None
        title = QLabel(f"<b>{node.name}</b> <span style='color:gray'>#{node.id}</span>")
        title.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(title)
        form = QFormLayout()
        t = node.tensor if node.tensor is not None or info is None else info.tensor
        op = node.torch_name or node.name
        if op.startswith("GeneratedBackwardFor_") and node.forward_event is not None:
            # torch.library's generated class name is an implementation detail: show the op itself
            op = rec.forward[node.forward_event].op
        fields = {
            "kind": tr(node.kind),
            "op": op if node.kind not in ("leaf", "input") else (node.leaf or node.name),
            "module": node.module or "—",
            "use": f"{node.use}/{node.uses}" if node.use else "—",
            "backend": node.backend or "—",
            "source": _short_source(node.source),
            "shape": str(tuple(t.shape)) if t else "—",
            "dtype": t.dtype if t else "—",
            "device": node.device or (t.device if t else "—"),
        }
        if state is not None and state.phase == "backward" and state.status[node_id] != BACKWARD_DONE:
            fields["waits for"] = str(int(state.pending[node_id]))
        for k, v in fields.items():
            lab = QLabel(v)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lab.setWordWrap(True)
            form.addRow(tr(k), lab)
            self.fields[k] = v
        lay.addLayout(form)

        def add(key: str, title: str, tensor):
            lay.addWidget(section_label(title))
            tv = QtTensorView(tensor if isinstance(tensor, TensorData) or tensor is None else None, self.theme)
            if not isinstance(tensor, TensorData) and tensor is not None:
                tv = QLabel(repr(tensor))
            self.tensor_views[key] = tv
            lay.addWidget(tv)

        if t is not None:
            add("value", tr("forward value"), t)
        if info is not None and node.kind == "leaf":
            ls = state.leaf(info.name) if state is not None else None
            grad = info.grad if ls is None else (ls.buffer if ls.arrived else ls.grad)
            add("grad", f"{info.name}.grad ({ls.arrived}/{ls.total})" if ls else f"{info.name}.grad", grad)
        ev = None
        if timeline is not None:
            step = timeline.step_of(node_id, "backward")
            if step is not None:
                ev = rec.backward[timeline.steps[step].event]
        if ev is not None:
            for i, g in enumerate(ev.grad_outputs):
                add(f"grad_output[{i}]", f"{tr('grad_outputs (arrived)')} [{i}]", g)
            for i, g in enumerate(ev.grad_inputs):
                dst = [d for s, d, slot in rec.edges if s == node_id and slot == i]
                to = f" → {rec.nodes[dst[0]].label.splitlines()[0]}" if dst else ""
                add(f"grad_input[{i}]", f"{tr('grad_inputs (sent on)')} [{i}]{to}", g)
        saved = [(k, v) for k, v in node.saved.items() if isinstance(v, TensorData)]
        others = [(k, v) for k, v in node.saved.items() if not isinstance(v, TensorData)]
        if saved or others:
            lay.addWidget(section_label(tr("saved tensors")))
            for k, v in saved[: self.MAX_SAVED]:
                lay.addWidget(QLabel(f"<i>{k}</i>"))
                tv = QtTensorView(v, self.theme)
                self.tensor_views[f"saved:{k}"] = tv
                lay.addWidget(tv)
            for k, v in others:
                lay.addWidget(QLabel(f"<i>{k}</i> = {v!r}"))
        lay.addStretch(1)
        self.setWidget(body)


def _short_source(src: str | None) -> str:
    return short_source(src, empty="—")


class QtGradientFlow(QWidget):
    """Gradient norm per node along the backward order, and per module use (time step)."""

    node_picked = Signal(int)

    def __init__(self, parent=None, theme: str = "light"):
        super().__init__(parent)
        self.theme = theme
        lay = QHBoxLayout(self)
        self.plot = _plot_widget(theme)
        lay.addWidget(self.plot, 1)
        self.use_plot = _plot_widget(theme)
        lay.addWidget(self.use_plot, 1)
        self.retranslate()
        self.nodes = np.zeros(0, dtype=np.int64)
        self.norms = np.zeros(0)
        self.use_nodes = np.zeros(0, dtype=np.int64)
        self.use_norms = np.zeros(0)
        self._cursor = None
        self._pending_state = None
        self._cursor_timer = QTimer(self)
        self._cursor_timer.setSingleShot(True)
        self._cursor_timer.setInterval(40)
        self._cursor_timer.timeout.connect(self._on_cursor_timer)
        self._flow: GradientFlow | None = None

    def set_theme(self, theme: str) -> None:
        """Restyle both plots in `theme` at once (background, axes, curves)."""
        self.theme = theme
        for w in (self.plot, self.use_plot):
            _style_plot(w, theme)
        if self._flow is not None:
            state = self._pending_state
            self.set_flow(self._flow)
            if state is not None:
                self.set_state(state)

    def retranslate(self) -> None:
        """Re-read the titles and axis labels in the current language."""
        self.plot.set_title(tr("gradient norm per node (backward order)"))
        self.plot.setLabel("bottom", tr("backward step"))
        self.plot.setLabel("left", tr("norm"))
        self.use_plot.set_title(tr("gradient norm per time step (module use)"))
        self.use_plot.setLabel("bottom", tr("module use"))

    def set_flow(self, flow: GradientFlow | None) -> None:
        """Plot `flow` (the core's gradient norms, `Session.flow()`); None clears the plots."""
        th = get_theme(self.theme)
        self._flow = flow
        self.plot.clear()
        self.use_plot.clear()
        self._cursor = None
        if flow is None:
            self.plot.set_integer_ticks(0)
            self.nodes, self.norms = np.zeros(0, dtype=np.int64), np.zeros(0)
            self.use_nodes, self.use_norms = np.zeros(0, dtype=np.int64), np.zeros(0)
            return
        self.nodes, self.norms = flow.nodes, flow.norms
        self.use_nodes, self.use_norms = flow.use_nodes, flow.use_norms
        curve = self.plot.plot(np.arange(len(self.nodes)), self.norms, pen=pg.mkPen(th["plot_line"], width=1))
        if len(self.nodes) <= 2000:
            spots = pg.ScatterPlotItem(x=np.arange(len(self.nodes)), y=self.norms, data=self.nodes, size=7,
                                       brush=pg.mkBrush(th["plot_line"]), pen=None, hoverable=True)
            spots.sigClicked.connect(self._on_clicked)
            self.plot.addItem(spots)
        else:  # thousands of points: click the curve, the nearest backward step is picked
            curve.curve.setClickable(True, width=8)
            curve.sigClicked.connect(self._on_curve_clicked)
        self.plot.set_integer_ticks(len(self.nodes))
        self._cursor = pg.InfiniteLine(0, angle=90, pen=pg.mkPen(th["plot_line2"], width=2))
        self._cursor.setVisible(False)
        self.plot.addItem(self._cursor)
        # per module use: the gradient that arrives at the use (its first node to run in backward)
        if len(flow.uses):
            xs = np.array([u.use for u in flow.uses], dtype=float)
            self.use_plot.plot(xs, self.use_norms, pen=pg.mkPen(th["plot_line2"], width=1.5))
            us = pg.ScatterPlotItem(x=xs, y=self.use_norms, data=self.use_nodes, size=8,
                                    brush=pg.mkBrush(th["plot_line2"]), pen=None, hoverable=True)
            us.sigClicked.connect(self._on_clicked)
            if len(xs) <= 20:
                self.use_plot.getAxis("bottom").setTicks([[(x, str(int(x))) for x in sorted(set(xs.tolist()))]])
            self.use_plot.addItem(us)
        self.use_plot.setVisible(bool(len(flow.uses)))

    def set_state(self, state: StepState) -> None:
        if self._cursor is None:
            return
        self._pending_state = state
        if not self._cursor_timer.isActive():
            self._cursor_timer.start()

    def _on_cursor_timer(self) -> None:
        """Move the step marker at most 25 times a second: the plot need not repaint at every step."""
        state = self._pending_state
        if self._cursor is None or state is None:
            return
        if state.phase == "backward":
            self._cursor.setVisible(True)
            self._cursor.setValue(state.step.event)
        else:
            self._cursor.setVisible(False)

    def _on_curve_clicked(self, curve, ev) -> None:
        x = self.plot.getPlotItem().vb.mapSceneToView(ev.scenePos()).x()
        self.pick_index(int(np.clip(round(x), 0, len(self.nodes) - 1)))

    def _on_clicked(self, item, points, ev=None) -> None:
        if len(points):
            self.node_picked.emit(int(points[0].data()))

    def pick_index(self, i: int) -> None:
        """Act as if point `i` of the per-node plot was clicked."""
        self.node_picked.emit(int(self.nodes[i]))


class QtChecksPanel(QWidget):
    """The core's check table, pass/fail coloured; selecting a row selects its node."""

    run_requested = Signal()
    node_picked = Signal(int)
    # the result next to the check's name: it is what a reader looks for first, never scrolled off
    COLUMNS = ("check", "result", "what", "reference", "max abs err", "max rel err", "tolerance", "note")

    def __init__(self, parent=None, theme: str = "light"):
        super().__init__(parent)
        self.theme = theme
        self.table_data = None
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.run_button = QPushButton(tr("Run checks"))
        self.run_button.clicked.connect(self.run_requested.emit)
        self.summary = QLabel(tr("Checks not run yet."))
        top.addWidget(self.run_button)
        top.addWidget(self.summary, 1)
        lay.addLayout(top)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels([tr(c) for c in self.COLUMNS])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_selection)
        lay.addWidget(self.table, 1)
        self._rec = None

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        if running:
            self.summary.setText(tr("Running checks…"))

    def clear(self) -> None:
        self.table_data = None
        self.table.setRowCount(0)
        self.summary.setText(tr("Checks not run yet."))

    def set_table(self, table, rec: Recording) -> None:
        """Show `table` (a CheckTable) for `rec`."""
        self.table_data, self._rec = table, rec
        th = get_theme(self.theme)
        colours = {"pass": th["ok"], "fail": th["fail"]}
        self.table.setRowCount(len(table.rows))
        for i, r in enumerate(table.rows):
            # the note: why a row was skipped, sampled or failed (first line; the tooltip has it all)
            note = translate(r.detail.strip().splitlines()[0]) if r.detail.strip() else ""
            status = {"check": tr(r.kind), "result": tr(r.status), "what": translate(r.what),
                      "reference": translate(r.reference), "max abs err": _fmt(r.max_abs),
                      "max rel err": _fmt(r.max_rel), "tolerance": r.tolerance, "note": note}
            cells = [status[c] for c in self.COLUMNS]
            bg = QBrush(QColor(colours.get(r.status, th["neutral"])))
            for j, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                item.setBackground(bg)
                item.setToolTip(translate(r.detail) if r.detail else str(text))
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()
        hh = self.table.horizontalHeader()
        for c in range(self.table.columnCount()):  # a header (Chinese ones too) is never cut by its column
            text = self.table.horizontalHeaderItem(c).text() if self.table.horizontalHeaderItem(c) else ""
            need = hh.fontMetrics().horizontalAdvance(text) + 16
            if self.table.columnWidth(c) < need:
                self.table.setColumnWidth(c, need)
        counts = table.counts()
        summary = ", ".join(tr("{n} {status}", n=v, status=tr(k)) for k, v in sorted(counts.items()))
        self.summary.setText(tr("{n} checks: {summary} — {verdict}", n=len(table.rows), summary=summary,
                                verdict=tr("OK") if table.ok else tr("FAILED")))

    def retranslate(self) -> None:
        """Every text again in the current language."""
        self.run_button.setText(tr("Run checks"))
        self.table.setHorizontalHeaderLabels([tr(c) for c in self.COLUMNS])
        if self.table_data is not None and self._rec is not None:
            self.set_table(self.table_data, self._rec)
        else:
            self.summary.setText(tr("Checks not run yet."))

    def node_of_row(self, i: int) -> int | None:
        """The node check row `i` is about (its leaf's AccumulateGrad node for leaf checks)."""
        r = self.table_data.rows[i]
        if r.node is not None:
            return int(r.node)
        if r.leaf and self._rec is not None and r.leaf in self._rec.leaves:
            return self._rec.leaves[r.leaf].node
        return None

    def _on_selection(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows and self.table_data is not None:
            nid = self.node_of_row(rows[0].row())
            if nid is not None:
                self.node_picked.emit(nid)


def _fmt(x) -> str:
    return "" if x is None else f"{x:.2e}"


class _EventModel(QAbstractListModel):
    """Every step of a timeline as one line, made on demand (cheap for 10,000-step timelines)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.timeline = None

    def set_timeline(self, timeline) -> None:
        self.beginResetModel()
        self.timeline = timeline
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if self.timeline is None or parent.isValid() else len(self.timeline)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        # the list elides a long line at its end; the tooltip has it whole
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole) and self.timeline is not None:
            step = self.timeline.steps[index.row()]
            return f"{step.index:>4}  {step.describe(self.timeline.rec)}"
        return None

    def retranslate(self) -> None:
        """Every line again, in the current language."""
        if self.timeline is not None and len(self.timeline):
            self.dataChanged.emit(self.index(0), self.index(len(self.timeline) - 1))


class QtEventList(QListView):
    """The timeline's events; clicking one jumps there."""

    step_picked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._model = _EventModel(self)
        self.setModel(self._model)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.clicked.connect(lambda idx: self.step_picked.emit(idx.row()))
        # a line too long for the dock ends in "…" (its tooltip has it whole), never scrolls out of sight
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setWordWrap(False)
        f = QFont("DejaVu Sans Mono")
        f.setFamilies(["DejaVu Sans Mono", "WenQuanYi Micro Hei Mono", "WenQuanYi Micro Hei"])
        base = QApplication.font().pointSizeF()
        f.setPointSizeF(max(9.0, base - 1) if base > 0 else 9.0)  # scales with the system font
        self.setFont(f)

    def set_timeline(self, timeline) -> None:
        self._model.set_timeline(timeline)

    def retranslate(self) -> None:
        """Every line again, in the current language."""
        self._model.retranslate()

    def set_step(self, i: int) -> None:
        idx = self._model.index(i)
        self.selectionModel().setCurrentIndex(idx, self.selectionModel().SelectionFlag.ClearAndSelect)
        self.scrollTo(idx)

    def pick(self, i: int) -> None:
        """Act as if row `i` was clicked."""
        self.clicked.emit(self._model.index(i))


class QtElidedLabel(QLabel):
    """A one-line label that ends in "…" when it is too narrow for its text, with the whole text as its
    tooltip: a long caption never runs into its neighbour."""

    def __init__(self, text: str = "", parent=None):
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        self._full = text
        self.setToolTip(text)
        self._elide()

    def text(self) -> str:
        """The whole text (what the label shows may end in "…")."""
        return self._full

    def shown(self) -> str:
        """The text as drawn now."""
        return super().text()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(0, self.contentsRect().width())
        super().setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, width))


class QtTransport(QWidget):
    """Step controls: start, back, play/pause, forward, end, a slider, speed and the phase label."""

    step_requested = Signal(int)

    def __init__(self, actions: dict, parent=None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 2, 6, 2)
        outer.setSpacing(2)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self.step_requested.emit)
        outer.addWidget(self.slider)
        lay = QHBoxLayout()
        outer.addLayout(lay)
        self.buttons = {}
        for key in ("first", "prev", "play", "next", "last"):
            b = QToolButton()
            b.setDefaultAction(actions[key])
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
            b.setMinimumWidth(30)
            lay.addWidget(b)
            self.buttons[key] = b
        self.step_label = QLabel("0/0")
        self.step_label.setMinimumWidth(90)
        lay.addWidget(self.step_label)
        self.phase_label = QtElidedLabel("")
        f = self.phase_label.font()
        f.setBold(True)
        self.phase_label.setFont(f)
        lay.addWidget(self.phase_label, 1)
        self.speed_label = QLabel(tr("Speed"))
        lay.addWidget(self.speed_label)
        self.speed = QComboBox()
        self.speed.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for s in SPEEDS:
            self.speed.addItem(f"{s} {tr('steps/s')}", s)
        self.speed.setCurrentIndex(2)
        lay.addWidget(self.speed)

    def set_range(self, n: int) -> None:
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        self.slider.blockSignals(False)

    def set_state(self, state: StepState, total: int, caption: str) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(state.step.index)
        self.slider.blockSignals(False)
        self.step_label.setText(f"{tr('Step')} {state.step.index}/{total - 1}")
        self.phase_label.setText(f"[{tr(state.phase)}] {caption}")

    def steps_per_second(self) -> int:
        return int(self.speed.currentData())

    def retranslate(self) -> None:
        """The fixed words in the current language (the caption comes with the next `set_state`)."""
        self.speed_label.setText(tr("Speed"))
        for i, s in enumerate(SPEEDS):
            self.speed.setItemText(i, f"{s} {tr('steps/s')}")
