"""Which graphs the CLI and langgraph.json know, by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from langgraph.graph import StateGraph

GRAPHS: dict[str, str] = {
    "demo": "sopgraph.graphs.demo:build_demo_graph",
    "groupchat": "sopgraph.graphs.groupchat:build_groupchat_graph",
    "company": "sopgraph.graphs.company:build_company_graph",
}


def builder_for(name: str) -> Callable[[], StateGraph]:
    try:
        target = GRAPHS[name]
    except KeyError:
        raise KeyError(f"unknown graph {name!r}; known: {', '.join(sorted(GRAPHS))}") from None
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
