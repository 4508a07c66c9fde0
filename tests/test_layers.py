"""The package's imports run one way, read from the source (every import statement, also those inside functions
or under TYPE_CHECKING): no cycle between modules, and no module imports a higher layer.

Layers, lowest first: tools <- state (with scenarios, which loads stories into state's types) <- nodes <- graphs
<- evals <- cli (the leaf package sopgraph.graphs.cli: nothing imports it back).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("tools", "state", "scenarios", "nodes", "graphs", "evals")
LAYERS = {"tools": 0, "state": 1, "scenarios": 1, "nodes": 2, "graphs": 3, "evals": 4, "cli": 5}
CLI = "sopgraph.graphs.cli"


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by the name of its __init__)."""
    found = {"sopgraph": ROOT / "sopgraph" / "__init__.py"}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = ["sopgraph", *path.relative_to(ROOT).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported name) of every import statement in a module, relative ones made absolute."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` imports the module; `from module import name`, the module
            found += [(node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base) for a in node.names]
    return found


def _edges() -> dict[str, dict[str, int]]:
    """Module -> {package module it imports: line}."""
    edges: dict[str, dict[str, int]] = {}
    for name, path in MODULES.items():
        edges[name] = {}
        for line, target in _imports(name, path):
            while target not in MODULES and "." in target:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target in MODULES and target != name and target.startswith("sopgraph"):
                edges[name].setdefault(target, line)
    return edges


def layer(module: str) -> int:
    if module == CLI or module.startswith(CLI + "."):
        return LAYERS["cli"]
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else 0


def test_the_walk_sees_the_package() -> None:
    """A guard for the checks below: they see every layer and the imports that are known to exist."""
    edges = _edges()
    assert {layer(m) for m in MODULES} == set(LAYERS.values())
    assert "sopgraph.state.pool" in edges["sopgraph.graphs.demo"]
    assert "sopgraph.nodes.llm" in edges["sopgraph.nodes.repair"]


def test_imports_name_the_package_not_the_folders() -> None:
    """`import tools.x` works in a checkout (its root is on sys.path) but not from a wheel."""
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {target}"
        for name, path in MODULES.items()
        for line, target in _imports(name, path)
        if target.split(".")[0] in FOLDERS
    ]
    assert not wrong, wrong


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{MODULES[name].relative_to(ROOT)}:{line}: {name} imports {target}"
        for name, targets in _edges().items()
        for target, line in targets.items()
        if layer(target) > layer(name)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_modules() -> None:
    edges = _edges()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(cycles)
