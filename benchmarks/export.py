"""Export a 10,000-node graph to SVG and PNG and print the seconds each takes.

The graph: an RNNCell(32, 64) unrolled 1,700 steps on a batch of 8 (about 11,900 nodes), recorded
with keep_values=False. Run: ``python benchmarks/export.py [--out DIR] [--markdown FILE]``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import gradviz  # noqa: E402
from gradviz.core.exporters import export  # noqa: E402

TARGET_SECONDS = 3.0


def build(steps: int = 1700, batch: int = 8):
    torch.manual_seed(0)
    cell = torch.nn.RNNCell(32, 64)
    xs = torch.randn(steps, batch, 32)

    def run():
        h = torch.zeros(batch, 64)
        for t in range(steps):
            h = cell(xs[t], h)
        return h.pow(2).mean(), cell

    return run


def _peak_mib() -> float:
    """The process's peak resident memory so far, in MiB (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:
        return 0.0
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (2**20 if sys.platform == "darwin" else 1024)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1700)
    p.add_argument("--out", default=None, help="folder for the files (default: a temporary one)")
    p.add_argument("--markdown", default=None, help="append the results as a Markdown table to this file")
    p.add_argument("--repeat", type=int, default=1, help="export each format this many times; report the best")
    p.add_argument("--collapse", default=None, help="draw each N module uses as one box (export's collapse=N)")
    p.add_argument("--whole", action="store_true", help="the whole graph legible in one image (export's whole=True)")
    p.add_argument("--formats", default=".svg,.png,.pdf,.gif", help="comma-separated suffixes to export")
    args = p.parse_args(argv)
    import gradviz.qt.export  # noqa: F401 - registers the image formats (also loaded by entry point)

    t = time.perf_counter()
    rec = gradviz.record(build(args.steps), keep_values=False)
    t_record = time.perf_counter() - t
    print(f"{rec.summary()}  (recorded in {t_record:.2f} s)")
    out = Path(args.out or tempfile.mkdtemp(prefix="gradviz-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    wanted = args.formats.split(",")
    for suffix, opts in ((".svg", {}), (".png", {}), (".pdf", {}), (".gif", {"max_frames": 60})):
        if suffix not in wanted:
            continue
        if args.collapse is not None:
            opts = {**opts, "collapse": args.collapse}
        if args.whole:
            opts = {**opts, "whole": True}
        times = []
        for _ in range(max(1, args.repeat)):
            notes = []
            t = time.perf_counter()
            path = export(rec, out / f"rnn{suffix}", phase="end" if suffix != ".gif" else None,
                          progress=lambda f, m: notes.append(m) if f < 0 else None, **opts)
            times.append(time.perf_counter() - t)
        dt = min(times)
        size = path.stat().st_size / 2**20
        ok = "yes" if dt < TARGET_SECONDS else "no"
        runs = "" if len(times) == 1 else "  (runs: " + ", ".join(f"{x:.2f}" for x in times) + ")"
        peak = _peak_mib()
        print(f"{suffix:5s} {dt:6.2f} s  {size:7.2f} MiB  under {TARGET_SECONDS:g} s: {ok}{runs}"
              f"  (peak RSS of the process so far {peak:,.0f} MiB)" +
              "".join(f"\n      note: {n}" for n in notes))
        rows.append((suffix, dt, size, ok if suffix in (".svg", ".png") else "(no target)", "; ".join(notes)))
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as fh:
            fh.write(f"\n### {time.strftime('%Y-%m-%d %H:%M')} · {platform.processor() or platform.machine()} · "
                     f"{os.cpu_count()} CPUs · Python {platform.python_version()} · torch {torch.__version__}\n\n")
            load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
            fh.write(f"{rec.summary()}; recorded in {t_record:.2f} s (keep_values=False); best of "
                     f"{max(1, args.repeat)}; load average at the end {load} (1/5/15 min)\n\n")
            fh.write("| format | seconds | MiB | under 3 s | notes |\n|---|---:|---:|---|---|\n")
            for suffix, dt, size, ok, notes in rows:
                fh.write(f"| {suffix} | {dt:.2f} | {size:.2f} | {ok} | {notes} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
