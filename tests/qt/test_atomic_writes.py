"""Writes are atomic for every format: a full disk, SIGTERM/SIGINT and SIGKILL leave the old file byte for byte.

A full disk is a 1 MiB tmpfs mounted by the test (it needs root and the right to mount: skipped with
the reason otherwise). Signals hit a real ``gradviz export`` process while its temporary file is
written (``GRADVIZ_TEST_WRITE_PAUSE`` holds it there).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradviz.cli import main
from gradviz.core.atomic import PAUSE_ENV, TEMP_PREFIX

ROOT = Path(__file__).resolve().parents[2]
FORMATS = ("json", "dot", "graphml", "gradviz", "png", "svg", "pdf", "gif")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX))


@pytest.fixture
def full_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a 1 MiB tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        except OSError:
            pass


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_full_disk_keeps_the_old_file(full_disk, capsys, fmt):
    target = full_disk / f"g.{fmt}"
    assert main(["export", "sum-xy-plus-z", "-o", str(target)]) == 0
    old = target.read_bytes()
    capsys.readouterr()
    _fill(full_disk)
    code = main(["export", "mlp", "-o", str(target)])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("note:")]
    assert lines == [f"error: cannot write {str(target)!r}: no space left on device"], err
    assert target.read_bytes() == old
    assert _leftovers(full_disk) == []


def _export_process(target: Path, pause: float = 60.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), PAUSE_ENV: str(pause), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.Popen([sys.executable, "-m", "gradviz.cli", "export", "mlp", "-o", str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=target.parent)


def _wait_for_temp(proc: subprocess.Popen, folder: Path) -> None:
    deadline = time.monotonic() + 300  # a guard against a hang, not a timing
    while time.monotonic() < deadline:
        temps = [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]
        if temps and temps[0].stat().st_size > 0:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the export never wrote its temporary file")


@pytest.mark.parametrize("fmt,sig", [("json", signal.SIGTERM), ("gradviz", signal.SIGTERM), ("png", signal.SIGTERM),
                                     ("svg", signal.SIGTERM), ("gif", signal.SIGHUP), ("pdf", signal.SIGINT)])
def test_a_signal_mid_write_removes_the_temporary_file(tmp_path, capsys, fmt, sig):
    target = tmp_path / f"g.{fmt}"
    assert main(["export", "sum-xy-plus-z", "-o", str(target)]) == 0
    old = target.read_bytes()
    proc = _export_process(target)
    _wait_for_temp(proc, tmp_path)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert target.read_bytes() == old
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["json", "svg"])
def test_a_sigkilled_write_is_cleaned_up_by_the_next(tmp_path, capsys, fmt):
    target = tmp_path / f"g.{fmt}"
    assert main(["export", "sum-xy-plus-z", "-o", str(target)]) == 0
    old = target.read_bytes()
    proc = _export_process(target)
    _wait_for_temp(proc, tmp_path)
    proc.kill()
    proc.communicate(timeout=120)
    assert target.read_bytes() == old
    assert len(_leftovers(tmp_path)) == 1  # SIGKILL cannot be handled: the file stays...
    assert main(["export", "sum-xy-plus-z", "-o", str(tmp_path / "other.json")]) == 0
    assert _leftovers(tmp_path) == []      # ...until the next write to that folder
    assert target.read_bytes() == old


def test_a_live_writers_temporary_file_is_left_alone(tmp_path, capsys):
    live = tmp_path / f"{TEMP_PREFIX}{os.getppid()}-abc.json"
    live.write_text("{}")
    assert main(["export", "sum-xy-plus-z", "-o", str(tmp_path / "g.json")]) == 0
    assert live.exists()
