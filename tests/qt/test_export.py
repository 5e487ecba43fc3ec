"""Image exports read back: PNG decoded, SVG parsed, PDF opened, GIF frames counted; the export dialog."""
from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QImage

import gradviz
from gradviz.cli import main
from gradviz.core import exporters as ex
from gradviz.core.atomic import TEMP_PREFIX
from gradviz.core.timeline import Stepper, Timeline
from gradviz.qt import export as qexport
from gradviz.qt.export_dialog import QtExportDialog


@pytest.fixture(scope="module")
def rec():
    # the image formats register through the entry point; load it even where the installed metadata is older
    assert ex.load_plugins([EntryPoint("qt", "gradviz.qt.export:register", ex.PLUGIN_GROUP)]) == []
    return gradviz.record("mlp")


def _labels(rec) -> list[str]:
    return [n.leaf if n.kind in ("leaf", "input") and n.leaf else n.name for n in rec.nodes]


def _graph_rect(rec, step=None, layout="lr") -> QRectF:
    from gradviz.qt.graph_view import QtGraphView

    tl = Timeline(rec)
    view = QtGraphView(rec, Stepper(tl, len(tl) - 1 if step is None else step), layout=layout)
    r = view.graph_rect()
    view.deleteLater()
    return r


def test_image_formats_are_registered(rec):
    formats = ex.exporters()
    for suffix in (".png", ".svg", ".pdf", ".gif"):
        assert formats[suffix].origin == "gradviz.qt.export"


def test_png_decoded_with_its_size_and_scale(rec, qapp, tmp_path):
    r = _graph_rect(rec)
    one = ex.export(rec, tmp_path / "g.png", phase="backward")
    img = QImage(str(one))
    assert not img.isNull()
    assert (img.width(), img.height()) == (pytest.approx(r.width(), abs=1), pytest.approx(r.height(), abs=1))
    two = ex.export(rec, tmp_path / "g2.png", phase="backward", scale=2, theme="dark")
    with Image.open(two) as im:
        assert im.format == "PNG" and im.size[0] == pytest.approx(2 * r.width(), abs=2)
        corner = im.convert("RGB").getpixel((1, 1))
    from gradviz.qt.theme import get_theme

    bg = get_theme("dark")["background"].lstrip("#")
    assert corner == tuple(int(bg[i:i + 2], 16) for i in (0, 2, 4))


def test_png_cap_is_stated(rec, qapp, tmp_path, monkeypatch):
    monkeypatch.setattr(qexport, "MAX_PNG_SIDE", 500)
    notes = []
    out = ex.export(rec, tmp_path / "cap.png", scale=4, progress=lambda f, m: notes.append(m) if f < 0 else None)
    img = QImage(str(out))
    assert max(img.width(), img.height()) <= 500
    assert any("capped at 500 px" in n for n in notes)


def test_svg_is_xml_with_node_labels_as_text(rec, qapp, tmp_path):
    out = ex.export(rec, tmp_path / "g.svg", phase="backward", layout="tb")
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    texts = " ".join("".join(el.itertext()) for el in root.iter() if el.tag.endswith("text"))
    for label in _labels(rec):
        assert label in texts, label


def test_svg_of_a_big_graph_keeps_every_label(qapp, tmp_path):
    big = gradviz.record("rnn-unrolled", params={"T": 700}, keep_values=False)
    assert len(big.nodes) > 4000  # past the app's own zoomed-out drawing threshold
    out = ex.export(big, tmp_path / "big.svg")
    root = ET.parse(out).getroot()
    texts = ["".join(el.itertext()) for el in root.iter() if el.tag.endswith("text")]
    assert sum("TanhBackward0" in t for t in texts) == sum(n.name == "TanhBackward0" for n in big.nodes)


def test_pdf_page_size_and_text(rec, qapp, tmp_path):
    from pypdf import PdfReader

    r = _graph_rect(rec)
    out = ex.export(rec, tmp_path / "g.pdf", phase="forward")
    reader = PdfReader(out)
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert float(box.width) == pytest.approx(r.width() * 0.75, rel=0.01)
    assert float(box.height) == pytest.approx(r.height() * 0.75, rel=0.01)
    text = reader.pages[0].extract_text()
    for label in _labels(rec):
        assert label in text, label


def test_gif_has_one_frame_per_backward_step(rec, qapp, tmp_path):
    out = ex.export(rec, tmp_path / "g.gif")
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == len(rec.backward)
        sizes = set()
        for k in range(im.n_frames):
            im.seek(k)
            sizes.add(im.size)
        assert len(sizes) == 1
        im.seek(0)
        first = im.convert("RGB")
        im.seek(im.n_frames - 1)
        last = im.convert("RGB")
    assert first.tobytes() != last.tobytes()  # the frames show different steps


