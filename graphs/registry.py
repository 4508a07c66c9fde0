"""Which graphs the CLI and langgraph.json know, by name: GRAPHS is the one list (`make langgraph-json` writes
langgraph.json's graphs from it, and a test checks the file)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langgraph.graph import StateGraph

GRAPHS: dict[str, str] = {
    "demo": "sopgraph.graphs.demo:build_demo_graph",
    "groupchat": "sopgraph.graphs.groupchat:build_groupchat_graph",
    "company": "sopgraph.graphs.company:build_company_graph",
}


def files_hook(name: str) -> Callable[..., Any] | None:
    """The graph module's `checkpoint_files(values, context, *, thread_id, branch, out_dir)`, if it writes
    files: the runner calls it before it resumes, replays or forks a run (see graphs/company.py)."""
    module = importlib.import_module(GRAPHS[name].split(":")[0]) if name in GRAPHS else None
    return getattr(module, "checkpoint_files", None)


def builder_for(name: str) -> Callable[[], StateGraph]:
    try:
        target = GRAPHS[name]
    except KeyError:
        raise KeyError(f"unknown graph {name!r}; known: {', '.join(sorted(GRAPHS))}") from None
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def served_graphs() -> dict[str, str]:
    """langgraph.json's `graphs`: each graph module's compiled `graph`, by its path in the checkout
    (`sopgraph.graphs.demo` is ./graphs/demo.py)."""
    return {
        name: "./" + target.split(":")[0].removeprefix("sopgraph.").replace(".", "/") + ".py:graph"
        for name, target in GRAPHS.items()
    }


SERVER_CHECKPOINTER = "sopgraph.graphs.server.checkpointer"
"""langgraph.json's `checkpointer.path`: the server's saver, built with the allow-list (see graphs/server.py)."""


def allowed_types() -> list[tuple[str, str]]:
    """The serializer's allow-list: every type sopgraph.state defines (what a checkpoint may hold; the rule is
    stated in state/__init__.py)."""
    from sopgraph.state import checkpoint_types

    return [t for t in sorted(checkpoint_types()) if t[0].startswith("sopgraph.")]


def langgraph_config(config: dict[str, Any]) -> dict[str, Any]:
    """`config` (langgraph.json's contents) with its graphs, its checkpointer and its serializer allow-list
    made from the package."""
    checkpointer = config.get("checkpointer", {})
    serde = {**checkpointer.get("serde", {}), "allowed_msgpack_modules": [list(t) for t in allowed_types()]}
    checkpointer = {**checkpointer, "path": SERVER_CHECKPOINTER, "serde": serde}
    return {**config, "graphs": served_graphs(), "checkpointer": checkpointer}


def write_langgraph_json(path: str | Path = "langgraph.json") -> None:
    file = Path(path)
    config = json.loads(file.read_text()) if file.exists() else {"dependencies": ["."]}
    file.write_text(json.dumps(langgraph_config(config), indent=2) + "\n")
