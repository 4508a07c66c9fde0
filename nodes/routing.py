"""Where a node may go, said once, at the node.

A node that routes returns `Command[Literal["a", "b"]]` (a router for a conditional edge returns
`Literal["a", "b"]`): LangGraph reads the annotation for the graph's edges, so the graph file does not list
them again. `@edge_labels(a="why a", b="why b")` adds what the drawing writes on each of those edges; the
graph builder (graphs/sop.py) checks that the labels name exactly the declared targets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from langgraph.types import Command

F = TypeVar("F", bound=Callable[..., Any])

LABELS_ATTRIBUTE = "__edge_labels__"


def edge_labels(**labels: str) -> Callable[[F], F]:
    """Labels for the drawn edges of the targets a node (or router) declares in its return annotation."""

    def mark(fn: F) -> F:
        setattr(fn, LABELS_ATTRIBUTE, dict(labels))
        return fn

    return mark


def declared_targets(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The node names in `fn`'s return annotation: `Command[Literal[...]]` or `Literal[...]`; () if none."""
    try:
        hint = get_type_hints(fn).get("return")
    except (NameError, TypeError):
        return ()
    if get_origin(hint) is Command and get_args(hint):
        hint = get_args(hint)[0]
    return tuple(str(a) for a in get_args(hint)) if get_origin(hint) is Literal else ()


def labels_of(fn: Callable[..., Any]) -> dict[str, str] | None:
    """`fn`'s edge labels, checked against its declared targets (ValueError when they disagree)."""
    labels: dict[str, str] | None = getattr(fn, LABELS_ATTRIBUTE, None)
    if labels is None:
        return None
    targets = declared_targets(fn)
    if set(labels) != set(targets):
        name = getattr(fn, "__name__", repr(fn))
        raise ValueError(f"{name}: edge labels {sorted(labels)} do not match its declared targets {sorted(targets)}")
    return dict(labels)