def test_gif_frame_cap_is_stated(rec, qapp, tmp_path):
    notes = []
    out = ex.export(rec, tmp_path / "cap.gif", max_frames=4, progress=lambda f, m: notes.append(m) if f < 0 else None)
    with Image.open(out) as im:
        assert im.n_frames == 4
    assert any(f"showing 4 of the {len(rec.backward)} backward steps" in n for n in notes)
    assert qexport.gif_steps(ex.ExportOptions(step=0, timeline=Timeline(rec)), 4)[0][-1] == len(Timeline(rec)) - 1


def test_failing_image_export_keeps_old_file(rec, qapp, tmp_path):
    target = tmp_path / "g.png"
    target.write_bytes(b"old")
    with pytest.raises(gradviz.GradvizError):
        ex.export(rec, target, region=QRectF(-1e6, -1e6, 1, 1))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]


def test_repr_svg_shows_the_graph(rec, qapp):
    text = rec._repr_svg_()
    root = ET.fromstring(text)
    assert root.tag.endswith("svg")
    assert "NllLossBackward0" in text


def test_cli_exports_images(qapp, tmp_path, capsys):
    for fmt in ("png", "svg", "pdf", "gif"):
        assert main(["export", "sum-xy-plus-z", "-o", str(tmp_path / f"g.{fmt}"), "--phase", "backward",
                     "--scale", "1.5"]) == 0
        assert (tmp_path / f"g.{fmt}").stat().st_size > 0
    assert main(["export", "sum-xy-plus-z", "-o", str(tmp_path / "g.png"), "--scale", "99"]) == 2
    assert "scale" in capsys.readouterr().err


