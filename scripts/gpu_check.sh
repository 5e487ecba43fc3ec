#!/usr/bin/env bash
# The one command for a session lent a GPU (the `device` tool's `run`), from the repository root:
#
#     bash scripts/gpu_check.sh
#
# Builds the cuda backend with the machine's own python3 (which holds a CUDA torch there), runs
# benchmarks/gpu_check.py (opcheck, correctness, speed against cuBLAS at 256..8192, each product,
# compute-sanitizer, the CUDA tests) and leaves its JSON report and full log in $OUT (or ./gpu_out).
# Ends within about 7 minutes; the report is rewritten after every stage, so a cut-off run still
# says how far it got. See docs/kernels.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-./gpu_out}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}"
# a fresh cache directory: the first build there is timed and its log kept
export GRADVIZ_CACHE_DIR="${GRADVIZ_CACHE_DIR:-/tmp/gradviz-ext}"
{ nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv || true; python3 --version; } 2>&1 | tee "$out/machine.txt"
timeout 420 python3 benchmarks/gpu_check.py --json "$out/gpu_check.json" "$@" 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
