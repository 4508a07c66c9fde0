"""The group-chat simulation graph: AgentGroupChat's stage machine on LangGraph.

    START → setup → [update × all] → advance ─┬→ private_chat → private_turn ⟲ → [summarize × 2] → advance
                                              ├→ meeting → meeting_turn ⟲ → [summarize × 2] → advance
                                              ├→ [speak × all] → close_subround ⟲ → [summarize × all] → advance
                                              ├→ [update × all] (the next round, or the final update) → advance
                                              └→ settlement → [vote × rules × all] → tally → END

`advance` decides the next stage (rounds, ablations, acting order); the conditional edges after it turn
that decision into a node or a parallel fan-out (`Send`). Runtime settings are the plain `Context`;
ablations and the round count are part of the input state, so a resume, replay or fork keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sopgraph.graphs.sop import SOPStateGraph, labelled
from sopgraph.nodes.groupchat import stages
from sopgraph.nodes.groupchat.stages import Node
from sopgraph.scenarios import ScenarioError, load_scenario, parse_scenario
from sopgraph.state.context import Context
from sopgraph.state.groupchat import HUMAN, Ablations, GroupChatState, Scenario, Stage


class GroupChatInput(BaseModel):
    """What a group-chat run is asked: a story by packaged name, YAML path or in full, and ablations.
    Validated before any node runs (the graph's input schema). It is not checkpointed (the compiled graph
    hands the checkpointer its fields, a Scenario and Ablations), and it loads stories by name, so it lives
    here, above sopgraph.scenarios, rather than in state/."""

    model_config = ConfigDict(extra="forbid")

    scenario: Scenario | str = Field(
        description="A packaged story's name (see `sopgraph groupchat --help`), a YAML path, or a whole scenario."
    )
    ablations: Ablations = Field(
        default_factory=Ablations,
        description="Stages or actions switched off: an object of flags, or a list of names such as ['meeting'].",
    )

    @field_validator("scenario", mode="after")
    @classmethod
    def _load(cls, value: Scenario | str) -> Scenario:
        return load_scenario(value) if isinstance(value, str) else value

    @field_validator("ablations", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return Ablations.of(value) if isinstance(value, (list, tuple)) else value


def _turns(turn: str) -> dict[str, str]:
    return {turn: "next line", Node.SUMMARIZE: "conversation over"}


def build_groupchat_graph() -> StateGraph[GroupChatState, Context, GroupChatInput]:
    builder = SOPStateGraph(GroupChatState, input_schema=GroupChatInput, context_schema=Context)
    # Send targets take their task payload, not the state: declare the input schema so LangGraph does not
    # infer one from the type hints.
    builder.add_node(Node.SETUP, stages.setup)
    builder.add_node(Node.UPDATE, stages.update, input_schema=GroupChatState)  # type: ignore[arg-type]
    builder.add_node(Node.ADVANCE, stages.advance)
    builder.add_node(Node.PRIVATE_CHAT, stages.open_chat(Stage.PRIVATE_CHAT))
    builder.add_node(Node.PRIVATE_TURN, stages.chat_turn(Stage.PRIVATE_CHAT))
    builder.add_node(Node.MEETING, stages.open_chat(Stage.MEETING))
    builder.add_node(Node.MEETING_TURN, stages.chat_turn(Stage.MEETING))
    builder.add_node(Node.SUMMARIZE, stages.summarize, input_schema=GroupChatState)  # type: ignore[arg-type]
    builder.add_node(Node.SPEAK, stages.speak, input_schema=GroupChatState)  # type: ignore[arg-type]
    builder.add_node(Node.CLOSE_SUBROUND, stages.close)
    builder.add_node(Node.SETTLEMENT, stages.settlement)
    builder.add_node(Node.VOTE, stages.vote, input_schema=GroupChatState)  # type: ignore[arg-type]
    builder.add_node(Node.TALLY, stages.tally)

    # Where each route may go is its return type (and the Sends its docstring names); the maps below only
    # label the drawn edges.
    stage_targets = {
        Node.UPDATE: "next round",
        Node.PRIVATE_CHAT: "private chat",
        Node.MEETING: "confidential meeting",
        Node.SPEAK: "group chat",
        Node.SETTLEMENT: "settle",
    }
    subround = {Node.SPEAK: "next sub-round", Node.SUMMARIZE: "all spoken"}
    builder.add_edge(START, Node.SETUP)
    builder.add_conditional_edges(Node.SETUP, *labelled(stages.route_stage, {Node.UPDATE: "round 1"}))
    builder.add_edge(Node.UPDATE, Node.ADVANCE)
    builder.add_conditional_edges(Node.ADVANCE, *labelled(stages.route_stage, stage_targets))
    builder.add_edge(Node.PRIVATE_CHAT, Node.PRIVATE_TURN)
    builder.add_conditional_edges(Node.PRIVATE_TURN, *labelled(stages.route_turn, _turns(Node.PRIVATE_TURN)))
    builder.add_edge(Node.MEETING, Node.MEETING_TURN)
    builder.add_conditional_edges(Node.MEETING_TURN, *labelled(stages.route_turn, _turns(Node.MEETING_TURN)))
    builder.add_edge(Node.SUMMARIZE, Node.ADVANCE)
    builder.add_edge(Node.SPEAK, Node.CLOSE_SUBROUND)
    builder.add_conditional_edges(Node.CLOSE_SUBROUND, *labelled(stages.route_subround, subround))
    builder.add_conditional_edges(Node.SETTLEMENT, *labelled(stages.route_votes, {Node.VOTE: "ballots"}))
    builder.add_edge(Node.VOTE, Node.TALLY)
    builder.add_edge(Node.TALLY, END)
    return builder


def groupchat_input(
    scenario: Scenario | str | Path,
    *,
    rounds: int | None = None,
    ablate: Iterable[str] | Ablations = (),
    seed: int | None = None,
    humans: Iterable[str] = (),
    **settings: Any,
) -> GroupChatState:
    """The input state of a run: a scenario (object, packaged name or YAML path) with optional overrides;
    `humans` are character ids a person plays."""
    story = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    overrides = {k: v for k, v in {"rounds": rounds, "seed": seed, **settings}.items() if v is not None}
    people = set(humans)
    if overrides or people:
        unknown = people - set(story.ids)
        if unknown:
            raise ScenarioError(f"{story.title}: no character {', '.join(sorted(unknown))} to play")
        data = story.model_dump(mode="json")
        data["settings"] = data["settings"] | overrides
        for character in data["characters"]:
            if character["id"] in people:
                character["model"] = HUMAN
        changed = ", ".join(sorted(overrides) + [f"{h} played by a person" for h in sorted(people)])
        story = parse_scenario(data, f"{story.title} (with {changed})")
    ablations = ablate if isinstance(ablate, Ablations) else Ablations.of(ablate)
    return {"scenario": story, "ablations": ablations}


graph = build_groupchat_graph().compile(name="groupchat")