def test_core_never_imports_qt(tmp_path):
    core = Path(gradviz.__file__).parent / "core"
    for f in core.rglob("*.py"):  # the scene package included
        text = f.read_text()
        for name in ("PySide6", "pyqtgraph", "gradviz.qt", "from ..qt", "from .qt"):
            assert name not in text, f"{f.name} names {name}"
    code = ("import sys, gradviz; from gradviz.core.exporters import export; "
            f"r = gradviz.record('mlp'); export(r, {str(tmp_path / 'x.dot')!r}); "
            "import gradviz.core.storage; print(any(m.startswith(('PySide6', 'pyqtgraph')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---------------------------------------------------------------------------------------------
# the dialog

def test_dialog_exports_in_a_worker(rec, qtbot, tmp_path):
    tl = Timeline(rec)
    stepper = Stepper(tl, tl.first_backward + 2)
    dialog = QtExportDialog(rec, stepper)
    qtbot.addWidget(dialog)
    dialog.path_edit.setText(str(tmp_path / "d.svg"))
    assert "SVG" in dialog.format_label.text()
    assert dialog.export_options()["step"] == tl.first_backward + 2
    with qtbot.waitSignal(dialog.export_finished, timeout=30000) as sig:
        dialog.export_button.click()
    assert sig.args == [str(tmp_path / "d.svg")]
    root = ET.parse(tmp_path / "d.svg").getroot()
    assert f"step {tl.first_backward + 2}" in "".join(el.text or "" for el in root.iter() if el.tag.endswith("desc"))
    # painted in the worker from the Scene (no widget, no GUI thread): labels are still text
    texts = " ".join("".join(el.itertext()) for el in root.iter() if el.tag.endswith("text"))
    for label in _labels(rec):
        assert label in texts, label
    assert dialog.progress.value() == 1000 and not dialog.running

    dialog.path_edit.setText(str(tmp_path / "d.nope"))
    assert not dialog.export_button.isEnabled() and "no exporter" in dialog.format_label.text()
    dialog.when_combo.setCurrentIndex(dialog.when_combo.findData("start of forward"))
    assert dialog.export_options()["phase"] == "forward"


def test_dialog_visible_part_uses_the_view(rec, qtbot, tmp_path):
    from gradviz.qt.graph_view import QtGraphView

    tl = Timeline(rec)
    stepper = Stepper(tl, len(tl) - 1)
    view = QtGraphView(rec, stepper)
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    view.zoom(2.0)
    dialog = QtExportDialog(rec, stepper, view)
    qtbot.addWidget(dialog)
    dialog.path_edit.setText(str(tmp_path / "v.png"))
    dialog.region_combo.setCurrentIndex(dialog.region_combo.findData("visible"))
    part = dialog.export_options()["region"]
    with qtbot.waitSignal(dialog.export_finished, timeout=30000):
        dialog.start_export()
    img = QImage(str(tmp_path / "v.png"))
    colours = {img.pixel(x, y) for x in range(0, img.width(), 7) for y in range(0, img.height(), 7)}
    assert len(colours) > 3  # something was drawn, not just the background
    visible = part.intersected(view.graph_rect())
    assert img.width() == pytest.approx(visible.width(), abs=1)
    assert img.height() == pytest.approx(visible.height(), abs=1)


def test_dialog_follows_a_rolled_dark_view(qtbot, tmp_path):
    from gradviz.qt.graph_view import QtGraphView

    rolled_rec = gradviz.record("repeated-layer", params={"k": 4})
    tl = Timeline(rolled_rec)
    view = QtGraphView(rolled_rec, Stepper(tl, 0), layout="tb", theme="dark", rolled=True)
    qtbot.addWidget(view)
    dialog = QtExportDialog(rolled_rec, view.stepper, view)
    qtbot.addWidget(dialog)
    assert dialog.layout_combo.currentText() == "tb" and dialog.theme_combo.currentText() == "dark"
    options = dialog.export_options()
    assert options["rolled"] is True and options["precomputed"] is view.layout_
    dialog.path_edit.setText(str(tmp_path / "r.png"))
    with qtbot.waitSignal(dialog.export_finished, timeout=30000):
        dialog.start_export()
    img = QImage(str(tmp_path / "r.png"))
    r = view.graph_rect()
    assert (img.width(), img.height()) == (pytest.approx(r.width(), abs=1), pytest.approx(r.height(), abs=1))
    unrolled = QtGraphView(rolled_rec, Stepper(tl, 0), layout="tb")
    qtbot.addWidget(unrolled)
    assert unrolled.graph_rect().height() != r.height()


def test_dialog_cancel_leaves_no_file(qtbot, tmp_path):
    big = gradviz.record("rnn-unrolled", params={"T": 120}, keep_values=False)
    dialog = QtExportDialog(big, None)
    qtbot.addWidget(dialog)
    dialog.path_edit.setText(str(tmp_path / "c.gif"))
    with qtbot.waitSignal(dialog.export_cancelled, timeout=60000):
        dialog.start_export()
        dialog.cancel()
    assert not dialog.running
    assert list(tmp_path.iterdir()) == []
    assert "cancelled" in dialog.status.text()


def test_closing_the_dialog_during_an_export_cancels_it(qtbot, tmp_path):
    big = gradviz.record("rnn-unrolled", params={"T": 120}, keep_values=False)
    dialog = QtExportDialog(big, None)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.path_edit.setText(str(tmp_path / "c.gif"))
    with qtbot.waitSignal(dialog.export_cancelled, timeout=60000):
        dialog.start_export()
        qtbot.wait(50)  # let the worker start asking the GUI thread for frames
        dialog.reject()  # must not deadlock with a worker waiting for the GUI thread
    assert not dialog.running and not dialog.isVisible()
    assert list(tmp_path.iterdir()) == []


def test_repr_svg_of_a_huge_graph_is_a_note(qapp):
    big = gradviz.record("rnn-unrolled", params={"T": 700}, keep_values=False)
    text = big._repr_svg_()
    assert len(text) < 2000 and "too many to show inline" in text
    ET.fromstring(text)


def test_dialog_shows_failures(rec, qtbot, tmp_path):
    dialog = QtExportDialog(rec, None)
    qtbot.addWidget(dialog)
    dialog.path_edit.setText(str(tmp_path / "missing" / "x.png"))
    with qtbot.waitSignal(dialog.export_failed, timeout=30000) as sig:
        dialog.start_export()
    assert "does not exist" in sig.args[0] and "does not exist" in dialog.status.text()
    assert not any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir())


