"""Build and register the compiled backends (``cpp``, ``cuda``) of the linear op.

The sources are the repository's ``kernels/`` folder; a wheel carries them as the package data
``gradviz._kernels`` (pyproject.toml maps the folder there), found through `importlib.resources`;
``GRADVIZ_KERNELS_DIR`` overrides both. They are compiled on first use with
`torch.utils.cpp_extension.load` into a build directory under ``~/.cache/gradviz/ext/``
(``GRADVIZ_CACHE_DIR`` overrides ``~/.cache/gradviz``) named by a hash of the sources, the torch
version and the build flags, and nothing else (not PATH, not which ninja): a library already
there is loaded directly, without running the build tool at all. Builds run one ninja, pinned:
``GRADVIZ_NINJA``, else the one of the ``ninja`` package or beside this Python, else PATH's (two
ninja versions read each other's build logs as "start over" and rebuild everything). No
``-march=native``: the CPU micro-kernels pick AVX-512, AVX2 or portable code at run time, so a
cached library stays valid on another x86-64 machine.

Importing this module is cheap and builds nothing; the first ``get_backend("cpp")`` (or
``"cuda"``) builds. ``GRADVIZ_NO_BUILD=1`` turns building off: both compiled backends then
report ``build disabled by GRADVIZ_NO_BUILD``. A backend that cannot run is an error where it
is asked for by name (`gradviz.core.backends.linear`), never a silent fallback.

The backends plug into the registry of `gradviz.core.linearop` when this module is imported;
`gradviz.core.backends`, which the rest of gradviz asks, imports it so they are always there.

The library defines the ops ``torch.ops.gradviz.linear``, ``linear_grad_input``,
``linear_grad_weight`` and ``linear_grad_bias`` in C++; once it is loaded, `gradviz.core.linear_autograd`
adds their autograd formulas (`torch.library.register_autograd`) and fake kernels
(`torch.library.register_fake`) so they also run under ``torch.compile``.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .linear_autograd import register_python_parts
from .linearop import BackendInfo, lookup_backend, register_backend, register_node_alias, registered_names

__all__ = [
    "KERNELS_DIR",
    "CPU_SOURCES",
    "CUDA_SOURCES",
    "NODE_NAME",
    "BuildState",
    "build_state",
    "cache_dir",
    "first_error_line",
    "backend_report",
    "format_backend_report",
]



def _kernels_dir() -> Path:
    """Where the kernel sources are: ``$GRADVIZ_KERNELS_DIR``, the wheel's data, or the checkout's."""
    override = os.environ.get("GRADVIZ_KERNELS_DIR")
    if override:
        return Path(override)
    try:
        # an installed wheel: kernels/ was mapped to the (namespace) package gradviz._kernels at
        # build time; a file of it is a real path (wheels install unzipped)
        source = importlib.resources.files("gradviz._kernels").joinpath("linear.cpp")
        if isinstance(source, Path) and source.is_file():
            return source.parent
    except (ImportError, TypeError, ValueError):  # a checkout or an editable install: no such package
        pass
    return Path(__file__).resolve().parents[2] / "kernels"


KERNELS_DIR = _kernels_dir()
CPU_SOURCES = ("linear.cpp", "gemm_cpu.cpp", "gemm_avx512.cpp", "gemm_avx2.cpp", "gemm_portable.cpp")
CUDA_SOURCES = ("linear_cuda.cpp", "linear_cuda.cu")
_HEADER_SUFFIXES = (".h", ".inl", ".cuh")
# -fopenmp: at::parallel_for is inline OpenMP code; libgomp itself comes from torch's process.
# -Wfatal-errors: a broken source fails in a second, at its first error, not after all of torch
_CFLAGS = ["-O3", "-fopenmp", "-Wall", "-Wfatal-errors"]
_CUDA_CFLAGS = ["-O3", "-lineinfo"]

# The autograd node torch creates for an op with register_autograd is named after the op.
NODE_NAME = "GeneratedBackwardFor_gradviz_linear_defaultBackward"


def _backend_of_device(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpp"


register_node_alias(NODE_NAME, "LinearFunction", _backend_of_device)


@dataclass
class BuildState:
    """Outcome of building (or not building) the extension in this process.

    Attributes
    ----------
    cpu_ok, cuda_ok : bool
        Whether the CPU / CUDA implementations of the ops are loaded.
    cpu_reason, cuda_reason : str
        Why not, when they are not.
    build_dir : pathlib.Path or None
        Where the loaded library was built.
    cached : bool
        Whether the library was loaded from the cache (nothing was compiled in this process).
    seconds : float
        Time spent building and loading.
    """

    cpu_ok: bool = False
    cpu_reason: str = ""
    cuda_ok: bool = False
    cuda_reason: str = ""
    build_dir: Path | None = None
    cached: bool = False
    seconds: float = 0.0


_lock = threading.Lock()
_state: BuildState | None = None


def cache_dir() -> Path:
    """Return the root of gradviz's build cache (``~/.cache/gradviz`` or ``$GRADVIZ_CACHE_DIR``)."""
    root = os.environ.get("GRADVIZ_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "gradviz"


def _source_hash(with_cuda: bool) -> str:
    # the compiled sources and every header (headers are cheap to over-include)
    compiled = set(CPU_SOURCES + (CUDA_SOURCES if with_cuda else ()))
    h = hashlib.sha256()
    for path in sorted(KERNELS_DIR.iterdir()):
        if path.name in compiled or path.suffix in _HEADER_SUFFIXES:
            h.update(path.name.encode())
            h.update(path.read_bytes())
    h.update(f"torch={torch.__version__} cuda={torch.version.cuda} with_cuda={with_cuda}".encode())
    h.update(" ".join(_CFLAGS + _CUDA_CFLAGS).encode())
    return h.hexdigest()[:16]


_ERROR_RE = re.compile(r"(fatal error|error)\s*:|\): error|error [A-Z]+\d+:|undefined reference|"
                       r"undefined symbol", re.IGNORECASE)


def first_error_line(output: str) -> str:
    """Return the first line of compiler or linker output that reports an error.

    Paths are shortened to the file name (``/abs/kernels/linear.cpp:3:1: error: ...`` becomes
    ``linear.cpp:3:1: error: ...``). Falls back to the first non-empty line.

    Parameters
    ----------
    output : str
        Everything the build printed (torch puts it in the message of its RuntimeError).
    """
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in lines:
        # ninja's own summary lines mention "error" too but say nothing about the source
        if ln.startswith(("FAILED:", "ninja:")):
            continue
        if _ERROR_RE.search(ln):
            return re.sub(r"(?:[\w.+-]*/)+([\w.+-]+\.(?:cpp|cu|h|cuh|inl|o|so))", r"\1", ln)
    return lines[0] if lines else "build failed"


def _cuda_problem() -> str:
    """Say why CUDA cannot run here at all (cheaply, without building anything), or return ``""``."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return ""


def ninja_path() -> str | None:
    """The one ninja every build runs: ``$GRADVIZ_NINJA``, the ``ninja`` package's, this Python's, PATH's."""
    explicit = os.environ.get("GRADVIZ_NINJA")
    if explicit:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    candidates = []
    try:
        import ninja  # the PyPI package (the kernels and test extras) ships its binary

        candidates.append(Path(ninja.BIN_DIR) / "ninja")
    except (ImportError, AttributeError):
        pass
    candidates.append(Path(sys.executable).parent / "ninja")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return shutil.which("ninja")


@contextlib.contextmanager
def _pinned_ninja(ninja: str):
    """Put `ninja`'s folder first on PATH while torch runs ``ninja`` (torch looks it up there)."""
    old = os.environ.get("PATH")
    os.environ["PATH"] = os.path.dirname(ninja) + os.pathsep + (old or "")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = old


def _compiler_problem(with_cuda: bool) -> str:
    """Say what is missing to build, or return ``""``."""
    from torch.utils import cpp_extension

    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"compiler missing ({cxx} not found on PATH)"
    if ninja_path() is None:
        where = os.environ.get("GRADVIZ_NINJA")
        return (f"compiler missing (GRADVIZ_NINJA={where} is not an executable)" if where
                else "compiler missing (ninja not found; pip install ninja)")
    if with_cuda and cpp_extension.CUDA_HOME is None:
        return "compiler missing (nvcc not found; set CUDA_HOME)"
    return ""


class _CannotBuild(Exception):
    """The tools to build are missing (the message says which)."""


def _load(with_cuda: bool) -> tuple[Path, bool]:
    """Load the cached library, or build and load it; return its folder and whether it was cached.

    Raises on a build or load failure.
    """
    key = _source_hash(with_cuda)
    name = f"gradviz_kernels_{key}"
    build_dir = cache_dir() / "ext" / key
    library = build_dir / f"{name}.so"
    if library.is_file():
        # the folder's name is the hash of everything the library is built from: it is this build
        try:
            torch.ops.load_library(str(library))
            return build_dir, True
        except OSError:  # a library cut short (a killed build): build it again
            library.unlink(missing_ok=True)
    problem = _compiler_problem(with_cuda)  # only a build needs the tools
    if problem:
        raise _CannotBuild(problem)
    from torch.utils import cpp_extension

    build_dir.mkdir(parents=True, exist_ok=True)
    names = CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())
    what = "cpp and cuda backends" if with_cuda else "cpp backend"
    # one line however it ends: "... built in 41.0 s" or "... failed"
    print(f"gradviz: building the {what} of the linear op (first use, about a minute) "
          f"in {build_dir} ...", end="", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        with _pinned_ninja(ninja_path() or "ninja"):
            cpp_extension.load(
                name=name,
                sources=[str(KERNELS_DIR / n) for n in names],
                extra_cflags=_CFLAGS,
                extra_cuda_cflags=_CUDA_CFLAGS,
                extra_include_paths=[str(KERNELS_DIR)],
                build_directory=str(build_dir),
                is_python_module=False,
                verbose=False,
            )
    except BaseException:
        print(" failed", file=sys.stderr, flush=True)
        raise
    print(f" built in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return build_dir, False


def build_state() -> BuildState:
    """Build and load the extension once per process (unless disabled) and say how it went."""
    global _state
    with _lock:
        if _state is not None:
            return _state
        if os.environ.get("GRADVIZ_NO_BUILD", "") not in ("", "0"):
            # not cached: clearing the variable later in the process allows a build
            reason = "build disabled by GRADVIZ_NO_BUILD"
            return BuildState(cpu_reason=reason, cuda_reason=reason)
        state = BuildState()
        start = time.perf_counter()
        state.cuda_reason = _cuda_problem()
        want_cuda = not state.cuda_reason
        if not hasattr(torch.library, "register_autograd"):
            problem = f"torch >= 2.4 needed (torch.library.register_autograd); have {torch.__version__}"
            state.cpu_reason = problem
            state.cuda_reason = state.cuda_reason or problem
        else:
            attempts = [True, False] if want_cuda else [False]
            for with_cuda in attempts:
                try:
                    state.build_dir, state.cached = _load(with_cuda)
                except _CannotBuild as exc:
                    line = str(exc)
                except Exception as exc:  # compiler, linker and loader errors all end up here
                    line = first_error_line(str(exc))
                else:
                    line = ""
                if line:
                    if with_cuda:
                        state.cuda_reason = line  # try again without the CUDA sources
                    else:
                        state.cpu_reason = line
                    continue
                state.cpu_ok = True
                state.cuda_ok = with_cuda
                register_python_parts()
                break
        state.seconds = time.perf_counter() - start
        _state = state
        return state


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------

def _make_fn(name: str, device_type: str):
    def fn(input, weight, bias=None):
        for what, t in (("input", input), ("weight", weight), ("bias", bias)):
            if t is not None and t.device.type != device_type:
                raise RuntimeError(f"the {name} backend runs on {device_type} tensors, "
                                   f"but {what} is on {t.device}")
        return torch.ops.gradviz.linear(input, weight, bias)

    fn.__name__ = f"gradviz_linear_{name}"
    fn.__doc__ = f"``input @ weight.T + bias`` through ``torch.ops.gradviz.linear`` on {device_type}."
    return fn


@register_backend("cpp")
def _cpp_backend() -> BackendInfo:
    state = build_state()
    if not state.cpu_ok:
        return BackendInfo("cpp", False, state.cpu_reason)
    return BackendInfo("cpp", True, "", _make_fn("cpp", "cpu"))


@register_backend("cuda")
def _cuda_backend() -> BackendInfo:
    problem = _cuda_problem()
    if problem and _state is None:
        # no CUDA here at all: say so without building the cpp backend first
        return BackendInfo("cuda", False, problem)
    state = build_state()
    if not state.cuda_ok:
        return BackendInfo("cuda", False, state.cuda_reason)
    return BackendInfo("cuda", True, "", _make_fn("cuda", "cuda"))


def backend_report() -> list[BackendInfo]:
    """Return the `BackendInfo` of every backend (building the compiled ones if needed)."""
    return [lookup_backend(name) for name in registered_names()]


def format_backend_report() -> str:
    """Return a table of the backends: name, available yes/no, and the reason or the build dir."""
    infos = backend_report()
    rows = []
    for info in infos:
        if not info.available:
            detail = info.reason
        elif info.name == "torch":
            detail = "hand-written torch.autograd.Function (always available)"
        else:
            state = build_state()
            detail = str(state.build_dir)
            if info.name == "cpp":
                detail += f" (cpu micro-kernel: {torch.ops.gradviz.cpu_isa()})"
        rows.append((info.name, "yes" if info.available else "no", detail))
    header = ("backend", "available", "reason / build dir")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(2)]
    lines = [f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]}"]
    lines += [f"{n:<{widths[0]}}  {a:<{widths[1]}}  {d}" for n, a, d in rows]
    return "\n".join(lines)
