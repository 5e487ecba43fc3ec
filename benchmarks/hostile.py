"""Time and memory to refuse each hostile recording (tests/core/hostile.py) with ``gradviz inspect``.

Usage: ``python benchmarks/hostile.py [--out benchmarks/RESULTS_hostile.md]``. Each file is opened by
``gradviz inspect FILE`` in a forked child under RLIMIT_AS 2 GiB (tests/core/capped_cli.py); the table
gives its exit code, wall time and peak resident memory (which includes the ~270 MB of an interpreter
with torch imported). Issue 12's targets: under 5 s and under 500 MB each.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "core"))
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_hostile.md"))
    args = parser.parse_args()
    import hostile

    import gradviz
    from gradviz.core.checks import run_checks
    from gradviz.core.storage import save_recording

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        rec = gradviz.record("mlp")
        base = folder / "base.gradviz"
        save_recording(rec, base, checks=run_checks(rec))
        files = hostile.make_all(folder / "h", hostile.members_of(base))
        runs = [{"argv": ["inspect", str(p)], "cwd": str(folder)} for p in files.values()]
        spec = folder / "runs.json"
        spec.write_text(json.dumps(runs))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, str(ROOT / "tests" / "core" / "capped_cli.py"), str(spec)],
                              capture_output=True, text=True, env=env, check=True)
        results = json.loads(proc.stdout)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = sorted(zip(files, results), key=lambda r: -r[1]["seconds"])
    lines = ["# Refusing hostile recordings", "",
             f"`python benchmarks/hostile.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f} "
             "at the end. `gradviz inspect FILE` per file, forked from an interpreter with torch imported, "
             "under RLIMIT_AS 2 GiB. Targets (issue 12): exit 2, one line, < 5 s, < 500 MB.", "",
             f"Slowest {max(r['seconds'] for r in results):.2f} s; most memory "
             f"{max(r['max_rss_mb'] for r in results):.0f} MB; "
             f"{sum(r['code'] == 2 for r in results)} of {len(results)} exit 2.", "",
             "| file | exit | seconds | peak RSS (MB) | the line |", "|---|---|---|---|---|"]
    for name, r in rows:
        line = r["stderr"].strip().splitlines()[0] if r["stderr"].strip() else ""
        line = line.split(": ", 2)[-1].replace("|", "\\|")[:90]
        lines.append(f"| {name} | {r['code']} | {r['seconds']:.2f} | {r['max_rss_mb']:.0f} | {line} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:8]))


if __name__ == "__main__":
    main()
