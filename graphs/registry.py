"""Which graphs the CLI and langgraph.json know, by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
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
