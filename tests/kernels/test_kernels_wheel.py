"""A wheel of gradviz carries the kernel sources: installed with no checkout on the path, cpp runs.

The wheel is built from a copy of the files it is made of (pip builds in the source tree, which
must stay clean), installed into a fresh virtual environment that reuses this environment's
torch, numpy and networkx through a .pth line (a .pth line adds a folder, not the .pth files in
it, so this environment's editable gradviz is not seen), and run from a temporary folder.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from gradviz.core import extension

REPO = Path(__file__).resolve().parents[2]
WHEEL_INPUTS = ("pyproject.toml", "setup.py", "README.md", "gradviz", "kernels")

pytestmark = pytest.mark.slow


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_wheel_runs_the_cpp_backend_without_a_checkout(build, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in WHEEL_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, src])
    (wheel,) = dist.glob("gradviz-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    kernels = sorted(p.name for p in (REPO / "kernels").iterdir() if p.is_file())
    assert kernels and {f"gradviz/_kernels/{k}" for k in kernels} <= names
    assert not [n for n in names if n.startswith("kernels/")]  # mapped into the package, not beside it

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # torch, numpy and networkx from this environment (one site-packages folder holds all three)
    (purelib / "shared-torch.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel])

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GRADVIZ_KERNELS_DIR")}
    # the session's build cache: the same sources hash to the same folder, so this is a cached load
    env["GRADVIZ_CACHE_DIR"] = str(extension.cache_dir())
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    where = _run([python, "-c", "import gradviz.core.extension as e; print(e.__file__); print(e.KERNELS_DIR)"],
                 cwd=run_dir, env=env).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    assert Path(where[1]).name == "_kernels"

    proc = _run([venv / "bin" / "gradviz", "check", "linear-function", "--param", "backend=cpp", "--strict"],
                cwd=run_dir, env=env)
    # backend=cpp that cannot run is an error (exit 2), never torch run instead: OK means cpp ran
    assert proc.stdout.rstrip().endswith("-> OK"), proc.stdout[-2000:]
