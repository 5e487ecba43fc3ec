"""One prepared check of the CUDA backend, for a session that has a GPU (written for an H200).

Builds the ``cuda`` backend through the same loader as everything else
(`gradviz.core.extension`), then, in about 4 minutes on an H200 (7 at most):

1. prints the backend report;
2. runs ``torch.library.opcheck`` on every op on CUDA, float32 and float64;
3. compares output and all gradients with ``F.linear`` + autograd on ragged shapes (1 row,
   1 column, non-multiples of the 128 x 128 tile, K = 0, non-contiguous operands, no bias),
   in float32 and in float64;
4. times forward+backward against torch (cuBLAS, TF32 off) at n = 256 .. 8192 and prints the
   ratio torch_time / cuda_time and the fraction of the FP32 peak (H200: ~67 TFLOP/s);
5. times each op alone against torch's own product at n = 4096 (which GEMM lags, if one does);
6. runs compute-sanitizer memcheck and racecheck over the ops on a few shapes (if it can);
7. runs the CUDA-parametrized tests of tests/kernels (skip with ``--no-pytest``).

Exit status 0 only if every check passed. Command (repository root; see docs/kernels.md)::

    bash scripts/gpu_check.sh        # sets the environment, keeps the report and log in $OUT
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import traceback

import torch
import torch.nn.functional as F

FP32_PEAK_TFLOPS = 67.0  # H200 SXM, non-tensor-core FP32


DEVICE = "cuda"  # --device cpu runs the same script on the cpp backend, to test the script


def check_build() -> dict:
    """Build the extension (timed) and print the backend report."""
    from gradviz.core import extension

    start = time.perf_counter()
    state = extension.build_state()
    how = "loaded from the cache" if state.cached else "compiled"
    print(f"build: {time.perf_counter() - start:.1f} s ({how}), dir {state.build_dir}")
    print(extension.format_backend_report())
    if DEVICE == "cuda" and not state.cuda_ok:
        raise SystemExit(f"FAIL: the cuda backend is not available: {state.cuda_reason}")
    return {"build_s": state.seconds, "build_dir": str(state.build_dir), "build_cached": state.cached}


def check_opcheck() -> None:
    """torch.library.opcheck of every op on CUDA tensors."""
    from torch.library import opcheck

    ops = torch.ops.gradviz
    torch.manual_seed(0)
    for (M, K, N), dtype in itertools.product([(5, 3, 4), (33, 130, 7)], [torch.float32, torch.float64]):
        kw = dict(device=DEVICE, dtype=dtype, requires_grad=True)
        x, w, b = torch.randn(M, K, **kw), torch.randn(N, K, **kw), torch.randn(N, **kw)
        g = torch.randn(M, N, **kw)
        opcheck(ops.linear.default, (x, w, b))
        opcheck(ops.linear.default, (x, w, None))
        opcheck(ops.linear_grad_input.default, (g, w))
        opcheck(ops.linear_grad_weight.default, (g, x))
        opcheck(ops.linear_grad_bias.default, (g,))
    print("opcheck: ok")


SHAPES = [(1, 1, 1), (1, 5, 7), (6, 1, 3), (4, 3, 1), (4, 0, 3), (128, 128, 128), (129, 127, 131),
          (7, 300, 45), (250, 33, 70), (3, 5, 4100), (1000, 999, 1001), (64, 4096, 12),
          (2048, 17, 2048), (513, 1025, 257)]


def check_correctness() -> list[str]:
    """Output and gradients vs F.linear computed in float64 (on the CPU); returns the failures."""
    failures = []
    gen = torch.Generator(device="cpu").manual_seed(1)
    for (M, K, N), dtype in itertools.product(SHAPES, [torch.float32, torch.float64]):
        for variant in ("plain", "no-bias", "strided"):
            def rnd(*s):
                return torch.randn(*s, generator=gen, dtype=dtype).to(DEVICE)
            x, w, b, g = rnd(M, K), rnd(N, K), rnd(N), rnd(M, N)
            if variant == "strided":
                x = rnd(M, 2 * K)[:, ::2] if K else x      # column stride 2
                w = rnd(K, N).t()                          # transposed storage
                g = rnd(N, M).t()                          # transposed grad_output
            bias = None if variant == "no-bias" else b
            leaves = [t.detach().clone().requires_grad_() for t in (x, w)]
            bl = None if bias is None else bias.detach().clone().requires_grad_()
            y = torch.ops.gradviz.linear(leaves[0], leaves[1], bl)
            y.backward(g)
            refs = [t.detach().cpu().double().requires_grad_() for t in (x, w)]
            br = None if bias is None else bias.detach().cpu().double().requires_grad_()
            yr = F.linear(refs[0], refs[1], br)
            yr.backward(g.cpu().double())
            # sums of up to `depth` unit-variance products: the rounding error grows with depth
            depth = max(M, N, K)
            if dtype == torch.float32:
                tol = dict(rtol=1e-4, atol=1e-5 + 1e-6 * depth)
            else:
                tol = dict(rtol=1e-12, atol=1e-13 * (1 + depth))
            pairs = [("output", y, yr), ("grad_input", leaves[0].grad, refs[0].grad),
                     ("grad_weight", leaves[1].grad, refs[1].grad)]
            if bias is not None:
                pairs.append(("grad_bias", bl.grad, br.grad))
            for name, got, want in pairs:
                try:
                    torch.testing.assert_close(got.cpu().double(), want, **tol)
                except AssertionError as exc:
                    failures.append(f"{(M, K, N)} {dtype} {variant} {name}: {str(exc).splitlines()[1:3]}")
    print(f"correctness: {len(SHAPES) * 3 * 2} cases (float32, float64), {len(failures)} failures")
    for f in failures:
        print("  FAIL", f)
    return failures


def time_call(fn, repeats: int = 10, warmup: int = 3) -> float:
    """Best seconds of one call of ``fn`` after `warmup` calls (CUDA events on CUDA)."""
    for _ in range(warmup):
        fn()
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        if DEVICE == "cpu":
            start_s = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start_s)
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return best


def time_step(fn, n: int, repeats: int) -> float:
    """Best seconds of one forward+backward at size n."""
    x = torch.randn(n, n, device=DEVICE, requires_grad=True)
    w = torch.randn(n, n, device=DEVICE, requires_grad=True)
    b = torch.randn(n, device=DEVICE, requires_grad=True)
    g = torch.randn(n, n, device=DEVICE)

    def step():
        x.grad = w.grad = b.grad = None
        fn(x, w, b).backward(g)

    return time_call(step, repeats)


def check_speed(sizes: list[int]) -> list[dict]:
    """Forward+backward of the cuda backend vs F.linear (cuBLAS, TF32 off)."""
    from gradviz.core import backends

    torch.backends.cuda.matmul.allow_tf32 = False  # full FP32 in cuBLAS: compare like with like
    torch.backends.cudnn.allow_tf32 = False
    ours = backends.get_backend("cuda" if DEVICE == "cuda" else "cpp").fn
    rows = []
    print(f"{'n':>5} {'torch ms':>9} {'ours ms':>9} {'ratio':>6} {'TFLOP/s':>8} {'of peak':>8}")
    for n in sizes:
        repeats = 20 if n <= 2048 else 5
        t_torch = time_step(F.linear, n, repeats)
        t_ours = time_step(ours, n, repeats)
        tflops = 6 * n**3 / t_ours / 1e12
        row = dict(n=n, torch_ms=1e3 * t_torch, cuda_ms=1e3 * t_ours, ratio=t_torch / t_ours,
                   tflops=tflops, peak_fraction=tflops / FP32_PEAK_TFLOPS,
                   torch_tflops=6 * n**3 / t_torch / 1e12)
        rows.append(row)
        print(f"{n:>5} {row['torch_ms']:>9.3f} {row['cuda_ms']:>9.3f} {row['ratio']:>6.2f} "
              f"{tflops:>8.2f} {row['peak_fraction']:>8.1%}", flush=True)
    return rows


def check_products(n: int) -> list[dict]:
    """Each op alone against torch's own product at size n: which of the three GEMMs lags."""
    ops = torch.ops.gradviz
    x, w, g = (torch.randn(n, n, device=DEVICE) for _ in range(3))
    b = torch.randn(n, device=DEVICE)
    pairs = [("forward", lambda: ops.linear(x, w, b), lambda: F.linear(x, w, b), 2 * n**3),
             ("grad_input", lambda: ops.linear_grad_input(g, w), lambda: g @ w, 2 * n**3),
             ("grad_weight", lambda: ops.linear_grad_weight(g, x), lambda: g.t() @ x, 2 * n**3),
             ("grad_bias", lambda: ops.linear_grad_bias(g), lambda: g.sum(0), n**2)]
    rows = []
    print(f"products at n = {n}:")
    for name, ours, theirs, flop in pairs:
        t_ours, t_torch = time_call(ours), time_call(theirs)
        rows.append(dict(product=name, n=n, ours_ms=1e3 * t_ours, torch_ms=1e3 * t_torch,
                         ratio=t_torch / t_ours, tflops=flop / t_ours / 1e12))
        print(f"  {name:<12} ours {1e3 * t_ours:8.3f} ms  torch {1e3 * t_torch:8.3f} ms  "
              f"ratio {t_torch / t_ours:5.2f}  {flop / t_ours / 1e12:6.2f} TFLOP/s", flush=True)
    return rows


