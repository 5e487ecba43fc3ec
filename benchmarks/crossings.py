"""Edge crossings: gradviz's layered layout against Graphviz `dot` on small graphs `dot` finishes.

For the built-in models and the scale families of `benchmarks/scale.py` at small sizes, on the same
model (one torch thread):

* **gradviz**: `gradviz.record`, then `layered_layout` as the app draws it by default (proxies of
  shared parameters, fold "auto") and without proxies; the crossings of the segments the Scene paints
  (`gradviz.core.edges.edge_segments`: routed polylines, long unrouted edges as two stubs) and of
  straight centre-to-centre lines;
* **dot on torchviz's DOT**: torchviz `make_dot(loss, params=...)` (torchviz's own node set:
  AccumulateGrad and parameter boxes, no saved-tensor boxes here), laid out by `dot -Tplain`
  (capped); crossings of its drawn edges (each B-spline sampled into 8 straight pieces per cubic)
  and of straight centre-to-centre lines, and dot's time;
* **dot on gradviz's DOT**: gradviz's own `.dot` export of the same recording (the same nodes and
  edges as gradviz's layout without proxies), laid out by `dot -Tplain`: the like-for-like
  comparison of the two layout engines.

Crossings are counted by `gradviz.core.crossings.count_crossings` (proper crossings of segments of
different edges; touching and overlapping segments do not count).

    .venv/bin/python benchmarks/crossings.py [--cap 120] [--only rnn-cell] [--out table.md]

Results: the "Edge crossings" subsection of the Scale section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from scale import build_fn  # noqa: E402

from gradviz.core.crossings import count_crossings, straight_segments  # noqa: E402

# (label, built-in name and params) or (label, scale family and size)
CASES = [
    ("sum-xy-plus-z", "builtin", "sum-xy-plus-z", {}),
    ("linear-function", "builtin", "linear-function", {}),
    ("repeated-layer", "builtin", "repeated-layer", {}),
    ("repeated-layer k=6 n=3 tanh", "builtin", "repeated-layer", {"k": 6, "n": 3, "tanh": True}),
    ("rnn-unrolled T=5", "builtin", "rnn-unrolled", {"T": 5}),
    ("rnn-unrolled T=20", "builtin", "rnn-unrolled", {"T": 20}),
    ("mlp", "builtin", "mlp", {}),
    ("layer-reused k=10", "family", "layer-reused", 10),
    ("layer-reused k=40", "family", "layer-reused", 40),
    ("rnn-cell T=10", "family", "rnn-cell", 10),
    ("rnn-cell T=30", "family", "rnn-cell", 30),
    ("rnn-cell T=50", "family", "rnn-cell", 50),
    ("resnet-stack blocks=3", "family", "resnet-stack", 3),
    ("resnet-stack blocks=10", "family", "resnet-stack", 10),
    ("gpt-stack blocks=1", "family", "gpt-stack", 1),
    ("gpt-stack blocks=3", "family", "gpt-stack", 3),
]
SAMPLES = 8  # straight pieces per cubic Bezier of a dot spline


def make(kind: str, name: str, arg):
    """A fresh (loss, params for make_dot) builder and the target `gradviz.record` takes."""
    if kind == "builtin":
        from gradviz.core.models import MODELS

        spec = MODELS[name]
        params = spec.resolve_params(arg)

        def build():
            br = spec.build(**params)
            if br.module is not None:
                named = dict(br.module.named_parameters())
            else:
                named = {k: t for k, t in br.leaves.items() if getattr(t, "requires_grad", False)}
            return br.loss, named

        return build, (name, arg)
    fn = build_fn(name, arg)

    def build():
        loss, module = fn()
        return loss, dict(module.named_parameters())

    return build, (fn, None)


def bezier_polyline(points: np.ndarray) -> np.ndarray:
    """A dot B-spline (1 + 3k control points: k cubic Beziers) sampled as a polyline."""
    k = (len(points) - 1) // 3
    if k < 1:
        return points
    t = np.linspace(0.0, 1.0, SAMPLES + 1)[:, None]
    out = [points[:1]]
    for i in range(k):
        p0, p1, p2, p3 = points[3 * i:3 * i + 4]
        c = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3
        out.append(c[1:])
    return np.concatenate(out)


def dot_layout(source: str, cap: float) -> dict:
    """Lay out DOT `source` with `dot -Tplain` (capped); nodes, edges, crossings, seconds."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "g.dot")
        with open(src, "w") as f:
            f.write(source)
        t = time.perf_counter()
        try:
            out = subprocess.run(["dot", "-Tplain", src], check=True, timeout=cap, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return {"dot_s": None, "note": f"over {cap:.0f} s"}
        secs = time.perf_counter() - t
    pos: dict = {}
    edges: list = []
    for line in out.stdout.splitlines():
        tok = line.split()
        if tok and tok[0] == "node":
            pos[tok[1]] = (float(tok[2]), float(tok[3]))
        elif tok and tok[0] == "edge":
            n = int(tok[3])
            pts = np.array([float(x) for x in tok[4:4 + 2 * n]]).reshape(n, 2)
            edges.append((tok[1], tok[2], pts))
    starts, ends, owner = [], [], []
    for row, (_s, _d, pts) in enumerate(edges):
        line = bezier_polyline(pts)
        starts.append(line[:-1])
        ends.append(line[1:])
        owner.append(np.full(len(line) - 1, row))
    names = {k: i for i, k in enumerate(pos)}
    centre = np.array(list(pos.values())).reshape(-1, 2)
    adj = np.array([(names[s], names[d]) for s, d, _ in edges], dtype=np.int64).reshape(-1, 2)
    drawn = count_crossings(np.concatenate(starts), np.concatenate(ends), np.concatenate(owner)) if edges else 0
    return {"dot_s": secs, "nodes": len(pos), "edges": len(edges), "drawn": drawn,
            "straight": count_crossings(*straight_segments(centre, adj))}


def gradviz_layout(rec, proxies: bool) -> dict:
    """gradviz's layout as the app draws it: nodes, edges, crossings drawn and straight, seconds."""
    from gradviz.core.edges import edge_segments
    from gradviz.core.layout import layered_layout

    t = time.perf_counter()
    lay = layered_layout(rec, proxies=proxies)
    secs = time.perf_counter() - t
    a, b, owner = edge_segments(lay)
    return {"layout_s": secs, "nodes": len(lay), "edges": len(lay.adj), "drawn": count_crossings(a, b, owner),
            "straight": count_crossings(*straight_segments(lay.pos, lay.adj)),
            "folded": lay.fold is not None}


def measure(label: str, kind: str, name: str, arg, cap: float) -> dict:
    """One case: gradviz (with and without proxies), dot on torchviz's DOT, dot on gradviz's DOT."""
    import threading

    import torch
    import torchviz

    import gradviz
    from gradviz.core.exporters import export

    torch.set_num_threads(1)
    build, (target, params) = make(kind, name, arg)
    row: dict = {"model": label, "load": os.getloadavg()[0]}
    rec = gradviz.record(target, params=params) if params is not None else gradviz.record(target)
    row["gradviz"] = gradviz_layout(rec, proxies=True)
    row["gradviz_noproxies"] = gradviz_layout(rec, proxies=False)
    out: dict = {}

    def run():  # torchviz walks the graph recursively: a deep stack
        loss, named = build()
        out["source"] = torchviz.make_dot(loss, params=named).source

    threading.stack_size(256 * 2**20)
    if cap <= 0:  # gradviz only
        return row
    th = threading.Thread(target=run)
    th.start()
    th.join()
    row["dot_torchviz"] = dot_layout(out["source"], cap)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "g.dot")
        export(rec, path, phase="end")
        with open(path) as f:
            source = f.read()
    row["dot_gradviz"] = dot_layout(source, cap)
    row["load_end"] = os.getloadavg()[0]
    return row


