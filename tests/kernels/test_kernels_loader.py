"""The loader of the compiled backends: report, GRADVIZ_NO_BUILD, build errors, cheap import."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gradviz.core import backends, extension

REPO = Path(__file__).resolve().parents[2]


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    full_env.pop("GRADVIZ_CPU_ISA", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=300)


def test_report_lists_every_backend_with_its_reason(build):
    infos = {i.name: i for i in extension.backend_report()}
    assert list(infos) == ["torch", "cpp", "cuda"]
    assert infos["torch"].available and infos["cpp"].available
    assert infos["cpp"].fn is not None
    if torch.version.cuda is None:
        assert infos["cuda"].reason == f"torch {torch.__version__} is built without CUDA"
    elif not torch.cuda.is_available():
        assert infos["cuda"].reason == "no CUDA device"
    assert infos["cuda"].available == build.cuda_ok
    assert infos["cuda"].available or infos["cuda"].reason

    table = extension.format_backend_report().splitlines()
    assert table[0].split()[:2] == ["backend", "available"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert rows["cpp"].split()[1] == "yes" and str(build.build_dir) in rows["cpp"]
    assert f"cpu micro-kernel: {torch.ops.gradviz.cpu_isa()}" in rows["cpp"]
    if not infos["cuda"].available:
        assert rows["cuda"].split()[1] == "no" and infos["cuda"].reason in rows["cuda"]


def test_build_dir_is_keyed_by_sources_and_torch(build):
    assert build.build_dir.parent == extension.cache_dir() / "ext"
    assert build.build_dir.name == extension._source_hash(with_cuda=build.cuda_ok)
    assert any(build.build_dir.glob("*.so"))


def test_importing_the_loader_builds_nothing(tmp_path):
    proc = _run_python("""
        import time
        start = time.perf_counter()
        import gradviz.core.extension as e
        assert e._state is None, e._state
        print(time.perf_counter() - start)
    """, GRADVIZ_CACHE_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "ext").exists()
    assert "building" not in proc.stderr


def test_listing_models_and_backends_builds_nothing(tmp_path):
    # the model list, the backend names and node names never build: only a model's build (which
    # the app runs in a worker) or an explicit get_backend does
    proc = _run_python("""
        import gradviz.core.extension as e
        from gradviz.core.backends import backend_names, describe_node, get_backend
        from gradviz.core.models import MODELS
        from gradviz.core.session import Session
        assert "linear-function" in MODELS and backend_names() == ["torch", "cpp", "cuda"]
        assert describe_node(e.NODE_NAME, "cpu") == ("LinearFunction", "cpp")
        get_backend("torch"), get_backend("cuda") if e._cuda_problem() else None
        Session()
        print(e._state)
    """, GRADVIZ_CACHE_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None" and proc.stderr == ""
    assert not (tmp_path / "ext").exists()


def test_no_build_env_var_reports_and_a_backend_asked_for_is_an_error(tmp_path):
    proc = _run_python("""
        import torch
        from gradviz.core import backends, extension
        from gradviz.core.errors import BackendUnavailable
        print(extension.format_backend_report())
        try:
            backends.linear(torch.ones(2, 3), torch.ones(4, 3), None, backend="cpp")
        except BackendUnavailable as exc:
            print("refused", exc.message)
        out, ran = backends.linear(torch.ones(2, 3), torch.ones(4, 3), None)
        print("default", ran, out.shape == (2, 4))
    """, GRADVIZ_NO_BUILD="1", GRADVIZ_CACHE_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert rows["cpp"].split()[1] == "no" and rows["cpp"].endswith("build disabled by GRADVIZ_NO_BUILD")
    assert rows["cuda"].split()[1] == "no"
    # never a silent fallback: asked for by name, the backend that cannot run is an error
    assert "refused the cpp backend cannot run here: build disabled by GRADVIZ_NO_BUILD" in lines
    assert "default torch True" in lines  # the default backend always runs
    assert proc.stderr == ""
    assert not (tmp_path / "ext").exists()


def test_an_unknown_backend_is_an_error():
    from gradviz.core.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="unknown backend 'tpu'") as err:
        backends.linear(torch.ones(1, 2), torch.ones(3, 2), backend="tpu")
    assert "torch" in err.value.hint


GCC_BROKEN = "int main() {\n  int x = 1\n  return x;\n}\n"


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")
def test_first_error_line_of_real_compiler_output(tmp_path):
    src = tmp_path / "deep" / "dir" / "broken.cpp"
    src.parent.mkdir(parents=True)
    src.write_text(GCC_BROKEN)
    proc = subprocess.run(["g++", "-c", str(src), "-o", str(tmp_path / "b.o")],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    # the way torch's RuntimeError wraps ninja's output
    message = (f"Error building extension 'gradviz_kernels': [1/2] c++ -c {src}\n"
               f"FAILED: broken.o\nc++ -MMD -c {src} -o broken.o\n{proc.stderr}"
               "ninja: build stopped: subcommand failed.\n")
    line = extension.first_error_line(message)
    assert line.startswith("broken.cpp:3:")  # g++ notices the missing ";" at "return"
    assert "error: expected" in line


@pytest.mark.parametrize("output,expected", [
    ('/w/kernels/linear_cuda.cu(41): error: identifier "foo" is undefined\n1 error detected',
     'linear_cuda.cu(41): error: identifier "foo" is undefined'),
    ("ld: /tmp/x/linear.o: in function `f':\nlinear.cpp:(.text+0x1): undefined reference to `g'",
     "linear.cpp:(.text+0x1): undefined reference to `g'"),
    ("OSError: /c/ext/gradviz_kernels.so: undefined symbol: _ZN3fooEv",
     "OSError: gradviz_kernels.so: undefined symbol: _ZN3fooEv"),
    ("\nsomething else went wrong\nmore", "something else went wrong"),
    ("", "build failed"),
])
def test_first_error_line_formats(output, expected):
    assert extension.first_error_line(output) == expected


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_broken_source_reports_the_compiler_error(tmp_path):
    kernels = tmp_path / "kernels"
    shutil.copytree(extension.KERNELS_DIR, kernels)
    # the error comes before the torch includes, so the compiler stops within a second
    text = (kernels / "linear.cpp").read_text()
    (kernels / "linear.cpp").write_text("int oops = ;\n" + text)
    proc = _run_python("""
        import torch
        from gradviz.core import backends
        from gradviz.core.errors import BackendUnavailable
        info = backends.get_backend("cpp")
        print("available", info.available)
        print("reason", info.reason)
        try:
            backends.linear(torch.ones(1, 2), torch.ones(3, 2), backend="cpp")
        except BackendUnavailable as exc:
            print("refused", exc.message)
    """, GRADVIZ_KERNELS_DIR=str(kernels), GRADVIZ_CACHE_DIR=str(tmp_path / "cache"),
        MAX_JOBS="1")  # linear.cpp is the first source: with one job the build stops right there
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert "available False" in out
    reason = next(line for line in out if line.startswith("reason "))
    assert reason.startswith("reason linear.cpp:1:") and "error: expected primary-expression" in reason
    assert f"refused the cpp backend cannot run here: {reason[len('reason '):]}" in out
    # the build notice is one line, however the build ends
    assert proc.stderr.startswith("gradviz: building the cpp backend") and proc.stderr.endswith(" failed\n")
    assert proc.stderr.count("\n") == 1, proc.stderr


def test_a_cached_library_loads_without_running_ninja(build, tmp_path):
    # another ninja first on PATH (here one that fails) must not rebuild or even be run: the
    # cache key is the sources' hash, and a cached library is loaded directly
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ninja").write_text("#!/bin/sh\necho fake ninja ran >&2\nexit 1\n")
    (fake / "ninja").chmod(0o755)
    proc = _run_python("""
        from gradviz.core import extension
        state = extension.build_state()
        print(state.cpu_ok, state.cached, state.build_dir)
    """, GRADVIZ_CACHE_DIR=str(extension.cache_dir()), PATH=f"{fake}:{os.environ.get('PATH', '')}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", str(build.build_dir)]
    assert proc.stderr == ""


def test_builds_run_one_pinned_ninja(tmp_path, monkeypatch):
    fake = tmp_path / "ninja"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    monkeypatch.delenv("GRADVIZ_NINJA", raising=False)
    pinned = extension.ninja_path()
    assert pinned is not None and pinned != str(fake)  # the ninja package's / this Python's, not PATH's
    monkeypatch.setenv("GRADVIZ_NINJA", str(fake))  # passed explicitly: that one
    assert extension.ninja_path() == str(fake)
    monkeypatch.setenv("GRADVIZ_NINJA", str(tmp_path / "missing"))
    assert extension.ninja_path() is None
    assert "GRADVIZ_NINJA" in extension._compiler_problem(with_cuda=False)


def test_cuda_backend_refuses_cpu_tensors_or_is_unavailable(build):
    info = backends.get_backend("cuda")
    if not info.available:
        assert info.reason
        pytest.skip(f"cuda backend unavailable: {info.reason}")
    with pytest.raises(RuntimeError, match="the cuda backend runs on cuda tensors"):
        info.fn(torch.ones(1, 2), torch.ones(3, 2))


def test_gpu_check_script_dry_run_passes(build, tmp_path):
    # benchmarks/gpu_check.py is run once on a GPU session's scarce device time: its dry run on
    # the cpp backend goes through every stage it can here and writes its JSON report
    # run through scripts/gpu_check.sh, the command a GPU session runs; its python3 is this one
    # (only python3 is put first on PATH: another ninja would rebuild the cached extension)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    report = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--device", "cpu", "--sizes", "64"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "OUT": str(tmp_path), "GRADVIZ_CACHE_DIR": str(extension.cache_dir()),
             "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.rstrip().endswith("PASS")
    assert (tmp_path / "gpu_check.log").read_text().rstrip().endswith("PASS")
    # the session's build was reused, not compiled again (the cache key does not depend on PATH)
    assert "(loaded from the cache), dir " + str(build.build_dir) in proc.stdout, proc.stdout[:500]
    result = json.loads(report.read_text())
    assert result["failed"] == [] and result["opcheck"] == "ok" and result["build"]["build_cached"] is True
    assert result["correctness_failures"] == []
    assert [row["n"] for row in result["speed"]] == [64]
    assert [row["product"] for row in result["products"]] == [
        "forward", "grad_input", "grad_weight", "grad_bias"]
