"""Custom stream events: what a long node is doing now, for whoever watches a minutes-long run
(`stream_mode="custom"`, the CLI's spinner). LangGraph's stream writer carries them; outside a graph run
nothing is sent.

Every event is a dict: `node` (the graph node it comes from), `event` (its kind), `message` (one line for a
person), plus the fields of its kind; the README's streaming section lists the kinds and their fields.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any


class Reporter:
    """Sends events for the node run it was made in. It may be called from any thread (a sandbox pool's
    workers judging candidates): LangGraph's writer reads the run's config from context variables, so each
    event is written in a copy of the context the Reporter was made in."""

    __slots__ = ("_context", "_write", "node")

    def __init__(self, node: str, write: Callable[[Any], None] | None) -> None:
        self.node, self._write = node, write
        self._context = contextvars.copy_context()

    def __call__(self, event: str, message: str, **fields: Any) -> None:
        if self._write is not None:
            event_ = {"node": self.node, "event": event, "message": message, **fields}
            self._context.copy().run(self._write, event_)


def reporter(default_node: str = "") -> Reporter:
    """A Reporter for the current node, silent when there is no graph run (a plain call, an eval, a test)."""
    from langgraph.config import get_config, get_stream_writer

    try:
        node = get_config().get("metadata", {}).get("langgraph_node", default_node)
        write = get_stream_writer()
    except (RuntimeError, KeyError):
        return Reporter(default_node, None)
    return Reporter(node, write)


def emit(event: str, message: str, **fields: Any) -> None:
    """One event from the current node (see Reporter for threads)."""
    reporter()(event, message, **fields)
