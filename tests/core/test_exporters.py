"""The exporter registry, the core's data formats (read back), atomic exports and the CLI."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import networkx as nx
import pytest

import gradviz
from gradviz.cli import main
from gradviz.core import exporters as ex
from gradviz.core.atomic import TEMP_PREFIX
from gradviz.core.scene import build_scene
from gradviz.core.errors import GradvizError
from gradviz.core.serialize import recording_to_json
from gradviz.core.storage import load_recording, read_document
from gradviz.core.timeline import Timeline


@pytest.fixture(scope="module")
def rec():
    return gradviz.record("repeated-layer", params={"k": 3})


# ---------------------------------------------------------------------------------------------
# a small reader for the DOT subset gradviz writes (quoted ids, attribute lists, -> edges)

_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(->)|([A-Za-z_][A-Za-z0-9_]*)|([\[\]{}=,;]))')


def read_dot(text: str) -> tuple[nx.MultiDiGraph, dict]:
    tokens = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        assert m, f"cannot read DOT at {text[pos:pos + 40]!r}"
        pos = m.end()
        if m.group(1) is not None:
            tokens.append(("id", re.sub(r"\\(.)", lambda x: "\n" if x.group(1) == "n" else x.group(1), m.group(1))))
        elif m.group(3) is not None:
            tokens.append(("id", m.group(3)))
        else:
            tokens.append(("p", m.group(2) or m.group(4)))
    assert tokens[:2] == [("id", "digraph"), ("id", "gradviz")] and tokens[2] == ("p", "{") and tokens[-1] == ("p", "}")
    g = nx.MultiDiGraph()
    graph_attrs: dict = {}
    i = 3

    def attrs(i):
        out = {}
        if i < len(tokens) and tokens[i] == ("p", "["):
            i += 1
            while tokens[i] != ("p", "]"):
                k, eq, v = tokens[i], tokens[i + 1], tokens[i + 2]
                assert k[0] == "id" and eq == ("p", "=") and v[0] == "id"
                out[k[1]] = v[1]
                i += 3
                if tokens[i] == ("p", ","):
                    i += 1
            i += 1
        return out, i

    while tokens[i] != ("p", "}"):
        kind, name = tokens[i]
        assert kind == "id"
        if tokens[i + 1] == ("p", "->"):
            dst = tokens[i + 2][1]
            a, i = attrs(i + 3)
            g.add_edge(name, dst, key=a.pop("key", None), **a)
        else:
            a, i = attrs(i + 1)
            if name == "graph":
                graph_attrs.update(a)
            elif name not in ("node", "edge"):
                g.add_node(name, **a)
        assert tokens[i] == ("p", ";")
        i += 1
    return g, graph_attrs


def _edges(rec) -> set:
    return {(s, d, ("grad", k)) for s, d, k in rec.edges} | {(s, d, ("input", k)) for s, d, k in rec.input_edges}


# ---------------------------------------------------------------------------------------------

def test_registry_lists_core_formats_and_unknown_suffix_is_clear(rec, tmp_path):
    formats = ex.exporters()
    for suffix in (".json", ".dot", ".graphml", ".gradviz"):
        assert suffix in formats and formats[suffix].description
    with pytest.raises(GradvizError, match="no exporter for '.xyz'") as err:
        ex.export(rec, tmp_path / "x.xyz")
    assert ".dot" in err.value.hint
    assert not list(tmp_path.iterdir())


def test_decorator_registers_a_new_format(rec, tmp_path):
    @ex.exporter(".nodes", "node names, one per line")
    def write_nodes(r, path, options):
        Path(path).write_text("\n".join(n.name for n in r.nodes))

    try:
        out = rec.export(tmp_path / "g.nodes")
        assert out.read_text().splitlines() == [n.name for n in rec.nodes]
    finally:
        ex._EXPORTERS.pop(".nodes")


def test_bad_options_are_refused(rec, tmp_path):
    last = len(Timeline(rec)) - 1
    for kwargs, words in [({"step": last + 1}, f"0..{last}"), ({"phase": "sideways"}, "unknown phase"),
                          ({"step": 1, "phase": "end"}, "not both"), ({"layout": "radial"}, "unknown layout"),
                          ({"theme": "neon"}, "unknown theme"), ({"scale": 0}, "scale"), ({"scale": "big"}, "scale")]:
        with pytest.raises(GradvizError, match=re.escape(words)):
            ex.export(rec, tmp_path / "g.dot", **kwargs)
    assert not list(tmp_path.iterdir())


def test_broken_plugin_gives_a_warning_not_a_crash():
    broken = [EntryPoint("missing", "gradviz_no_such_module:register", ex.PLUGIN_GROUP),
              EntryPoint("raises", "json:loads", ex.PLUGIN_GROUP)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = ex.load_plugins(broken)
    assert len(problems) == 2 and "missing" in problems[0] and "raises" in problems[1]
    assert [str(w.message) for w in caught] == problems
    assert ".dot" in ex.exporters()


def test_core_entry_point_is_declared():
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert 'core = "gradviz.core.exporters:register"' in text
    assert 'qt = "gradviz.qt.export:register"' in text
    assert ex.load_plugins([EntryPoint("core", "gradviz.core.exporters:register", ex.PLUGIN_GROUP)]) == []


def test_json_is_what_inspect_prints(rec, tmp_path):
    out = ex.export(rec, tmp_path / "r.json")
    assert json.loads(out.read_text()) == json.loads(json.dumps(recording_to_json(rec)))


@pytest.mark.parametrize("layout", ["lr", "tb"])
def test_dot_reads_back_with_same_nodes_edges_and_highlight(rec, tmp_path, layout):
    tl = Timeline(rec)
    step = tl.phase_start("backward") + 1
    out = ex.export(rec, tmp_path / "g.dot", step=step, layout=layout, theme="dark")
    g, graph = read_dot(out.read_text())
    assert graph["rankdir"] == layout.upper() and graph["step"] == str(step)
    assert graph["bgcolor"] == ex.THEMES["dark"]["background"]
    assert set(g.nodes) == {f"n{n.id}" for n in rec.nodes}
    scene = build_scene(rec, None, tl.state_at(step), "dark")
    for n in rec.nodes:
        a = g.nodes[f"n{n.id}"]
        # the label as drawn at this step: the node's own label first, then values, gradients
        assert a["label"] == "\n".join(scene.lines(n.id)) and a["label"].startswith(n.label)
        assert a["kind"] == n.kind and a["fillcolor"] == scene.node_style(n.id).fill
    got = {(int(s[1:]), int(d[1:]), (a["flow"], int(a["slot"]))) for s, d, a in g.edges(data=True)}
    assert got == _edges(rec) and g.number_of_edges() == len(rec.edges) + len(rec.input_edges)
    state = tl.state_at(step)
    current = [k for k, a in g.nodes(data=True) if a["penwidth"] == "3"]
    assert current == [f"n{state.current}"]
    hot = {(int(s[1:]), int(d[1:])) for s, d, a in g.edges(data=True) if a.get("penwidth") == "2.5"}
    assert hot == {(s, d) for s, d, _, _ in state.flowing} and hot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_graphviz_accepts_the_dot_file(rec, tmp_path):
    out = ex.export(rec, tmp_path / "g.dot")
    svg = subprocess.run(["dot", "-Tsvg", str(out)], capture_output=True, text=True, check=True).stdout
    assert "AccumulateGrad" in svg or "layer.weight" in svg


def test_graphml_reads_back_with_networkx(rec, tmp_path):
    out = ex.export(rec, tmp_path / "g.graphml", phase="forward")
    tl = Timeline(rec)
    scene = build_scene(rec, None, tl.state_at(tl.phase_start("forward")))
    g = nx.read_graphml(out, force_multigraph=True)
    assert set(g.nodes) == {str(n.id) for n in rec.nodes}
    for n in rec.nodes:
        a = g.nodes[str(n.id)]
        assert a["name"] == n.name and a["kind"] == n.kind and a["label"] == "\n".join(scene.lines(n.id))
        assert a["fill"] == scene.node_style(n.id).fill and a["label"].startswith(n.label)
        if n.tensor is not None:
            assert a["shape"] == str(list(n.tensor.shape))
    got = {(int(s), int(d), (a["flow"], int(a["slot"]))) for s, d, a in g.edges(data=True)}
    assert got == _edges(rec)
    assert g.graph["step"] == 1


def test_gradviz_export_round_trips(rec, tmp_path):
    out = ex.export(rec, tmp_path / "r.gradviz")
    assert recording_to_json(load_recording(out)) == recording_to_json(rec)


def test_failing_exporter_keeps_the_old_file_and_no_temp(rec, tmp_path):
    target = tmp_path / "g.dot"
    target.write_text("old contents")

    @ex.exporter(".dot", "fails half-way")
    def failing(r, path, options):
        with open(path, "w") as fh:
            fh.write("digraph half {")
            raise OSError("disk full")

    try:
        with pytest.raises(ex.GradvizError, match="cannot write .*g.dot'?: disk full"):
            ex.export(rec, target)
    finally:
        ex._EXPORTERS[".dot"] = ex.Exporter(".dot", ex._export_dot, "Graphviz source", ex.__name__)
    assert target.read_text() == "old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["g.dot"]


def test_cancelled_export_leaves_nothing(rec, tmp_path):
    from gradviz.core.errors import Cancelled

    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Cancelled):
        ex.export(rec, tmp_path / "g.json", cancel=cancel)
    assert not list(tmp_path.iterdir())


def test_unwritable_export_path(rec, tmp_path):
    with pytest.raises(GradvizError, match="does not exist"):
        ex.export(rec, tmp_path / "missing" / "g.dot")


def test_repr_svg_is_svg_text(rec):
    text = rec._repr_svg_()
    assert text.lstrip().startswith(("<svg", "<?xml"))
    assert "</svg>" in text


# ---------------------------------------------------------------------------------------------
# the command line

def test_cli_record_check_export(tmp_path, capsys):
    run = tmp_path / "run.gradviz"
    assert main(["record", "sum-xy-plus-z", "-o", str(run)]) == 0
    assert "checks pass" in capsys.readouterr().out
    stored = read_document(run).checks
    assert stored is not None and stored.ok and any(r.kind == "finite-diff" and r.status == "pass"
                                                    for r in stored.rows)
    # check on the file prints the stored table (the finite-difference rows passed at record time)
    assert main(["check", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(stored.format().strip().splitlines()[-1])
    assert "opened from a file" not in out
    assert main(["check", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == stored.to_json()
    # every TARGET command opens the file
    assert main(["inspect", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == "sum-xy-plus-z"
    assert main(["steps", str(run)]) == 0
    assert "backward" in capsys.readouterr().out
    for fmt in ("dot", "graphml", "json"):
        assert main(["export", str(run), "-o", str(tmp_path / f"g.{fmt}"), "--phase", "backward",
                     "--layout", "tb", "--theme", "dark"]) == 0
        assert (tmp_path / f"g.{fmt}").stat().st_size > 0
    assert main(["export", "mlp", "-o", str(tmp_path / "m.dot"), "--step", "3"]) == 0
    g, graph = read_dot((tmp_path / "m.dot").read_text())
    assert graph["step"] == "3"


def test_cli_failing_stored_checks_exit_1(tmp_path, capsys):
    from gradviz.core.storage import save_recording

    rec = gradviz.record("sum-xy-plus-z")
    table = gradviz.run_checks(rec)
    table.rows[0].status = "fail"
    save_recording(rec, tmp_path / "bad.gradviz", checks=table)
    assert main(["check", str(tmp_path / "bad.gradviz")]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_cli_bad_input_exits_2(tmp_path, capsys):
    (tmp_path / "junk.gradviz").write_text("junk")
    assert main(["check", str(tmp_path / "junk.gradviz")]) == 2
    assert "not a zip" in capsys.readouterr().err
    assert main(["record", "mlp", "-o", str(tmp_path / "x.json")]) == 2
    assert "must end in .gradviz" in capsys.readouterr().err
    assert main(["export", "mlp", "-o", str(tmp_path / "x.nope")]) == 2
    assert "no exporter" in capsys.readouterr().err
    assert main(["export", "mlp", "-o", str(tmp_path / "x.dot"), "--step", "999"]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["record", "mlp", "-o", str(tmp_path / "ok.gradviz")]) == 0
    assert main(["inspect", str(tmp_path / "ok.gradviz"), "--param", "k=3"]) == 2
    assert "--param does not apply" in capsys.readouterr().err
    (tmp_path / "ok.gradviz").unlink()
    assert main(["record", "mlp", "-o", str(tmp_path / "nodir" / "x.gradviz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir())