_SANITIZED_CHILD = r"""
import torch
from gradviz.core import extension
assert extension.build_state().cuda_ok, extension.build_state().cuda_reason
ops = torch.ops.gradviz
# tiles inside C (the unchecked loop, with K tails), ragged edges, both tile sizes
for M, K, N in [(256, 44, 256), (129, 127, 131), (300, 72, 260), (2048, 24, 2048), (5, 3, 4)]:
    x, w, b, g = (torch.randn(*s, device="cuda") for s in [(M, K), (N, K), (N,), (M, N)])
    ops.linear(x, w, b); ops.linear_grad_input(g, w); ops.linear_grad_weight(g, x)
    ops.linear_grad_bias(g)
torch.cuda.synchronize()
print("sanitized run done")
"""


def run_sanitizer() -> dict:
    """compute-sanitizer memcheck and racecheck over the ops on a few shapes.

    Finds what the host emulation cannot: out-of-bounds or misaligned device accesses and
    shared-memory races (a missing barrier). Reported as ``"not run: ..."`` where the tool is
    absent or cannot attach (as on some sandboxed runtimes); a finding fails the check.
    """
    import shutil
    import subprocess

    tool = shutil.which("compute-sanitizer") or next(
        (p for p in ["/usr/local/cuda/bin/compute-sanitizer",
                     "/usr/local/cuda/compute-sanitizer/compute-sanitizer"] if os.path.exists(p)),
        None)
    if tool is None:
        print("sanitizer: not run: compute-sanitizer not found")
        return {"memcheck": "not run: compute-sanitizer not found"}
    out = {}
    for check in ("memcheck", "racecheck"):
        cmd = [tool, "--tool", check, "--error-exitcode", "99", "--target-processes", "all",
               sys.executable, "-c", _SANITIZED_CHILD]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                                  env=dict(os.environ, PYTHONPATH=os.getcwd()))
        except subprocess.TimeoutExpired:
            out[check] = "not run: timed out after 60 s"
        else:
            text = proc.stdout + proc.stderr
            if proc.returncode == 99:
                out[check] = "FAILED: " + " | ".join(
                    line for line in text.splitlines() if "=========" in line)[:2000]
            elif proc.returncode == 0 and "sanitized run done" in text:
                summary = [line for line in text.splitlines() if "ERROR SUMMARY" in line]
                out[check] = "ok" + (f" ({summary[-1].strip('= ')})" if summary else "")
            else:
                out[check] = f"not run: exit {proc.returncode}: {text.strip().splitlines()[-1:]}"
        print(f"sanitizer {check}: {out[check]}", flush=True)
    return out


