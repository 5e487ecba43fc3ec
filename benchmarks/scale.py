"""Scale: four families of unrolled graphs at growing sizes up to 200,000 nodes.

For a layer reused k times, an RNN cell unrolled T steps, a ResNet-style stack and a GPT-style stack
(plain torch, small widths so the graph, not the arithmetic, is what grows), each size in a fresh
process with one torch thread:

* nodes, edges;
* the plain forward+backward (best of 3) and `gradviz.record` with values and without, as ratios;
* `Timeline` build, one forward step (`Stepper.next`, median), a random jump (`state_at`, median
  and max of 50);
* peak RSS of the process, and bytes per node: the RSS the recording (with values) and its
  timeline add, and the timeline's own arrays (`Timeline.nbytes`).

Drawing, export, torchviz and torchlens columns belong to the Scene work and are not measured here.

    .venv/bin/python benchmarks/scale.py [--max-nodes 200000] [--families rnn-cell,...] [--out table.md]

Results and the load they were taken under: the Scale section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
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
    "resnet-stack": ("blocks", [100, 600, 2500, 5000, 10000]),
    "gpt-stack": ("blocks", [45, 270, 1100, 2200, 4400]),
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


def measure(family: str, n: int) -> dict:
    """One configuration, in this process (run by `main` in a fresh process each)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, ROOT)
    import gradviz
    from gradviz.core import Stepper, Timeline

    build = build_fn(family, n)

    def plain():
        loss, _ = build()
        loss.backward()

    gradviz.record(build_fn(family, 2))  # one-time costs (imports, first calls) out of the timings
    plain()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        plain()
        times.append(time.perf_counter() - t)
    t_plain = min(times)
    t = time.perf_counter()
    rec = gradviz.record(build, keep_values=False)
    t_novalues = time.perf_counter() - t
    del rec
    rss0 = rss_mib()
    t = time.perf_counter()
    rec = gradviz.record(build)
    t_values = time.perf_counter() - t
    nodes, edges = len(rec.nodes), len(rec.edges) + len(rec.input_edges)
    t = time.perf_counter()
    tl = Timeline(rec)
    t_timeline = time.perf_counter() - t
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
    return {"family": family, "n": n, "nodes": nodes, "edges": edges, "plain_s": t_plain,
            "record_values_s": t_values, "record_novalues_s": t_novalues, "timeline_s": t_timeline,
            "step_ms": 1000 * statistics.median(steps) if steps else float("nan"),
            "jump_ms": 1000 * statistics.median(jumps), "jump_max_ms": 1000 * max(jumps),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "bytes_per_node": (rss1 - rss0) * 2**20 / nodes, "timeline_bytes_per_node": tl.nbytes / nodes,
            "checkpoint_mib": tl.checkpoint_bytes / 2**20, "steps": len(tl), "np": np.__version__}


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
            f"1 torch thread; load average {load:.1f} at the start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-nodes", type=int, default=200_000)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--out", default=None, help="write the Markdown table here")
    ap.add_argument("--one", nargs=2, metavar=("FAMILY", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return
    head = machine()
    print(head, flush=True)
    rows = []
    for family in args.families.split(","):
        key, sizes = FAMILIES[family]
        for n, approx in zip(sizes, APPROX_NODES):
            if approx > args.max_nodes:
                break
            out = subprocess.run([sys.executable, __file__, "--one", family, str(n)], capture_output=True,
                                 text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if out.returncode != 0:
                print(f"{family} {key}={n}: failed, rc {out.returncode}: {out.stderr[-500:]}", flush=True)
                rows.append({"family": family, "n": n, "failed": out.returncode})
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["key"] = key
            rows.append(r)
            print(_row(r), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# Scale (`benchmarks/scale.py`)\n\n")
            f.write(f"One run, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {head}.\n\n")
            f.write(HEADER + "\n")
            f.write("|" + "---|" * (HEADER.count("|") - 1) + "\n")
            for r in rows:
                f.write(_row(r) + "\n")


HEADER = ("| family | size | nodes | edges | plain fwd+bwd (s) | record, values (s, x plain) | "
          "record, no values (s, x plain) | timeline build (s) | forward step (ms) | jump median / max (ms) | "
          "peak RSS (MiB) | bytes/node (recording + timeline RSS) | timeline bytes/node |")


def _row(r: dict) -> str:
    if "failed" in r:
        return f"| {r['family']} | {r['n']} | failed (rc {r['failed']}) |" + " |" * 10
    p = r["plain_s"]
    return (f"| {r['family']} | {r['key']}={r['n']:,} | {r['nodes']:,} | {r['edges']:,} | {p:.3f} | "
            f"{r['record_values_s']:.2f} ({r['record_values_s'] / p:.1f}x) | "
            f"{r['record_novalues_s']:.2f} ({r['record_novalues_s'] / p:.1f}x) | {r['timeline_s']:.2f} | "
            f"{r['step_ms']:.3f} | {r['jump_ms']:.2f} / {r['jump_max_ms']:.1f} | {r['peak_rss_mib']:.0f} | "
            f"{r['bytes_per_node']:,.0f} | {r['timeline_bytes_per_node']:.0f} |")


if __name__ == "__main__":
    main()
