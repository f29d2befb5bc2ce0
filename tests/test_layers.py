"""The house's walls, read from the source: the import graph of synvita/ has no cycle, and no stage
imports another stage (they talk through files).

Every import counts, wherever it stands: module-level, inside a function (the lazy imports), and a
module named by a string that code imports later (`importlib.import_module("synvita.x")`, plugin
and command tables, `module:function` entries). The graph is parsed with `ast`, never imported, so
an import that only runs on some path is seen too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "synvita"
# Stage packages: each stands on the shared layers only.
STAGES = ("generators", "scoring", "training", "evaluation", "report")
# The top layer orchestrates stages: the command line (and `-m synvita.train`, its training entry),
# `synvita push` (it reads a training run and its evaluations) and the toy world with its demo.
TOP = ("synvita.cli", "synvita.train", "synvita.hub", "synvita.toyworld")


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _target(name: str, modules) -> str | None:
    """The module of the package that `name` (a module, or a name inside one) stands for."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _named_in_string(node: ast.AST, parents: dict) -> str | None:
    """A string that names a module for a later import (`synvita.x` or `synvita.x:function`);
    a logger's dotted name is only a name."""
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("synvita.")):
        return None
    call = parents.get(node)
    if isinstance(call, ast.Call) and getattr(call.func, "attr", getattr(call.func, "id", None)) == "getLogger":
        return None
    return node.value.partition(":")[0]


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules of the package it imports, anywhere in its source."""
    modules = _modules(root)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges |= {_target(a.name, modules) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                # `from pkg import mod` imports the submodule `pkg.mod`.
                edges |= {_target(f"{base}.{a.name}", modules) for a in node.names}
            elif (named := _named_in_string(node, parents)) is not None:
                edges.add(_target(named, modules))
        graph[name] = {e for e in edges if e is not None and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that returns to its start, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer(module: str) -> str:
    """"top", "stage:<name>" or "shared"."""
    if any(module == t or module.startswith(t + ".") for t in TOP):
        return "top"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in STAGES:
        return f"stage:{parts[1]}"
    return "shared"


def wall_breaches(graph: dict[str, set[str]]) -> list[str]:
    """Imports that cross a wall: a stage into another stage or the top layer, the shared layers
    into a stage or the top layer."""
    breaches = []
    for src, targets in sorted(graph.items()):
        for dst in sorted(targets):
            a, b = layer(src), layer(dst)
            if a != "top" and a != b and b != "shared":
                breaches.append(f"{src} ({a}) imports {dst} ({b})")
    return breaches


def test_the_import_graph_of_synvita_has_no_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and "synvita.jobs" in graph["synvita.scoring.job"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_stages_stand_on_the_shared_layers_only():
    assert wall_breaches(import_graph(PACKAGE)) == []


def test_the_checks_see_lazy_and_named_imports_and_catch_planted_ones(tmp_path):
    pkg = tmp_path / "synvita"
    files = {
        "__init__.py": "",
        "jobs.py": "def f():\n    from synvita.utils import x\n",
        "utils.py": "import logging\nlog = logging.getLogger('synvita.cli')\n",
        "cli.py": "STAGES = [('score', 'synvita.scoring.job')]\n",
        "scoring/__init__.py": "",
        "scoring/job.py": "from ..jobs import f\n",
        "training/__init__.py": "",
        "training/data.py": "def w():\n    import importlib\n    return importlib.import_module('synvita.scoring.job')\n",
        "models/__init__.py": "",
        "models/tiny.py": "BUILDERS = {'synvita.models.lmm:build': None}\n",
        "models/lmm.py": "from synvita.models import tiny\n",
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    graph = import_graph(pkg)
    assert graph["synvita.jobs"] == {"synvita.utils"}  # a lazy import
    assert graph["synvita.utils"] == set()  # a logger's name is no import
    assert graph["synvita.scoring.job"] == {"synvita.jobs"}  # relative
    assert graph["synvita.cli"] == {"synvita.scoring.job"}  # a command table
    assert graph["synvita.models.lmm"] == {"synvita.models.tiny"}  # `from package import module`
    # The planted faults: a cycle through a `module:function` string, and a stage calling a stage.
    assert find_cycle(graph) == ["synvita.models.lmm", "synvita.models.tiny", "synvita.models.lmm"]
    assert wall_breaches(graph) == ["synvita.training.data (stage:training) imports synvita.scoring.job (stage:scoring)"]
    graph["synvita.utils"].add("synvita.cli")  # shared reaching up into the top layer
    assert wall_breaches(graph)[0] == "synvita.training.data (stage:training) imports synvita.scoring.job (stage:scoring)"
    assert "synvita.utils (shared) imports synvita.cli (top)" in wall_breaches(graph)


@pytest.mark.parametrize("module,expected", [("synvita.toyworld.demo", "top"), ("synvita.jobs", "shared"),
                                             ("synvita.scoring.members", "stage:scoring"), ("synvita.tiny", "shared")])
def test_layers_by_name(module, expected):
    assert layer(module) == expected


def test_every_module_named_by_a_string_exists():
    """A command table or plugin entry naming a moved module would fail only when it runs."""
    modules = _modules(PACKAGE)
    missing = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        missing += [f"{name}: {n}" for node in ast.walk(tree)
                    if (n := _named_in_string(node, parents)) is not None and n not in modules]
    assert missing == []
