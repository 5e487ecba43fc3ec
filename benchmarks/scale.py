"""Scale: four families of unrolled graphs at growing sizes up to 200,000 nodes.

For a layer reused k times, an RNN cell unrolled T steps, a ResNet-style stack and a GPT-style stack
(plain torch, small widths so the graph, not the arithmetic, is what grows), each size in a fresh
process, **one torch thread for every tool** (`torch.set_num_threads(1)`, OMP_NUM_THREADS=1):

* nodes, edges;
* the plain forward+backward and `gradviz.record` with values and without, as ratios: best of 3 each,
  taken alternating (plain, no values, values) at the end of the row;
* `Timeline` build, one forward step (`Stepper.next`, median), a random jump (`state_at`, median
  and max of 50);
* peak RSS of the process, and bytes per node: the RSS the recording (with values) and its
  timeline add, and the timeline's own arrays (`Timeline.nbytes`);
* with ``--draw``: layout and first draw in an offscreen Qt view (after Qt's start-up:
  `layered_layout`, `QtGraphView`, show, fit, one paint), a random jump there (`Stepper.set_step` +
  Qt's paint, median of 20), and PNG / SVG / PDF export of the last step (each capped at
  ``--cap`` seconds);
* with ``--tools``: torchviz ``make_dot`` + Graphviz ``dot -Tsvg`` and torchlens (``trace`` +
  ``backward`` + ``draw`` to SVG) on the same graph, each in its own process capped at ``--cap``
  seconds, as ratios to the plain run. A tool that passed the cap at one size is not run at the
  larger sizes of that family.

Each stage prints a JSON line as it ends, so a row that runs past its cap keeps the columns it
finished.

    .venv/bin/python benchmarks/scale.py [--max-nodes 200000] [--families rnn-cell,...] [--draw] [--tools]
        [--sizes 0,1] [--out table.md]

Results and the load they were taken under: the Scale section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import gc
import json
import signal
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# family -> (size parameter, values giving about these numbers of nodes)
APPROX_NODES = [2_000, 12_000, 50_000, 100_000, 200_000]
FAMILIES = {
    "layer-reused": ("k", [700, 4000, 16700, 33300, 66600]),
    "rnn-cell": ("T", [285, 1700, 7140, 14280, 28570]),
    "resnet-stack": ("blocks", [100, 600, 3840, 7690, 15380]),  # 13 nodes a block
    "gpt-stack": ("blocks", [45, 270, 1100, 2200, 3990]),  # 50 nodes a block: 4,400 passed the 200,000 limit
}


def build_fn(family: str, n: int):
    """A build() for `family` at size `n`, in plain torch."""
    import torch
    import torch.nn.functional as F

    def layer_reused():
        torch.manual_seed(0)
        lin = torch.nn.Linear(8, 8)
        h = torch.randn(4, 8)
        for _ in range(n):
            h = torch.tanh(lin(h))
        return h.pow(2).mean(), lin

    def rnn_cell():
        torch.manual_seed(0)
        cell = torch.nn.RNNCell(8, 16)
        xs = torch.randn(n, 4, 8)
        h = torch.zeros(4, 16)
        for t in range(n):
            h = cell(xs[t], h)
        return h.pow(2).mean(), cell

    def resnet_stack():
        torch.manual_seed(0)
        blocks = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.Linear(8, 8),
                                                         torch.nn.ReLU(), torch.nn.Linear(8, 8))
                                     for _ in range(n))
        h = torch.randn(4, 8)
        for b in blocks:
            h = h + b(h)
        return h.pow(2).mean(), blocks

    def gpt_stack():
        torch.manual_seed(0)
        d, t = 8, 4

        class Block(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
                self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
                self.fc1, self.fc2 = torch.nn.Linear(d, 2 * d), torch.nn.Linear(2 * d, d)

            def forward(self, x):
                q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
                att = (q @ k.transpose(-2, -1)) / d ** 0.5
                att = att.masked_fill(mask, -1e4).softmax(-1)  # (a finite mask: gradviz stops at the first Inf)
                x = x + self.proj(att @ v)
                return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
        blocks = torch.nn.ModuleList(Block() for _ in range(n))
        x = torch.randn(2, t, d)
        for b in blocks:
            x = b(x)
        return x.pow(2).mean(), blocks

    return {"layer-reused": layer_reused, "rnn-cell": rnn_cell, "resnet-stack": resnet_stack,
            "gpt-stack": gpt_stack}[family]


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def emit(row: dict) -> None:
    """Print the row so far (the parent keeps the last complete line)."""
    print(json.dumps(row), flush=True)


class Timeout(Exception):
    pass


def capped(seconds: float, fn):
    """Run `fn()`; the seconds it took, or None past `seconds` (checked between Python bytecodes)."""
    def alarm(*_):
        raise Timeout()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(max(1, int(seconds)))
    t = time.perf_counter()
    try:
        fn()
        return time.perf_counter() - t
    except Timeout:
        return None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def plain_run(build) -> None:
    """One plain forward+backward of `build`'s model."""
    loss, _ = build()
    loss.backward()


