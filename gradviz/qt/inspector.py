"""The Inspector dock: everything about the selected node, its tensors shown by `QtTensorView`.

`QtTensorView` draws one tensor (a table when small, a heat map for a matrix, a histogram when large);
`section_label` is the bold heading of a panel's part (the Model dock uses it too).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QFormLayout, QHeaderView, QLabel, QScrollArea, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from gradviz.core.recording import Recording, short_source
from gradviz.core.tensors import TensorData
from gradviz.core.timeline import BACKWARD_DONE, StepState

from .i18n import tr
from .plots import panel_plot
from .theme import get_theme

__all__ = ["QtTensorView", "QtInspector", "section_label"]

TABLE_MAX = 64  # tensors with at most this many elements (and at most 2 dims) show as a table


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
            pw = panel_plot(theme)
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
            pw = panel_plot(theme)
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
