"""The app's Export dialog: where it writes by default, what its button says, and what it says when done."""
import os
from pathlib import Path

from PySide6.QtCore import QStandardPaths

from .conftest import open_and_wait


def test_export_defaults_to_documents_then_the_last_folder_and_says_when_done(qtbot, window, tmp_path):
    open_and_wait(qtbot, window, "rnn-unrolled", {"T": 3})
    window.export()
    dialog = window._export_dialog
    path = Path(dialog.path_edit.text())
    # never the current folder (a repository, say): the user's documents, else home
    docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    assert str(path.parent) == (docs if docs and os.path.isdir(docs) else str(Path.home()))
    assert path.parent != Path.cwd() and path.name == "rnn-unrolled.png"
    # the Export button states what will be written; Cancel closes until a file is written
    assert dialog.export_button.text() == "Export rnn-unrolled.png"
    assert dialog.cancel_button.text() == "Cancel" and not dialog.open_folder_button.isVisibleTo(dialog)
    out = tmp_path / "out" / "graph.svg"
    out.parent.mkdir()
    dialog.path_edit.setText(str(out))
    assert dialog.export_button.text() == "Export graph.svg"
    with qtbot.waitSignal(dialog.export_finished, timeout=120000):
        dialog.start_export()
    assert out.exists()
    # done: it says so, Cancel became Close, and the folder can be opened
    assert str(out) in dialog.status.text()
    assert dialog.cancel_button.text() == "Close" and dialog.open_folder_button.isVisibleTo(dialog)
    assert dialog.folder() == str(out.parent.resolve())
    dialog.path_edit.setText(str(tmp_path / "out" / "other.png"))  # another file: not written yet
    assert dialog.cancel_button.text() == "Cancel" and not dialog.open_folder_button.isVisibleTo(dialog)
    dialog.cancel_button.click()
    assert not dialog.isVisible()
    # the next export opens in the folder used last
    window.export()
    again = Path(window._export_dialog.path_edit.text())
    assert again.parent == out.parent.resolve()
    window._export_dialog.reject()