def test_png_of_a_big_graph_at_readable_scale_has_labels(qapp, tmp_path):
    import torch

    def parallel_chains():
        x = torch.randn(70, requires_grad=True)
        cols = list(x.unbind())
        for _ in range(60):
            cols = [c.tanh() for c in cols]
        return torch.stack(cols).sum(), {"x": x}

    big = gradviz.record(parallel_chains, keep_values=False)
    assert len(big.nodes) > 4000  # past the app's own zoomed-out drawing threshold
    notes = []
    out = ex.export(big, tmp_path / "big.png", scale=0.5, progress=lambda f, m: notes.append(m) if f < 0 else None)
    assert notes == []
    img = QImage(str(out)).convertToFormat(QImage.Format.Format_Grayscale8)
    # text makes many small dark runs inside node boxes; the zoomed-out drawing has flat boxes only
    changes = 0
    for row in range(0, img.height(), max(1, img.height() // 40)):
        prev = None
        for x in range(0, img.width(), 1):
            dark = QColor(img.pixel(x, row)).lightness() < 100
            changes += prev is not None and dark != prev
            prev = dark
    assert changes > 1000


def test_none_refcount_guard_holds_through_many_qt_calls(qapp):
    import gradviz.qt  # noqa: F401 - installs the guard
    from PySide6.QtGui import QPainterPath

    from gradviz.qt.pyside_fix import protect_none

    path = QPainterPath()
    for _ in range(200_000):  # far more than None's own count: without the guard Python aborts here
        path.moveTo(0.0, 0.0)
    assert protect_none() in (True, False)


def test_export_with_no_display_and_no_app_makes_an_offscreen_one(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["PYTHONPATH"] = str(Path(gradviz.__file__).parents[1])
    code = ("import sys, gradviz.qt.export; from gradviz.cli import main; "
            f"rc = main(['export', 'sum-xy-plus-z', '-o', {str(tmp_path / 'g.svg')!r}]); "
            "import os; print(rc, os.environ.get('QT_QPA_PLATFORM'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split()[-2:] == ["0", "offscreen"], out.stderr
    assert ET.parse(tmp_path / "g.svg").getroot().tag.endswith("svg")


def test_gui_thread_bridge_answers_and_never_hangs(qtbot):
    import threading

    qexport.ensure_app()
    results = {}

    def worker(key, timeout):
        try:
            results[key] = qexport.call_in_main_thread(lambda: threading.current_thread().name, timeout=timeout)
        except gradviz.GradvizError as exc:
            results[key] = exc

    # the GUI thread runs its event loop: the worker gets the answer, computed on the GUI thread
    t = threading.Thread(target=worker, args=("served", 30))
    t.start()
    qtbot.waitUntil(lambda: "served" in results, timeout=10000)
    t.join()
    assert results["served"] == threading.main_thread().name
    # the GUI thread is blocked (here: joining the worker): the worker gets an error, not a deadlock
    t = threading.Thread(target=worker, args=("blocked", 0.3))
    t.start()
    t.join(10)
    assert not t.is_alive()
    assert "did not draw the graph" in str(results["blocked"])
    qtbot.wait(50)  # the abandoned request is then skipped


def test_the_dialog_exports_at_a_legible_scale_unless_one_is_asked_for(qtbot, tmp_path):
    big = gradviz.record("rnn-unrolled", params={"T": 150}, keep_values=False)
    dialog = QtExportDialog(big, None)
    qtbot.addWidget(dialog)
    assert dialog.scale_spin.text() == "legible" and dialog.export_options()["scale"] is None
    dialog.path_edit.setText(str(tmp_path / "g.png"))
    with qtbot.waitSignal(dialog.export_finished, timeout=120000):
        dialog.start_export()
    with Image.open(tmp_path / "g.png") as im:
        assert im.info.get("dpi", (96, 96))[0] >= 96 * 0.75 - 1  # written at scale 0.75 or more
    dialog.scale_spin.setValue(2.0)
    assert dialog.export_options()["scale"] == 2.0


def test_dialog_whole_graph_in_one_image_folds_to_a_square(qtbot, tmp_path):
    """The dialog's "whole graph in one large image" is the command line's --whole, not the view's layout."""
    from gradviz.qt.graph_view import QtGraphView

    long_rec = gradviz.record("rnn-unrolled", params={"T": 60})
    tl = Timeline(long_rec)
    stepper = Stepper(tl, len(tl) - 1)
    view = QtGraphView(long_rec, stepper)
    qtbot.addWidget(view)
    sizes = {}
    for region in ("whole", "whole-one"):
        dialog = QtExportDialog(long_rec, stepper, view)
        qtbot.addWidget(dialog)
        dialog.path_edit.setText(str(tmp_path / f"{region}.png"))
        dialog.region_combo.setCurrentIndex(dialog.region_combo.findData(region))
        options = dialog.export_options()
        assert options.get("whole", False) is (region == "whole-one")
        assert ("precomputed" in options) is (region == "whole")
        with qtbot.waitSignal(dialog.export_finished, timeout=60000):
            dialog.start_export()
        img = QImage(str(tmp_path / f"{region}.png"))
        sizes[region] = (img.width(), img.height())
    (w, h), (pw, ph) = sizes["whole-one"], sizes["whole"]
    assert 0.7 < w / h < 1.3 and pw / ph > w / h  # a square, where the view's fold is a page's shape
