"""Instruction mix of the CUDA GEMM's hot loop, read from the machine code (no GPU needed).

An SM sub-partition issues one warp instruction per clock and its 32 FP32 lanes retire one
warp-wide FFMA per clock, so every instruction of the inner loop that is not an FFMA takes an
issue slot from one: the FFMA share of the executed loop bounds the fraction of the FP32 peak
a kernel can reach (cuBLAS's SIMT SGEMM loops are about 90% FFMA). This script compiles
``kernels/linear_cuda.cu`` to a cubin with ``nvcc``, disassembles it with ``nvdisasm`` (from
the CUDA toolkit, or the ``nvidia-cuda-nvdisasm`` wheel of the test extra), finds each kernel's
loops (backward branches) and prints the instruction mix of the largest one::

    PYTHONPATH=. python benchmarks/sass_mix.py [--arch sm_90] [--markdown]

It measures the code, not the speed: memory stalls, occupancy and clocks need a GPU
(benchmarks/gpu_check.py).
"""
from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

KERNELS_DIR = Path(__file__).resolve().parents[1] / "kernels"


def find_nvdisasm() -> str | None:
    """Path of ``nvdisasm``: on PATH, next to ``nvcc``, or in the ``nvidia-cuda-nvdisasm`` wheel."""
    found = shutil.which("nvdisasm")
    if found:
        return found
    nvcc = shutil.which("nvcc")
    if nvcc and (Path(nvcc).resolve().parent / "nvdisasm").exists():
        return str(Path(nvcc).resolve().parent / "nvdisasm")
    try:
        import nvidia  # namespace package of NVIDIA's CUDA wheels
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        for candidate in sorted(Path(root).glob("*/bin/nvdisasm")):
            return str(candidate)
    return None


@dataclass
class Loop:
    """One loop of a kernel: its instructions between a label and the branch back to it."""

    opcodes: list[str]
    counts: collections.Counter = field(init=False)

    def __post_init__(self):
        # FFMA.FTZ and FFMA count alike; the width of a memory op matters (LDS.128 vs LDS)
        def family(op: str) -> str:
            base = op.split(".")[0]
            return base + (".128" if ".128" in op else "")
        self.counts = collections.Counter(family(op) for op in self.opcodes)

    @property
    def size(self) -> int:
        return len(self.opcodes)

    @property
    def ffma_share(self) -> float:
        return self.counts.get("FFMA", 0) / max(1, self.size)


def kernel_loops(sass: str) -> dict[str, list[Loop]]:
    """Map each kernel (mangled name) to its loops, found as branches back to earlier labels."""
    result: dict[str, list[Loop]] = {}
    sections = re.split(r"\n//-+ \.text\.(\S+) -+\n", sass)
    for name, body in zip(sections[1::2], sections[2::2]):
        opcodes: list[str] = []
        labels: dict[str, int] = {}
        loops: list[Loop] = []
        for line in body.splitlines():
            label = re.match(r"^(\.L_x_\d+):", line.strip())
            if label:
                labels[label.group(1)] = len(opcodes)
                continue
            ins = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);",
                           line)
            if not ins:
                continue
            opcodes.append(ins.group(1))
            target = re.search(r"`\((\.L_x_\d+)\)", ins.group(2))
            if ins.group(1).startswith("BRA") and target and target.group(1) in labels:
                loops.append(Loop(opcodes[labels[target.group(1)]:]))
        result[name] = loops
    return result


def disassemble(arch: str, source: Path | None = None) -> str:
    """Compile a .cu file to a cubin for ``arch`` and return its SASS."""
    nvcc, nvdisasm = shutil.which("nvcc"), find_nvdisasm()
    if nvcc is None or nvdisasm is None:
        raise RuntimeError(f"needs nvcc and nvdisasm (nvcc: {nvcc}, nvdisasm: {nvdisasm}); "
                           "pip install nvidia-cuda-nvdisasm")
    source = source or KERNELS_DIR / "linear_cuda.cu"
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "out.cubin"
        subprocess.run([nvcc, "-std=c++17", "-O3", f"-arch={arch}", "-cubin", "-I",
                        str(KERNELS_DIR), str(source), "-o", str(cubin)],
                       check=True, capture_output=True, text=True, timeout=600)
        return subprocess.run([nvdisasm, "-c", str(cubin)], check=True, capture_output=True,
                              text=True, timeout=120).stdout


def gemm_hot_loops(arch: str) -> dict[str, Loop]:
    """The largest loop of every float32 ``gemm_kernel<float, H, A_T, B_T>``, keyed ``H=2 A_T=0 B_T=1``.

    (The float64 kernels, for gradcheck and finite differences, are not tuned for speed.)
    """
    hot = {}
    for name, loops in kernel_loops(disassemble(arch)).items():
        m = re.search(r"gemm_kernelIfLi(\d)ELb(\d)ELb(\d)E", name)
        if m and loops:
            hot[f"H={m.group(1)} A_T={m.group(2)} B_T={m.group(3)}"] = max(loops, key=lambda l: l.size)
    return hot


LAYOUTS = {"A_T=0 B_T=1": "forward (input . weight^T)", "A_T=0 B_T=0": "grad_input (g . weight)",
           "A_T=1 B_T=0": "grad_weight (g^T . input)"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    hot = gemm_hot_loops(args.arch)
    if args.markdown:
        print(f"| kernel ({args.arch}) | product | loop instructions | FFMA | FFMA share | other |")
        print("|---|---|---:|---:|---:|---|")
    for key, loop in sorted(hot.items(), reverse=True):
        tile = "128x128" if key.startswith("H=2") else "64x64"
        product = LAYOUTS[key.split(" ", 1)[1]]
        other = ", ".join(f"{k} {v}" for k, v in loop.counts.most_common() if k != "FFMA")
        if args.markdown:
            print(f"| {tile} | {product} | {loop.size} | {loop.counts['FFMA']} | "
                  f"{loop.ffma_share:.1%} | {other} |")
        else:
            print(f"{tile:>8} {product:<28} {loop.size:>5} instr  FFMA {loop.ffma_share:6.1%}  "
                  f"{other}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
