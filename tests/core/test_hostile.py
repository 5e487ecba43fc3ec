"""Hostile and damaged recordings through every command that opens a file, under a memory and time cap.

Every file that tests/core/hostile.py makes must be refused by every command with exit code 2 and
exactly one line on stderr, ``error: cannot open FILE: what is wrong (where)``: no traceback,
nothing on stdout, no file written, the process's peak memory under 500 MB. (The commands run in
forked children under RLIMIT_AS and an alarm: see capped_cli.py. Their times go to
benchmarks/hostile.py, not into assertions.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gradviz
from gradviz.core.errors import GradvizError
from gradviz.core.checks import run_checks
from gradviz.core.storage import load_recording, save_recording

import hostile

HERE = Path(__file__).parent
MAX_RSS_MB = 500

# what the one line must name, for the kinds where the cause is unambiguous
EXPECT = {
    "understated-json": ["recording.json", "declares"],
    "understated-array": ["arrays/float32.npy", "declares"],
    "huge-json-allowed-ratio": ["recording.json", "MiB"],
    "sparse-2gb-member": ["arrays/float64.npy"],
    "300000-members": ["300000 members"],
    "symlink-dev-zero": ["not a regular file"],
    "symlink-dev-urandom": ["not a regular file"],
    "fifo": ["not a regular file"],
    "folder": ["folder"],
    "missing": ["no such file"],
    "dangling-symlink": ["no such file"],
    "empty": ["empty"],
    "producer-999": ["producer", "999"],
    "contribution-event-999": ["backward_event", "999"],
    "contribution-slot-minus-5": ["slot", "-5"],
    "root-999": ["root", "999"],
    "forward-node-999": ["forward[0].node", "999"],
    "forward-input-node-999": ["forward[0].input_nodes", "999"],
    "node-forward-event-999": ["nodes[1].forward_event", "999"],
    "edge-slot-minus-5": ["edges[0]", "-5"],
    "edge-node-999": ["edges[0]", "999"],
    "input-edge-node-999": ["input_edges[0]", "999"],
    "backward-node-999": ["backward[0].node", "999"],
    "leaf-node-999": ["leaves[0].node", "999"],
    "tensor-ref-999": ["forward[0].inputs[0]", "999"],
    "tensor-ref-minus-1": ["loss", "-1"],
    "check-node-999": ["checks[0].node", "999"],
    "self-loop": ["cycle"],
    "cycle": ["cycle"],
    "infinity-root": ["Infinity"],
    "1e999-use": ["use", "integer"],
    "nan-slot": ["NaN"],
    "check-max-abs-zzz": ["max_abs", "zzz"],
    "string-root": ["root", "integer"],
    "float-index": ["forward[0].index", "integer"],
    "bool-node": ["forward[0].node", "integer"],
    "flipped-byte-array": ["arrays/float32.npy"],
    "flipped-byte-json": ["recording.json"],
    "newer-version": ["newer gradviz"],
    "deep-nesting": ["nested"],
    "array-unreferenced-tail": ["arrays/float32.npy"],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("base") / "mlp.gradviz"
    rec = gradviz.record("mlp")
    save_recording(rec, base, checks=run_checks(rec))
    folder = tmp_path_factory.mktemp("hostile")
    return hostile.make_all(folder, hostile.members_of(base))


COMMANDS = {
    "inspect": lambda f, out: ["inspect", f],
    "inspect-json": lambda f, out: ["inspect", f, "--json"],
    "check": lambda f, out: ["check", f],
    "steps": lambda f, out: ["steps", f],
    "export-json": lambda f, out: ["export", f, "-o", str(out / "g.json")],
    "export-png": lambda f, out: ["export", f, "-o", str(out / "g.png")],
    "record": lambda f, out: ["record", f, "-o", str(out / "again.gradviz")],
}


@pytest.fixture(scope="module")
def results(files, tmp_path_factory) -> dict[tuple[str, str], dict]:
    """Every hostile file through every command, once (one interpreter, one fork per command)."""
    out = tmp_path_factory.mktemp("out")
    runs, keys = [], []
    for name, path in files.items():
        for cmd, argv in COMMANDS.items():
            runs.append({"argv": argv(str(path), out), "cwd": str(out)})
            keys.append((name, cmd))
    spec = out.parent / "runs.json"
    spec.write_text(json.dumps(runs))
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent), "QT_QPA_PLATFORM": "offscreen"}
    env.pop("GRADVIZ_DEBUG", None)
    proc = subprocess.run([sys.executable, str(HERE / "capped_cli.py"), str(spec)], capture_output=True,
                          text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = dict(zip(keys, json.loads(proc.stdout)))
    assert sorted(os.listdir(out)) == [], "a refused file must write nothing"
    return got


@pytest.mark.parametrize("name", sorted(hostile.KINDS))
def test_every_command_refuses_in_one_line(results, files, name):
    path = str(files[name])
    for cmd in COMMANDS:
        r = results[(name, cmd)]
        where = f"{name} through {cmd}: rc {r['code']}\nstdout: {r['stdout'][:500]}\nstderr: {r['stderr'][-2000:]}"
        lines = [ln for ln in r["stderr"].splitlines() if ln.strip()]
        assert r["code"] == 2, where
        assert r["stdout"] == "", where
        assert len(lines) == 1, where
        assert "Traceback" not in r["stderr"], where
        line = lines[0]
        assert line.startswith(f"error: cannot open {path!r}: "), where
        for word in EXPECT.get(name, []):
            assert word in line, f"{word!r} missing: {where}"
        assert r["max_rss_mb"] < MAX_RSS_MB, where


def test_the_limits_are_the_same_in_process(files):
    # the library call refuses the same way (a GradvizError with the same one line), for the API user
    for name, path in files.items():
        with pytest.raises(GradvizError) as err:
            load_recording(path)
        assert err.value.format().count("\n") == 0, (name, err.value.format())


def test_a_valid_file_still_opens_through_every_command(tmp_path):
    # the control: the same driver and caps accept a good recording
    good = tmp_path / "good.gradviz"
    gradviz.record("mlp").save(good)
    spec = tmp_path / "runs.json"
    spec.write_text(json.dumps([{"argv": ["inspect", str(good)], "cwd": str(tmp_path)},
                                {"argv": ["check", str(good)], "cwd": str(tmp_path)},
                                {"argv": ["export", str(good), "-o", str(tmp_path / "g.json")], "cwd": str(tmp_path)}]))
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent)}
    proc = subprocess.run([sys.executable, str(HERE / "capped_cli.py"), str(spec)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for r in json.loads(proc.stdout):
        assert r["code"] == 0, r
        assert r["max_rss_mb"] < MAX_RSS_MB, r
    assert (tmp_path / "g.json").exists()