def plain_time(build) -> float:
    """Best of 3 plain forward+backward runs (after one warm-up run)."""
    plain_run(build)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        plain_run(build)
        times.append(time.perf_counter() - t)
    return min(times)


def measure(family: str, n: int, draw: bool, cap: float) -> None:
    """One configuration, in this process (run by `main` in a fresh process each); prints JSON rows."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, ROOT)
    import gradviz
    from gradviz.core import Stepper, Timeline

    build = build_fn(family, n)
    row = {"family": family, "n": n, "load": os.getloadavg()[0]}
    gradviz.record(build_fn(family, 2))  # one-time costs (imports, first calls) out of the timings
    row["plain_s"] = plain_time(build)
    t = time.perf_counter()
    rec = gradviz.record(build, keep_values=False)
    row["record_novalues_s"] = time.perf_counter() - t
    del rec
    rss0 = rss_mib()
    t = time.perf_counter()
    rec = gradviz.record(build)
    row["record_values_s"] = time.perf_counter() - t
    row["nodes"], row["edges"] = len(rec.nodes), len(rec.edges) + len(rec.input_edges)
    emit(row)
    t = time.perf_counter()
    tl = Timeline(rec)
    row["timeline_s"] = time.perf_counter() - t
    rss1 = rss_mib()
    stepper = Stepper(tl, 0)
    steps = []
    for _ in range(min(200, tl.first_backward - 1)):
        t = time.perf_counter()
        stepper.next()
        steps.append(time.perf_counter() - t)
    rng = random.Random(0)
    jumps = []
    for _ in range(50):
        i = rng.randrange(len(tl))
        t = time.perf_counter()
        tl.state_at(i)
        jumps.append(time.perf_counter() - t)
    row.update({"step_ms": 1000 * statistics.median(steps) if steps else float("nan"),
                "jump_ms": 1000 * statistics.median(jumps), "jump_max_ms": 1000 * max(jumps),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "bytes_per_node": (rss1 - rss0) * 2**20 / row["nodes"],
                "timeline_bytes_per_node": tl.nbytes / row["nodes"], "np": np.__version__})
    emit(row)
    if draw:
        measure_draw(rec, tl, row, cap)
    # the times the ratios use: plain and record runs alternating (plain, no values, values; 3 rounds;
    # best of each), each with no recording alive but its own, so that a drift of the machine's speed
    # during the row (other VMs on the host) moves both alike. The first runs above (plain, then
    # record at this size for the first time) stay in the row if this part does not finish
    del stepper, tl, rec
    times: dict = {"plain_s": [], "record_novalues_s": [], "record_values_s": []}
    for _ in range(3):
        times["plain_s"].append(run_time(lambda: plain_run(build)))
        times["record_novalues_s"].append(run_time(lambda: gradviz.record(build, keep_values=False)))
        times["record_values_s"].append(run_time(lambda: gradviz.record(build)))
    row.update({k: min(v) for k, v in times.items()})
    row["load_end"] = os.getloadavg()[0]
    emit(row)


def run_time(fn) -> float:
    """Seconds of one ``fn()`` run, started with no garbage left of earlier runs (its result freed untimed)."""
    gc.collect()
    t = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t
    del out
    return elapsed


def open_view(rec, stepper, layout):
    """An offscreen 1200 x 800 `QtGraphView` of `rec` laid out as `layout`, shown, fitted and painted once."""
    from PySide6.QtWidgets import QApplication

    from gradviz.qt.graph_view import QtGraphView

    view = QtGraphView(rec, stepper, precomputed=layout)
    view.resize(1200, 800)
    view.show()
    QApplication.processEvents()
    view.fit()
    view.viewport().repaint()
    QApplication.processEvents()
    return view


def view_jumps(stepper, seed: int, count: int = 20) -> list[float]:
    """Seconds of `count` jumps of `stepper` to random steps (seeded), each with Qt's repaint of the view."""
    from PySide6.QtWidgets import QApplication

    rng, out = random.Random(seed), []
    for _ in range(count):
        i = rng.randrange(len(stepper))
        t = time.perf_counter()
        stepper.set_step(i)
        QApplication.processEvents()
        out.append(time.perf_counter() - t)
    return out


