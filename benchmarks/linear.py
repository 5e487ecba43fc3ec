"""Time forward+backward of every available linear backend against torch's own ``F.linear``.

For each square size n (batch = in_features = out_features = n) one step is
``y = fn(x, w, b); y.backward(g)`` with x, w, b requiring grad: three n x n x n products, so
6 n^3 floating-point operations. The table gives the best time of `--repeats` steps (after
warm-up), GFLOP/s, and the ratio torch_time / backend_time (above 1: faster than torch).

Run from the repository root::

    PYTHONPATH=. python benchmarks/linear.py                       # CPU, 256..2048
    PYTHONPATH=. python benchmarks/linear.py --device cuda          # CUDA, 256..8192
    PYTHONPATH=. python benchmarks/linear.py --dtype float64 --markdown
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

from gradviz.core import backends

DEFAULT_SIZES = {"cpu": [256, 512, 1024, 2048], "cuda": [256, 512, 1024, 2048, 4096, 8192]}


def machine_name(device: str) -> str:
    """One line naming the processor (CPU model and core count, or the GPU)."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                     if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def make_step(fn, n: int, dtype: torch.dtype, device: str):
    """A closure doing one forward+backward of `fn` at size n on fresh random leaves."""
    gen = torch.Generator(device="cpu").manual_seed(n)

    def leaf(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype).to(device).requires_grad_()

    x, w, b = leaf(n, n), leaf(n, n), leaf(n)
    g = torch.randn(n, n, generator=gen, dtype=dtype).to(device)

    def step():
        x.grad = w.grad = b.grad = None
        fn(x, w, b).backward(g)

    return step


def run(device: str, dtype: torch.dtype, sizes: list[int], repeats: int) -> list[dict]:
    """Benchmark every available backend of `device` against ``F.linear``; return the rows.

    The backends take turns step by step, so a burst of load from elsewhere on the machine
    slows all of them alike rather than one of them; the best time of each is kept.
    """
    compiled = "cuda" if device == "cuda" else "cpp"
    fns = {"F.linear": F.linear}
    for name in ("torch", compiled):
        info = backends.get_backend(name)
        if info.available:
            fns[name] = info.fn
        else:
            print(f"# {name}: not available ({info.reason})")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for n in sizes:
        steps = {name: make_step(fn, n, dtype, device) for name, fn in fns.items()}
        times: dict[str, list[float]] = {name: [] for name in fns}
        for name, step in steps.items():  # warm-up: caches, thread pools, allocator
            step()
            step()
        sync()
        for _ in range(repeats):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                sync()
                times[name].append(time.perf_counter() - start)
        best = {name: min(ts) for name, ts in times.items()}
        for name, ts in times.items():
            rows.append(dict(size=n, backend=name, ms=1e3 * best[name],
                             median_ms=1e3 * statistics.median(ts),
                             gflops=6 * n**3 / best[name] / 1e9,
                             ratio=best["F.linear"] / best[name]))
    return rows


def format_rows(rows: list[dict], markdown: bool) -> str:
    """The rows as a plain or markdown table."""
    head = ["size", "backend", "best ms", "median ms", "GFLOP/s", "ratio vs F.linear"]
    body = [[str(r["size"]), r["backend"], f"{r['ms']:.2f}", f"{r['median_ms']:.2f}",
             f"{r['gflops']:.1f}", f"{r['ratio']:.2f}"] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(x.rjust(w) for x, w in zip(r, widths)) for r in [head, *body])


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--sizes", type=int, nargs="+")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU); default: torch's")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # compare like with like: full FP32
    dtype = getattr(torch, args.dtype)
    sizes = args.sizes or DEFAULT_SIZES[args.device]
    print(f"# {machine_name(args.device)}; torch {torch.__version__}; {args.dtype}; "
          f"forward+backward, best of {args.repeats}")
    if args.device == "cpu" and backends.get_backend("cpp").available:
        print(f"# cpp micro-kernel: {torch.ops.gradviz.cpu_isa()}")
    print(format_rows(run(args.device, dtype, sizes, args.repeats), args.markdown))


if __name__ == "__main__":
    main()
