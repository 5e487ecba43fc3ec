"""Hostile recordings opened in the app (offscreen) and through the Session: the banner shows the one line,
the window keeps the recording it had, and nothing escapes as an exception."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
import hostile  # noqa: E402

from gradviz.core import record  # noqa: E402
from gradviz.core.errors import GradvizError  # noqa: E402
from gradviz.core.session import Session  # noqa: E402
from gradviz.core.storage import save_recording  # noqa: E402

from .conftest import open_and_wait  # noqa: E402

# the big ones cost seconds to make: the CLI suite covers them; here the kinds that hit every branch
KINDS = ["understated-json", "300000-members", "symlink-dev-zero", "fifo", "folder", "missing", "producer-999",
         "root-999", "forward-node-999", "edge-slot-minus-5", "cycle", "self-loop", "infinity-root", "1e999-use",
         "check-max-abs-zzz", "flipped-byte-array", "flipped-byte-json", "sparse-2gb-member", "deep-nesting"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("base") / "run.gradviz"
    from gradviz.core.checks import run_checks

    rec = record("mlp")
    save_recording(rec, base, checks=run_checks(rec))
    return hostile.make_all(tmp_path_factory.mktemp("hostile"), hostile.members_of(base), only=KINDS)


def test_the_session_refuses_each_in_one_line(files):
    session = Session()
    seen = []
    session.failed.connect(seen.append)
    for name, path in files.items():
        with pytest.raises(GradvizError) as err:
            session.open(str(path))
        line = err.value.format()
        assert line.startswith(f"error: cannot open {str(path)!r}: ") and "\n" not in line, (name, line)
    assert len(seen) == len(files)
    assert session.recording is None


def test_the_banner_shows_the_line_and_the_window_keeps_its_recording(qtbot, window, files):
    open_and_wait(qtbot, window, "sum-xy-plus-z")
    before = window.recording
    assert before is not None
    for name, path in files.items():
        window.clear_error()
        open_and_wait(qtbot, window, str(path))
        text = window.banner_label.text()
        assert window.banner.isVisible(), name
        assert f"cannot open {str(path)!r}: " in text and "Traceback" not in text, (name, text)
        assert text.count("\n") == 0, (name, text)
        assert window.recording is before, name