def measure_draw(rec, tl, row: dict, cap: float) -> None:
    """Layout + first draw offscreen, a random jump in the view, PNG/SVG/PDF export (into `row`)."""
    import tempfile

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    import gradviz.qt.export  # noqa: F401 - registers the image formats
    from gradviz.core import Stepper
    from gradviz.core.exporters import export
    from gradviz.core.layout import layered_layout
    from gradviz.qt.app import _app
    from gradviz.qt.graph_view import QtGraphView

    _app()  # Qt's start-up is not part of the draw
    QtGraphView().deleteLater()
    QApplication.processEvents()
    stepper = Stepper(tl)
    view = None

    def layout_and_draw():
        nonlocal view
        view = open_view(rec, stepper, layered_layout(rec))

    row["draw_s"] = capped(cap, layout_and_draw)
    emit(row)
    if view is not None:
        jumps = view_jumps(stepper, 1)
        row["view_jump_ms"] = 1000 * statistics.median(jumps)
        row["view_jump_max_ms"] = 1000 * max(jumps)
        view.close()
        emit(row)
    with tempfile.TemporaryDirectory() as d:
        for suffix in (".png", ".svg", ".pdf"):
            row[f"export{suffix}_s"] = capped(cap, lambda: export(rec, os.path.join(d, "g" + suffix), phase="end"))
            emit(row)


def measure_tool(tool: str, family: str, n: int, cap: float) -> None:
    """torchviz (make_dot, then dot -Tsvg) or torchlens (trace, backward, draw) on the graph; JSON rows."""
    import tempfile

    import torch

    torch.set_num_threads(1)
    build = build_fn(family, n)
    row = {"tool": tool, "plain_s": plain_time(build)}
    emit(row)
    if tool == "torchviz":
        import torchviz

        sys.setrecursionlimit(1_000_000)  # torchviz walks the graph recursively
        import threading

        threading.stack_size(512 * 2**20)  # (and deep recursion needs a deep C stack: run it in a thread)
        out: dict = {}

        def run():
            loss, module = build()
            t = time.perf_counter()
            g = torchviz.make_dot(loss, params=dict(module.named_parameters()))
            out["make_dot_s"] = time.perf_counter() - t
            out["source"] = g.source

        th = threading.Thread(target=run)
        th.start()
        th.join()
        row["make_dot_s"] = out.get("make_dot_s")
        emit(row)
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "g.dot")
            with open(src, "w") as f:
                f.write(out["source"])
            t = time.perf_counter()
            try:
                subprocess.run(["dot", "-Tsvg", src, "-o", os.path.join(d, "g.svg")], check=True,
                               timeout=cap, capture_output=True)
                row["dot_s"] = time.perf_counter() - t
            except subprocess.TimeoutExpired:
                row["dot_s"] = None
                row["dot_note"] = f"over {cap:.0f} s"
        emit(row)
        return
    import warnings

    import torchlens

    warnings.simplefilter("ignore")  # (torchlens warns about tensors made outside a module)

    class Whole(torch.nn.Module):
        """The build as one module (torchlens traces a module's forward)."""

        def forward(self, x):
            loss, module = build()
            self.inner = module
            return loss + 0 * x.sum()

    with tempfile.TemporaryDirectory() as d:
        def run():
            t = time.perf_counter()
            tr = torchlens.trace(Whole(), torch.zeros(1))
            row["trace_s"] = time.perf_counter() - t
            emit(row)
            loss = tr[tr.output_layers[0]].out  # (the traced loss, with its graph)
            if loss is not None and loss.requires_grad:
                t = time.perf_counter()
                tr.backward(loss)
                row["backward_s"] = time.perf_counter() - t
                emit(row)
            t = time.perf_counter()
            tr.draw(vis_outpath=os.path.join(d, "g"), vis_fileformat="svg", vis_save_only=True)
            row["draw_s"] = time.perf_counter() - t

        row["total_s"] = capped(cap, run)
        emit(row)


