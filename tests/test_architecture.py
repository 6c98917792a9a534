"""The layering of `padirec/`: no import cycle, nothing outside the command-line layer imports it, no module
over 400 lines without saying why, the contracts package below every stage."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "padirec"
CLI = "padirec.cli"
MAX_LINES = 400


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the padirec modules it imports, anywhere in its body (imports inside functions count too).

    `from a.b import c` depends on `a.b.c` when that is a module, else on `a.b`; a package's `__init__` is
    a dependency only where it is named."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    target = f"{source}.{alias.name}"
                    edges.add(target if target in modules else source)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-loop): each is an import circle."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_padirec_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_only_the_command_line_layer_imports_it():
    graph = import_graph()
    offenders = {m: sorted(t for t in targets if t == CLI or t.startswith(CLI + "."))
                 for m, targets in graph.items() if not (m == CLI or m.startswith(CLI + "."))}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_contracts_import_no_stage():
    """The contracts sit below the stages: they may use the store glue, the models and the objectives' registry
    (names and metrics: a leaf that imports only torch), nothing above."""
    allowed = ("padirec.contracts", "padirec.tracking", "padirec.models", "padirec.config", "padirec.data",
               "padirec.objectives")
    graph = import_graph()
    wrong = {m: sorted(t for t in targets if not t.startswith(allowed))
             for m, targets in graph.items() if m.startswith("padirec.contracts")}
    assert {m: t for m, t in wrong.items() if t} == {}


def test_no_module_over_400_lines_without_saying_why():
    long = []
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "over 400 lines" not in docstring:
            long.append(f"{path.relative_to(PACKAGE.parent)}: {lines}")
    assert long == []


def test_the_checker_finds_a_cycle_and_a_command_line_import(tmp_path):
    """The checks above can fail: a two-module circle and an import of the CLI are reported."""
    package = tmp_path / "padirec"
    (package / "cli").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli" / "__init__.py").write_text("")
    (package / "a.py").write_text("from padirec import b\n")
    (package / "b.py").write_text("def f():\n    from padirec.a import x\n    from padirec.cli import main\n")
    graph = import_graph(package)
    assert cycles(graph) == [["padirec.a", "padirec.b"]]
    assert CLI in graph["padirec.b"]


LAYERS = ["padirec.cli", "padirec.pipeline", "padirec.serving.app", "padirec.sweep.run", "padirec.diffusion.stage",
          "padirec.evaluation.stage"]


def test_every_layer_imports_on_its_own():
    """Each layer imports in a fresh interpreter (an import order that only works after another import fails);
    the interpreters run side by side."""
    import subprocess
    import sys

    processes = {name: subprocess.Popen([sys.executable, "-c", f"import {name}"], cwd=PACKAGE.parent,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for name in LAYERS}
    failed = {name: p.communicate(timeout=300)[1][-2000:] for name, p in processes.items()}
    assert not {name: err for name, err in failed.items() if processes[name].returncode}