HEADER = ("| model | load | gradviz nodes / edges | gradviz crossings drawn (straight) | "
          "gradviz, no proxies: nodes / edges, crossings drawn (straight) | "
          "dot on torchviz's DOT: nodes / edges | its crossings drawn (straight) | dot time (s) | "
          "dot on gradviz's DOT: nodes / edges, crossings drawn (straight), time (s) |")


def _row(r: dict) -> str:
    g, n, t, d = r["gradviz"], r["gradviz_noproxies"], r["dot_torchviz"], r["dot_gradviz"]

    def dot_cols(x):
        if x.get("dot_s") is None:
            return ["-", "-", x.get("note", "failed")]
        return [f"{x['nodes']} / {x['edges']}", f"{x['drawn']:,} ({x['straight']:,})", f"{x['dot_s']:.2f}"]

    fold = " (folded)" if g["folded"] else ""
    cols = [r["model"], f"{r['load']:.1f}-{r['load_end']:.1f}", f"{g['nodes']} / {g['edges']}",
            f"{g['drawn']:,} ({g['straight']:,}){fold}",
            f"{n['nodes']} / {n['edges']}, {n['drawn']:,} ({n['straight']:,})"]
    cols += dot_cols(t)
    dg = dot_cols(d)
    cols.append(f"{dg[0]}, {dg[1]}, {dg[2]}" if d.get("dot_s") is not None else dg[2])
    return "| " + " | ".join(cols) + " |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cap", type=float, default=120.0, help="seconds for each dot run (0: gradviz only, printed as JSON)")
    ap.add_argument("--only", default=None, help="run only the cases whose label contains this")
    ap.add_argument("--out", default=None, help="append the Markdown table here")
    args = ap.parse_args()
    rows = []
    head = f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f} at the start"
    print(head, flush=True)
    for label, kind, name, arg in CASES:
        if args.only and args.only not in label:
            continue
        r = measure(label, kind, name, arg, args.cap)
        print(json.dumps(r), flush=True)
        rows.append(r)
    if args.cap <= 0:
        return
    lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)] + [_row(r) for r in rows]
    print("\n".join(lines), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(f"\n`benchmarks/crossings.py --cap {args.cap:.0f}`, {head}.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
