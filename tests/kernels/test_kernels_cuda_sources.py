"""Checks of the CUDA sources on machines without a GPU: compile them, and run them emulated.

Every ``.cu`` file is compiled with ``nvcc -c`` for sm_80 (A100) and sm_90 (H100/H200) with
warnings as errors; the torch-side binding (``linear_cuda.cpp``) gets a syntax check against
torch's headers. Skipped, with the reason, where nvcc or the CUDA headers are absent. The kernels
themselves also run under a host emulation (cuda_emulation/) against a float64 reference.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gradviz.core.extension import CUDA_SOURCES, KERNELS_DIR

NVCC = shutil.which("nvcc") or (
    str(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc") if os.environ.get("CUDA_HOME") else None)
CU_FILES = sorted(KERNELS_DIR.glob("*.cu"))
needs_nvcc = pytest.mark.skipif(NVCC is None or not Path(NVCC).exists(), reason="nvcc not found")


def test_every_cuda_source_is_built():
    # a .cu file the loader would not compile would go unnoticed on the GPU machine
    assert CU_FILES, f"no .cu files in {KERNELS_DIR}"
    assert {p.name for p in CU_FILES} <= set(CUDA_SOURCES)


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", CU_FILES, ids=lambda p: p.name)
def test_nvcc_compiles(source, arch, tmp_path):
    proc = subprocess.run(
        [NVCC, "-std=c++17", "-O3", f"-arch={arch}", "-Werror", "all-warnings", "-Xptxas", "-v",
         "-I", str(KERNELS_DIR), "-c", str(source), "-o", str(tmp_path / "out.o")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # register-blocked kernels must keep their accumulators in registers
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill stores", proc.stderr)]
    assert spills and max(spills) <= 16, proc.stderr


def test_cuda_sources_include_no_torch_header():
    for path in [*CU_FILES, KERNELS_DIR / "linear_cuda.h"]:
        includes = re.findall(r'#include\s+[<"]([^>"]+)', path.read_text())
        torchy = [i for i in includes if i.split("/")[0] in ("torch", "ATen", "c10")]
        assert not torchy, f"{path.name} includes {torchy}"


def _cuda_include_dir() -> Path | None:
    for root in [os.environ.get("CUDA_HOME"), "/usr/local/cuda",
                 str(Path(NVCC).resolve().parents[1]) if NVCC else None]:
        if root and (Path(root) / "include" / "cuda_runtime.h").exists():
            return Path(root) / "include"
    return None


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")
def test_cuda_binding_compiles_against_torch_headers(tmp_path):
    from torch.utils.cpp_extension import include_paths

    cuda_inc = _cuda_include_dir()
    if cuda_inc is None:
        pytest.skip("CUDA headers (cuda_runtime.h) not found")
    args = ["g++", "-std=c++20", "-fsyntax-only", "-Wall", "-Werror", "-I", str(KERNELS_DIR),
            "-I", str(cuda_inc)]
    args += [f"-I{p}" for p in include_paths()]
    # a CPU-only torch wheel lacks this generated header of its CUDA build; it only sets a macro
    stub = tmp_path / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    stub.parent.mkdir(parents=True)
    stub.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    args += ["-idirafter", str(tmp_path), str(KERNELS_DIR / "linear_cuda.cpp")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


EMULATION = Path(__file__).parent / "cuda_emulation"
# (M, K, N[, misaligned]): one element, K = 0, ragged in every direction against the 128 x 128
# x 8 tiles, float4 paths on and off (leading dimensions multiples of 4 or not), misaligned
# buffers (scalar paths everywhere), several blocks in both grid directions, and tiles that lie
# inside C (the unchecked loop of gemm_kernel) with every kind of K tail
EMULATED_CASES = ["1,1,1", "4,0,3", "1,5,7", "6,1,3", "13,19,17", "7,300,45", "3,5,260",
                  "130,129,131", "128,128,128", "129,9,4,misaligned", "130,129,131,misaligned",
                  "256,64,256",
                  # tiles inside C: the unchecked float4 loop over slice pairs, then the checked
                  # tail (K a multiple of the slice, one slice more, a partial slice, few slices)
                  "256,44,256", "128,24,128", "128,8,128", "256,72,260", "260,132,256"]


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")
@pytest.mark.parametrize("tiles,sms", [("128x128", "0"), ("64x64", "1000000")])
def test_cuda_kernels_under_host_emulation(tmp_path, tiles, sms):
    # the real launchers and kernels of linear_cuda.cu, each block's threads run as CPU threads
    exe = tmp_path / "harness"
    build = subprocess.run(
        ["g++", "-std=c++20", "-O2", "-Wall", "-Wno-unknown-pragmas", "-Werror", "-pthread",
         "-I", str(EMULATION), "-I", str(KERNELS_DIR), str(EMULATION / "harness.cpp"), "-o",
         str(exe)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-4000:]
    # the launchers use 128 x 128 tiles when there are at least as many as SMs
    run = subprocess.run([str(exe), *EMULATED_CASES], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "EMU_SMS": sms})
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    # each case in float32 and in float64
    for dtype in ("f32", "f64"):
        passed = sum(line.split()[:2] == ["ok", dtype] for line in lines)
        assert passed == len(EMULATED_CASES), run.stdout
    # one launch per product with a non-empty output (forward, grad_input, grad_weight,
    # grad_bias) and dtype: none is skipped by mistake
    expected = 0
    for case in EMULATED_CASES:
        M, K, N = map(int, case.split(",")[:3])
        expected += 2 * ((M * N > 0) + (M * K > 0) + (N * K > 0) + (N > 0))
    assert lines[-1] == f"launches {expected}"


def _sass_mix():
    # benchmarks/sass_mix.py: the disassembly and loop analysis, shared with the benchmark
    spec = importlib.util.spec_from_file_location(
        "sass_mix", Path(__file__).resolve().parents[2] / "benchmarks" / "sass_mix.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("sass_mix", module)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules["sass_mix"])
    return sys.modules["sass_mix"]


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_gemm_hot_loop_is_mostly_ffma(arch):
    # every non-FFMA instruction of the inner loop takes an issue slot from an FFMA, so its
    # FFMA share bounds the fraction of FP32 peak (cuBLAS's SIMT loops: about 90%)
    sass_mix = _sass_mix()
    if sass_mix.find_nvdisasm() is None:
        pytest.skip("nvdisasm not found (pip install nvidia-cuda-nvdisasm)")
    hot = sass_mix.gemm_hot_loops(arch)
    assert len(hot) == 6, sorted(hot)  # 2 tile sizes x 3 products
    for key, loop in hot.items():
        # 128 x 128 tiles: 8 x 8 FFMAs per thread per depth step against 4 LDS.128 and, per
        # pair of slices, a handful of loads, stores, pointer steps and barriers
        floor = 0.90 if key.startswith("H=2") else 0.82
        assert loop.counts["FFMA"] == (1024 if key.startswith("H=2") else 512), (key, loop.counts)
        assert loop.ffma_share >= floor, (key, f"{loop.ffma_share:.1%}", loop.counts)
