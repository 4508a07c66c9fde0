"""sopgraph.state: the message pool, usage ledger, runtime context, pauses and each graph's checkpointed types.

The checkpoint-type rule: every type a checkpoint stores (a pydantic model, dataclass or enum inside a graph's
state, a `Document` payload in the pool) is defined in a module of this package, or is a `Document` subclass
(which registers itself with the pool). A checkpointer revives only the types `checkpoint_types()` lists, so a
type kept in state but defined elsewhere makes a paused or interrupted run fail to resume. Types that are never
checkpointed (model reply schemas, scenario loading, game rules) belong beside the code that uses them instead.

The list reaches the checkpointer from its caller (`sopgraph.graphs.runner.open_checkpointer`); the
persistence tools know nothing of any graph's state. langgraph.json carries the same list for LangGraph's
server (`make langgraph-json`, checked by a test).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from enum import Enum

from pydantic import BaseModel


def checkpoint_types() -> set[tuple[str, str]]:
    """(module, name) of every pydantic model, dataclass and enum defined in sopgraph.state.*, and of every
    registered `Document` subclass: what a checkpoint may hold."""
    allowed: set[tuple[str, str]] = set()
    for info in pkgutil.iter_modules(__path__, f"{__name__}."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ != module.__name__:
                continue
            if issubclass(obj, (BaseModel, Enum)) or dataclasses.is_dataclass(obj):
                allowed.add((obj.__module__, obj.__name__))
    from sopgraph.state.pool import Document

    allowed |= {(cls.__module__, cls.__name__) for cls in Document.registry.values()}
    return allowed
