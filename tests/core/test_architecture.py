"""The architecture holds: import-linter's layer contracts pass and no import loop exists.

The contracts are in pyproject.toml (``[tool.importlinter]``) and explained in docs/architecture.md.
Both checks read imports with grimp, which counts imports inside functions too: a loop cannot be
hidden by moving one of its imports into a function.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import grimp
import networkx as nx

REPO = Path(__file__).resolve().parents[2]


def import_graph(package: str) -> nx.DiGraph:
    """Every import among `package`'s modules as Python runs it, as a directed graph.

    An import of ``a.b.c`` also runs ``a/b/__init__.py``: so an edge to each package above the
    imported module is added too, except to the importer's own packages (already running when it
    runs). A package whose ``__init__`` re-exports a module above one of its own modules' importers
    is a loop at run time, and is one here.
    """
    graph = grimp.build_graph(package, cache_dir=None)
    edges = nx.DiGraph()
    for importer in graph.modules:
        edges.add_node(importer)
        for imported in graph.find_modules_directly_imported_by(importer):
            edges.add_edge(importer, imported)
            parts = imported.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if importer != parent and not importer.startswith(parent + "."):
                    edges.add_edge(importer, parent)
    return edges


def import_loops(graph: nx.DiGraph) -> list[list[str]]:
    """One loop (a list of modules, each importing the next, the last the first) per tangle of modules."""
    loops = []
    for tangle in nx.strongly_connected_components(graph):
        if len(tangle) > 1:
            cycle = nx.find_cycle(graph.subgraph(tangle))
            loops.append([a for a, _ in cycle])
    return sorted(loops)


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), "import-linter is missing: install gradviz's test extra (pip install -e '.[test]')"
    proc = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert {c["id"] for c in contracts} >= {"top", "core", "core-no-gui", "lessons-no-gui"}
    assert f"Contracts: {len(contracts)} kept, 0 broken." in proc.stdout, proc.stdout


def test_gradviz_has_no_import_loop():
    graph = import_graph("gradviz")
    assert "gradviz.core.session.model" in graph and "gradviz.core.backends" in graph
    assert import_loops(graph) == []


def lazy_imports(folder: Path) -> list[str]:
    """``file:line`` of each import of a gradviz module inside a function, without a start-up comment."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                ours = (isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("gradviz"))
                        or isinstance(node, ast.Import) and any(a.name.startswith("gradviz") for a in node.names))
                if ours and "start-up" not in " ".join(lines[max(0, node.lineno - 2):node.lineno]):
                    found.append(f"{path.relative_to(folder)}:{node.lineno}")
    return sorted(set(found))


def test_the_core_imports_gradviz_modules_at_the_top():
    # an import inside a function hides what a module needs; one is kept only where it saves start-up
    # time, with a comment on it (or the line above) saying so
    assert lazy_imports(REPO / "gradviz" / "core") == []


def test_a_lazy_import_without_its_reason_is_found(tmp_path):
    (tmp_path / "m.py").write_text("import os\n\n\ndef f():\n    from .x import y\n\n\ndef g():\n"
                                   "    # imported on first use: it saves start-up time\n"
                                   "    import gradviz.core.layout\n    import json\n")
    assert lazy_imports(tmp_path) == ["m.py:5"]


def test_a_loop_hidden_in_a_function_is_found(tmp_path, monkeypatch):
    # the loop gradviz once had: backends imported its compiled loader inside a function
    pkg = tmp_path / "loopy"
    (pkg / "views").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "backends.py": "def load():\n    import loopy.extension\n",
        "extension.py": "from loopy.backends import load\n",
        # and through a package's __init__: explain -> views.text runs views/__init__ -> views.build -> explain
        "explain.py": "def value():\n    from loopy.views.text import fmt\n",
        "views/__init__.py": "from .build import draw\n",
        "views/build.py": "from loopy.explain import value\n",
        "views/text.py": "fmt = str\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    loops = import_loops(import_graph("loopy"))
    assert sorted(sorted(loop) for loop in loops) == [
        ["loopy.backends", "loopy.extension"],
        ["loopy.explain", "loopy.views", "loopy.views.build"],
    ]