def machine() -> str:
    import torch

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0]
    return (f"{os.cpu_count()} cores, {cpu}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"1 torch thread for every tool; load average {load:.1f} at the start")


def last_row(cmd: list[str], timeout: float) -> tuple[dict | None, str]:
    """Run a child; its last JSON row (None if none) and a note when it failed or ran past `timeout`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        stdout, note = out.stdout, "" if out.returncode == 0 else f"exit {out.returncode}: {out.stderr[-300:]}"
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        note = f"stopped after {timeout:.0f} s"
    rows = [line for line in stdout.splitlines() if line.startswith("{")]
    return (json.loads(rows[-1]) if rows else None), note


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-nodes", type=int, default=200_000)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--sizes", default=None, help="indices into the sizes (0: ~2k nodes ... 4: ~200k)")
    ap.add_argument("--draw", action="store_true", help="layout + first draw, view jump, PNG/SVG/PDF export")
    ap.add_argument("--tools", action="store_true", help="torchviz + dot and torchlens, as ratios")
    ap.add_argument("--cap", type=float, default=120.0, help="seconds for each export and each tool")
    ap.add_argument("--row-timeout", type=float, default=1800.0, help="seconds for one row's gradviz part")
    ap.add_argument("--out", default=None, help="append the Markdown table here")
    ap.add_argument("--one", nargs=2, metavar=("FAMILY", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--tool", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        if args.tool:
            measure_tool(args.tool, args.one[0], int(args.one[1]), args.cap)
        else:
            measure(args.one[0], int(args.one[1]), args.draw, args.cap)
        return
    head = machine()
    print(head, flush=True)
    wanted = None if args.sizes is None else {int(i) for i in args.sizes.split(",")}
    rows = []
    for family in args.families.split(","):
        key, sizes = FAMILIES[family]
        over_cap: set = set()  # tools that passed the cap at a smaller size
        for i, (n, approx) in enumerate(zip(sizes, APPROX_NODES)):
            if approx > args.max_nodes:
                break
            if wanted is not None and i not in wanted:
                continue
            cmd = [sys.executable, __file__, "--one", family, str(n)]
            r, note = last_row(cmd + (["--draw"] if args.draw else []) + ["--cap", str(args.cap)],
                               args.row_timeout)
            if r is None:
                r = {"family": family, "n": n, "failed": note}
            r["key"], r["note"] = key, note
            if args.tools:
                for tool in ("torchviz", "torchlens"):
                    if tool in over_cap:
                        r[tool] = {"skipped": True}
                        continue
                    t, tnote = last_row(cmd + ["--tool", tool, "--cap", str(args.cap)], 3 * args.cap + 300)
                    t = t or {}
                    t["note"] = tnote
                    r[tool] = t
                    if tnote or t.get("dot_s", 0) is None or t.get("total_s", 0) is None:
                        over_cap.add(tool)
            rows.append(r)
            print(_row(r), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(f"\n`benchmarks/scale.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {head}.\n\n")
            f.write(HEADER + "\n")
            f.write("|" + "---|" * (HEADER.count("|") - 1) + "\n")
            for r in rows:
                f.write(_row(r) + "\n")


HEADER = ("| family | size | nodes | edges | load | plain fwd+bwd (s) | record, values (s, x plain) | "
          "record, no values (s, x plain) | timeline build (s) | forward step (ms) | jump median / max (ms) | "
          "peak RSS (MiB) | bytes/node (recording + timeline RSS) | timeline bytes/node | "
          "layout + first draw (s) | view jump median / max (ms) | PNG / SVG / PDF (s) | "
          "torchviz make_dot + dot -Tsvg (s, x plain) | torchlens trace + backward + draw (s, x plain) |")


def _s(v, fmt="{:.2f}", none="-") -> str:
    return none if v is None else fmt.format(v)


def _tool(t: dict | None, plain: float, kind: str) -> str:
    if not t:
        return "not run"
    if t.get("skipped"):
        return "not run (over the cap at a smaller size)"
    if kind == "torchviz":
        md, dot = t.get("make_dot_s"), t.get("dot_s")
        if md is None:
            return "failed" + (f" ({t['note'][:60]})" if t.get("note") else "")
        if dot is None:
            return f"{md:.2f} + dot over the cap ({md / plain:.1f}x + ...)"
        return f"{md:.2f} + {dot:.2f} ({(md + dot) / plain:.0f}x)"
    total = t.get("total_s")
    if total is None:
        done = ", ".join(f"{k[:-2]} {t[k]:.1f} s" for k in ("trace_s", "backward_s") if t.get(k) is not None)
        return "over the cap" + (f" ({done})" if done else "") + (f" ({t['note'][:60]})" if t.get("note") else "")
    back = "" if t.get("backward_s") is not None else ", no backward"
    return f"{total:.2f} ({total / plain:.0f}x{back})"


def _row(r: dict) -> str:
    if "failed" in r:
        return f"| {r['family']} | {r['key']}={r['n']:,} | failed: {r['failed'][:80]} |" + " |" * 16
    p = r["plain_s"]
    cols = [r["family"], f"{r['key']}={r['n']:,}", f"{r['nodes']:,}", f"{r['edges']:,}",
            f"{r['load']:.1f}-{r.get('load_end', r['load']):.1f}", f"{p:.3f}",
            f"{r['record_values_s']:.2f} ({r['record_values_s'] / p:.1f}x)",
            f"{r['record_novalues_s']:.2f} ({r['record_novalues_s'] / p:.1f}x)"]
    if "timeline_s" in r:
        cols += [f"{r['timeline_s']:.2f}", f"{r['step_ms']:.3f}", f"{r['jump_ms']:.2f} / {r['jump_max_ms']:.1f}",
                 f"{r['peak_rss_mib']:.0f}", f"{r['bytes_per_node']:,.0f}", f"{r['timeline_bytes_per_node']:.0f}"]
    else:
        cols += ["-"] * 6
    if "draw_s" in r:
        cols.append(_s(r["draw_s"], none="over the cap"))
        cols.append(f"{r['view_jump_ms']:.1f} / {r['view_jump_max_ms']:.0f}" if "view_jump_ms" in r else "-")
        cols.append(" / ".join(_s(r.get(f"export{x}_s"), none="over the cap" if f"export{x}_s" in r else "-")
                               for x in (".png", ".svg", ".pdf")))
    else:
        cols += ["-"] * 3
    cols.append(_tool(r.get("torchviz"), p, "torchviz"))
    cols.append(_tool(r.get("torchlens"), p, "torchlens"))
    if r.get("note"):
        cols[-1] += f" (row: {r['note'][:60]})"
    return "| " + " | ".join(cols) + " |"


if __name__ == "__main__":
    main()
