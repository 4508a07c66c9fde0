"""The StateGraph every sopgraph graph is built on: a fresh run's input is validated before any node runs.

LangGraph takes a pydantic `input_schema` for the JSON schema (Studio's form, the server's
`/assistants/.../schemas`) but does not check a run's input against it: an empty idea ran the whole
company and a misspelt key died in a node. The compiled graph here checks the input of every entry point
(`invoke`, `stream`, their async forms, and so the LangGraph server) and refuses bad input with one
field-level message; it also resolves every model the run's context names, so a wrong name or a missing
key fails before the first role has run. Resuming (`Command`, `None`) is not an input and passes through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any

from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.typing import ContextT, InputT, OutputT, StateT
from pydantic import BaseModel, ValidationError

from sopgraph.nodes.routing import labels_of
from sopgraph.state.context import Context


class InputError(ValueError):
    """A run's input does not fit the graph's input schema; one line naming the fields."""


def _describe(exc: ValidationError, model: type[BaseModel]) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "input"
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown field (known: {', '.join(model.model_fields)})")
        else:
            problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def validate_input(model: type[BaseModel], value: Any, graph: str = "graph") -> dict[str, Any]:
    """The state update for a valid input (defaults filled in, typed values kept as objects)."""
    if isinstance(value, model):
        checked = value
    else:
        if not isinstance(value, dict):
            raise InputError(f"{graph} input: expected an object with {', '.join(model.model_fields)}")
        try:
            checked = model.model_validate(value)
        except ValidationError as exc:
            raise InputError(f"{graph} input: {_describe(exc, model)}") from None
    return {name: getattr(checked, name) for name in type(checked).model_fields}


class ValidatingGraph(CompiledStateGraph):
    """A compiled graph that validates fresh input (see the module docstring)."""

    def _checked(self, value: Any, context: Any) -> Any:
        model = self.builder.input_schema
        if isinstance(model, type) and issubclass(model, BaseModel) and isinstance(value, dict | BaseModel):
            named = self.name if self.name != "LangGraph" else model.__name__.removesuffix("Input").lower()
            value = validate_input(model, value, named)
            if isinstance(context, Context):  # every model it names resolves, before the first role runs
                from sopgraph.nodes.llm import preflight

                preflight(context)
        return value

    def stream(self, input: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return super().stream(self._checked(input, kwargs.get("context")), *args, **kwargs)

    def astream(self, input: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        return super().astream(self._checked(input, kwargs.get("context")), *args, **kwargs)


class SOPStateGraph(StateGraph[StateT, ContextT, InputT, OutputT]):
    """A StateGraph whose `compile()` returns a ValidatingGraph, and whose nodes' declared routes
    (`Command[Literal[...]]`) carry the labels the node gives them (nodes/routing.py); otherwise LangGraph's own."""

    if not TYPE_CHECKING:  # type checkers keep LangGraph's typed overloads of add_node for the calls

        def add_node(self, node: Any, action: Any = None, **kwargs: Any) -> Any:
            fn = action if action is not None else node
            if kwargs.get("destinations") is None and callable(fn) and (labels := labels_of(fn)) is not None:
                kwargs["destinations"] = labels
            return super().add_node(node, action, **kwargs)

    def compile(self, *args: Any, **kwargs: Any) -> CompiledStateGraph[StateT, ContextT, InputT, OutputT]:
        compiled = super().compile(*args, **kwargs)
        # LangGraph builds the compiled graph itself; the subclass only adds input checks and no state (a class
        # swap mypy cannot follow, hence the ignore).
        compiled.__class__ = ValidatingGraph  # type: ignore[assignment]
        return compiled


def labelled(
    router: Callable[..., Any], labels: dict[str, str] | None = None
) -> tuple[Callable[..., Any], dict[Hashable, str]]:
    """A conditional edge whose drawn edges carry labels: `router` returns node names (or Sends, passed on);
    the wrapper returns the label, and the path map sends the label to the node.

    Use as `builder.add_conditional_edges(source, *labelled(route, {"debug": "tests fail"}))`, or without
    `labels` for a router that declares its targets and their labels itself (nodes/routing.py)."""
    if labels is None:
        labels = labels_of(router)
        if labels is None:
            raise ValueError(f"{getattr(router, '__name__', router)!r} declares no edge labels")

    def route(*args: Any, **kwargs: Any) -> Any:
        target = router(*args, **kwargs)
        return labels.get(target, target) if isinstance(target, str) else target

    route.__name__ = getattr(router, "__name__", "route")
    return route, {label: node for node, label in labels.items()}
