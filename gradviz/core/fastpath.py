"""The recorder's compiled helper (``kernels/record_*.cpp``): load it, build it, or say why not.

The helper walks the autograd graph, records what the engine sends through each node while backward
runs (a C++ post hook per node, no Python call per node), makes the backward events and their
snapshots, those of the gradients only it holds over their memory (``kernels/record_take.cpp``,
``Hooks.take_events``), copies gradients into one buffer, finds each forward op's
source line on the interpreter's frame stack (CPython 3.11), runs the forward capture's
``__torch_function__`` for the calls that are no event (``kernels/record_capture.cpp``) and logs
the common event (``kernels/record_events.cpp``), wraps ``Module._call_impl`` for the sandbox with the
capture's module bookkeeping (``kernels/record_modules.cpp``), reads
what every node saved for backward (`gradviz.core.saved.read_saved_nodes`), and takes the summary
statistics of the gradients past the value budget straight from their memory
(``kernels/record_stats.cpp``, the numbers `gradviz.core.tensors` computes), and runs the recorder's
passes over the walked graph and the events' tensors (``kernels/record_graph.cpp``: producers and a
topological order, the unseen nodes' flags, the events settled on nodes inside composite ops, the
inputs' node ids and the inputs to name) and over the leaves after backward (``kernels/record_leaves.cpp``:
their snapshots without values, their contributions, the NaN/Inf test of their gradients); the recorder
(`gradviz.core.recorder`) uses it when it is loaded and does the same in Python when it is not, with the same recording. It
is a Python extension module built with `torch.utils.cpp_extension` into the build cache of the
linear op's backends (`gradviz.core.extension.cache_dir`), in a folder named by a hash of its
sources, the torch and Python versions and the flags.

Recording never builds it (a build takes about a minute): `helper` only loads a library already
built. ``scripts/setup.sh`` builds it once (`build`; by hand: ``python -c "from gradviz.core import
fastpath; print(fastpath.build())"``). With
``GRADVIZ_NO_BUILD=1`` nothing is built, and with ``GRADVIZ_RECORD_PYTHON=1`` the recorder runs its
Python path even where the helper is built.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Iterator

import torch

from . import extension as _ext

__all__ = ["SOURCES", "HEADERS", "helper", "build", "status", "python_only"]

SOURCES = ("record_hooks.cpp", "record_take.cpp", "record_frames.cpp", "record_capture.cpp", "record_saved.cpp",
           "record_events.cpp", "record_stats.cpp", "record_graph.cpp", "record_modules.cpp",
           "record_leaves.cpp")
HEADERS = ("record_objects.h", "record_take.h")  # (included by the sources: part of the build's name)
_CFLAGS = ["-O2", "-Wall", "-Wfatal-errors", "-ffp-contract=off"]  # (no fused multiply-add: record_stats.cpp)

_lock = threading.Lock()
_module: ModuleType | None = None
_reason = "not loaded yet"
_tried = False
_forced_python = 0


def _key() -> str:
    """The build's name: a hash of the sources and headers, the torch and Python versions, the flags."""
    h = hashlib.sha256()
    for source in SOURCES + HEADERS:
        h.update(source.encode())
        h.update((_ext.KERNELS_DIR / source).read_bytes())
    h.update(f"torch={torch.__version__} python={sys.version} abi={sysconfig.get_config_var('SOABI')}".encode())
    h.update(" ".join(_CFLAGS).encode())
    return h.hexdigest()[:16]


def _paths() -> tuple[str, Path, Path]:
    key = _key()
    name = f"gradviz_record_{key}"
    build_dir = _ext.cache_dir() / "ext" / f"record-{key}"
    return name, build_dir, build_dir / f"{name}.so"


def _import(name: str, library: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(name, str(library))
    spec = importlib.util.spec_from_file_location(name, str(library), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _disabled() -> str:
    if os.environ.get("GRADVIZ_RECORD_PYTHON", "") not in ("", "0") or _forced_python:
        return "the Python path was asked for (GRADVIZ_RECORD_PYTHON)"
    return ""


def helper() -> ModuleType | None:
    """Return the loaded helper module, or None (then `status` says why); never builds."""
    global _module, _reason, _tried
    if _disabled():
        return None
    if _module is not None or _tried:
        return _module
    with _lock:
        if not _tried:
            try:
                name, _, library = _paths()
                if library.is_file():
                    _module = _import(name, library)
                    _reason = ""
                else:
                    _reason = "not built (scripts/setup.sh builds it: gradviz.core.fastpath.build())"
            except (OSError, ImportError) as exc:
                _reason = f"could not load: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            _tried = True
    return _module


def build() -> tuple[bool, str]:
    """Load the helper, building it first when it is not in the cache.

    Returns
    -------
    (bool, str)
        Whether it is loaded, and why not (or, when it was just built, where and in how long).
    """
    global _module, _reason, _tried
    if os.environ.get("GRADVIZ_NO_BUILD", "") not in ("", "0"):
        return helper() is not None, "build disabled by GRADVIZ_NO_BUILD"
    with _lock:
        if _module is not None:
            return True, ""
        name, build_dir, library = _paths()
        if library.is_file():
            try:
                _module = _import(name, library)
                _reason, _tried = "", True
                return True, ""
            except (OSError, ImportError):
                library.unlink(missing_ok=True)  # cut short (a killed build): build it again
        problem = _ext._compiler_problem(False)
        if problem:
            _reason, _tried = problem, True
            return False, problem
        from torch.utils import cpp_extension

        build_dir.mkdir(parents=True, exist_ok=True)
        print(f"gradviz: building the recorder's helper (once, about a minute) in {build_dir} ...",
              end="", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            with _ext._pinned_ninja(_ext.ninja_path() or "ninja"):
                _module = cpp_extension.load(
                    name=name, sources=[str(_ext.KERNELS_DIR / source) for source in SOURCES], extra_cflags=_CFLAGS,
                    build_directory=str(build_dir), is_python_module=True, verbose=False)
        except Exception as exc:  # compiler, linker and loader errors
            print(" failed", file=sys.stderr, flush=True)
            _reason, _tried = _ext.first_error_line(str(exc)), True
            return False, _reason
        seconds = time.perf_counter() - start
        print(f" built in {seconds:.1f} s", file=sys.stderr, flush=True)
        _reason, _tried = "", True
        return True, f"built in {build_dir} in {seconds:.1f} s"


def status() -> str:
    """One line: whether recording uses the helper, and why not."""
    if helper() is not None:
        return "loaded"
    return _disabled() or _reason


@contextlib.contextmanager
def python_only() -> Iterator[None]:
    """Record with the Python path inside the block (for comparing the two)."""
    global _forced_python
    with _lock:
        _forced_python += 1
    try:
        yield
    finally:
        with _lock:
            _forced_python -= 1
