"""Mermaid diagrams read off the generated code, for when the architect's diagram came back empty.

A small model often answers a diagram field with nothing usable; the delivered design document should
still show the real structure. The code is only parsed (`ast`), never imported or run.
"""

from __future__ import annotations

import ast
import re

from sopgraph.tools.program import stem


def is_empty(diagram: str) -> bool:
    """True for a diagram that is only its type line."""
    return len([line for line in diagram.splitlines() if line.strip()]) <= 1


def _name(text: str) -> str:
    return re.sub(r"\W", "_", text) or "module"


def _args(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    names = [a.arg for a in node.args.args if a.arg not in ("self", "cls")]
    return ", ".join(names)


def _tree(path: str, code: str) -> ast.Module | None:
    if not path.endswith(".py"):
        return None
    try:
        return ast.parse(code, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def class_diagram(files: dict[str, str]) -> str:
    """Classes with their methods, and each module's functions as a «module» box."""
    lines = ["classDiagram"]
    for path, code in files.items():
        tree = _tree(path, code)
        if tree is None:
            continue
        functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if functions:
            lines.append(f"  class {_name(stem(path))} {{")
            lines.append("    <<module>>")
            lines += [f"    +{f.name}({_args(f)})" for f in functions]
            lines.append("  }")
        for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
            lines.append(f"  class {_name(cls.name)} {{")
            methods = [n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            lines += [f"    +{m.name}({_args(m)})" for m in methods]
            lines.append("  }")
            for base in cls.bases:
                if isinstance(base, ast.Name):
                    lines.append(f"  {_name(base.id)} <|-- {_name(cls.name)}")
    return "\n".join(lines)


def call_flow(files: dict[str, str], entry: str | None) -> str:
    """The entry module's calls into the project's other modules, in source order."""
    lines = ["sequenceDiagram"]
    if entry is None or entry not in files:
        return "\n".join(lines)
    tree = _tree(entry, files[entry])
    if tree is None:
        return "\n".join(lines)
    modules = {stem(p) for p in files if p.endswith(".py")}
    imported: dict[str, str] = {}  # local name -> project module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[-1] in modules:
            for alias in node.names:
                imported[alias.asname or alias.name] = node.module.split(".")[-1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[-1] in modules:
                    imported[alias.asname or alias.name] = alias.name.split(".")[-1]
    caller = _name(stem(entry))
    seen: set[tuple[str, str]] = set()
    calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset))
    for call in calls:
        func = call.func
        target = label = None
        if isinstance(func, ast.Name) and func.id in imported:
            target, label = imported[func.id], func.id
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in imported:
            target, label = imported[func.value.id], func.attr
        if target and (target, label) not in seen:
            seen.add((target, label or ""))
            lines.append(f"  {caller}->>{_name(target)}: {label}()")
        if len(seen) >= 12:
            break
    return "\n".join(lines)
