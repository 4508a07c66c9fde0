"""Typed, validated input and output for every graph: JSON schemas for Studio and the API, and bad input
refused with a field-level message before any node runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from sopgraph.graphs.registry import GRAPHS, builder_for
from sopgraph.graphs.sop import InputError
from sopgraph.state.context import Context
from sopgraph.state.groupchat import Scenario

INPUT_FIELDS = {
    "company": {"idea", "max_debug", "review", "out_dir"},
    "demo": {"idea", "max_revisions"},
    "groupchat": {"scenario", "ablations"},
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_every_graph_has_json_schemas(name: str) -> None:
    graph = builder_for(name)().compile(name=name)
    schema = graph.get_input_jsonschema()
    assert INPUT_FIELDS[name] <= set(schema["properties"])
    assert schema.get("additionalProperties") is False
    output = graph.get_output_jsonschema()
    assert {"pool", "usage", "outcome"} <= set(output["properties"])
    assert graph.get_context_jsonschema() is not None


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"idea": ""}, "idea: String should have at least 1 character"),
        ({"idea": "   "}, "idea: String should have at least 1 character"),
        ({"idea": "a todo list", "max_debug": -5}, "max_debug: Input should be greater than or equal to 0"),
        ({"idee": "a todo list"}, "idee: unknown field (known: idea, "),
        ({"idea": "a todo list", "review": ["prd", "code"]}, "review.1: Input should be 'prd' or 'design'"),
    ],
)
def test_bad_company_input_is_refused_before_any_node(scripted, payload: dict[str, Any], expected: str) -> None:
    name, model = scripted
    saver = InMemorySaver()
    graph = builder_for("company")().compile(checkpointer=saver)
    config: Any = {"configurable": {"thread_id": "t"}}
    with pytest.raises(InputError, match="company input") as info:
        graph.invoke(payload, config, context=Context(model=name))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    assert model.calls == 0
    assert graph.get_state(config).values == {}  # not even the input was checkpointed


def test_async_entry_points_validate_too() -> None:
    graph = builder_for("demo")().compile()
    with pytest.raises(InputError, match="demo input: max_revisions"):
        asyncio.run(graph.ainvoke({"idea": "x", "max_revisions": -1}, context=Context(model="scripted")))


def test_groupchat_takes_a_scenario_name_and_ablation_names(scripted) -> None:
    name, _ = scripted
    graph = builder_for("groupchat")().compile(checkpointer=InMemorySaver(), interrupt_after=["setup"])
    config: Any = {"configurable": {"thread_id": "t"}}
    graph.invoke({"scenario": "court", "ablations": ["meeting"]}, config, context=Context(model=name))
    values = graph.get_state(config).values
    assert isinstance(values["scenario"], Scenario) and values["scenario"].characters
    assert values["ablations"].no_meeting and not values["ablations"].no_group_chat
    with pytest.raises(InputError, match="scenario: .*no such scenario file .*packaged stories: .*court"):
        graph.invoke({"scenario": "no-such-story"}, {"configurable": {"thread_id": "u"}})
    with pytest.raises(InputError, match="unknown ablation 'dance'"):
        graph.invoke({"scenario": "court", "ablations": ["dance"]}, {"configurable": {"thread_id": "v"}})


def test_resume_and_commands_are_not_input(scripted) -> None:
    """None (continue) passes through: only a fresh input is checked."""
    name, _ = scripted
    saver = InMemorySaver()
    graph = builder_for("demo")().compile(checkpointer=saver, interrupt_after=["writer"])
    config: Any = {"configurable": {"thread_id": "t"}}
    out = graph.invoke({"idea": "a kite"}, config, context=Context(model=name))
    while graph.get_state(config).next:
        out = graph.invoke(None, config, context=Context(model=name))
    assert out["outcome"] in {"approved", "gave up"}
    assert out["max_revisions"] == 1  # the default was filled in at input