def run_cuda_tests() -> int:
    """Run the tests of tests/kernels that have a CUDA variant; return pytest's exit status."""
    import subprocess

    cmd = [sys.executable, "-m", "pytest", "tests/kernels", "-q", "-p", "no:cacheprovider",
           "--durations=8", "--timeout=120", "-k", "cuda and not binding and not emulation and not nvcc"]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, timeout=200).returncode


def main(argv: list[str] | None = None) -> int:
    """Run every check; print a summary; return the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192])
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--no-pytest", action="store_true", help="skip the CUDA tests of tests/kernels")
    p.add_argument("--no-sanitizer", action="store_true",
                   help="skip the compute-sanitizer memcheck and racecheck runs")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cpu: dry-run the script on the cpp backend (tests the script itself)")
    args = p.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cpu":
        print(f"DRY RUN on the cpp backend; torch {torch.__version__}")
    elif not torch.cuda.is_available():
        print("FAIL: no CUDA device")
        return 2
    else:
        print(f"{torch.cuda.get_device_name()}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
          f"python {sys.version.split()[0]}; TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')}")
    result: dict = {"device": DEVICE if DEVICE == "cpu" else torch.cuda.get_device_name(),
                    "torch": torch.__version__, "failed": []}

    def save() -> None:
        # after every stage, so that a run cut short by its time limit still reports
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(result, fh, indent=1)

    def stage(name: str, fn, failed=lambda value: False):
        """Run one check; keep its result; an exception or a failed result fails the run."""
        try:
            result[name] = fn()
        except (Exception, SystemExit) as exc:  # check_build exits when CUDA did not build
            traceback.print_exc()
            result[name] = f"error: {exc}"
            result["failed"].append(name)
        else:
            if failed(result[name]):
                result["failed"].append(name)
        save()
        return name not in result["failed"]

    if stage("build", check_build) and stage("opcheck", lambda: check_opcheck() or "ok"):
        stage("correctness_failures", check_correctness, failed=bool)
        stage("speed", lambda: check_speed(args.sizes))
        stage("products", lambda: check_products(4096 if DEVICE == "cuda" else 256))
        if DEVICE == "cuda" and not args.no_sanitizer:
            stage("sanitizer", run_sanitizer,
                  failed=lambda r: any(v.startswith("FAILED") for v in r.values()))
        if DEVICE == "cuda" and not args.no_pytest:
            stage("pytest_status", run_cuda_tests, failed=bool)
    status = 1 if result["failed"] else 0
    print("PASS" if status == 0 else f"FAIL: {', '.join(result['failed'])}")
    return status

if __name__ == "__main__":
    sys.exit(main())
