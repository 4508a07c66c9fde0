"""A character played by a person: each move is an interrupt carrying the prompt and the schema."""

from __future__ import annotations

from typing import Any

from groupchat_script import Playbook
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from test_groupchat import story

from sopgraph.graphs.groupchat import build_groupchat_graph, groupchat_input
from sopgraph.scenarios import parse_scenario
from sopgraph.state.context import Context
from sopgraph.state.groupchat import Scenario


def with_human(cid: str, **settings: Any) -> Scenario:
    data = story(**settings).model_dump(mode="json")
    for c in data["characters"]:
        if c["id"] == cid:
            c["model"] = "human"
    return parse_scenario(data)


def answer(question: dict[str, Any], n: int) -> dict[str, Any]:
    """A person's reply: the first legal option, or a line of speech."""
    props = question["schema"]["properties"]
    if "partner" in props:
        return {"partner": props["partner"]["enum"][-1], "reason": "I trust them"}
    if "candidate" in props:
        return {"candidate": props["candidate"]["enum"][0], "reason": "my choice"}
    return {"speech": f"HUMAN LINE {n}"}


def test_a_human_character_is_asked_for_every_move_and_the_run_resumes(scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = book = Playbook()
    graph = build_groupchat_graph().compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "human"}}
    ctx = Context(model=name)
    result = graph.invoke(groupchat_input(with_human("ben", rounds=1, group_subrounds=1)), config, context=ctx)
    asked: list[dict[str, Any]] = []
    while "__interrupt__" in result:
        (pending,) = result["__interrupt__"]
        question = pending.value
        assert question["reason"] == "human" and question["character"] == "ben"
        assert "Ben" in question["message"] and question["prompt"] and question["schema"]["properties"]
        asked.append(question)
        result = graph.invoke(Command(resume=answer(question, len(asked))), config, context=ctx)

    actions = [q["action"] for q in asked]
    assert actions.count("choose") == 2  # ben is a principal: a partner for the private chat and the meeting
    assert actions.count("vote") == 4  # one question per vote rule, one at a time
    assert "speak" in actions
    assert result["outcome"] is not None
    spoken = [
        m.content for m in result["pool"] if m.sender == "ben" and m.kind in {"private_chat", "meeting", "group_chat"}
    ]
    assert spoken and all(s.startswith("HUMAN LINE") for s in spoken)
    assert all(c.character != "ben" for c in book.calls)  # no model ever speaks for ben
    assert not [u for u in result["usage"] if u.role == "ben"]


def test_an_invalid_human_answer_is_asked_again_with_the_error(scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = Playbook()
    graph = build_groupchat_graph().compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "human-bad"}}
    ctx = Context(model=name, max_reasks=1)
    scenario = with_human("ann", rounds=1, group_subrounds=1)
    result = graph.invoke(groupchat_input(scenario, ablate=["meeting", "group_chat"]), config, context=ctx)
    while result["__interrupt__"][0].value["action"] != "choose":  # lines spoken before ann's turn to choose
        result = graph.invoke(Command(resume={"speech": "fine"}), config, context=ctx)
    result = graph.invoke(Command(resume={"partner": "nobody", "reason": "?"}), config, context=ctx)
    again = result["__interrupt__"][0].value
    assert again["action"] == "choose" and "invalid" in again["message"] and "partner" in again["message"]
    result = graph.invoke(Command(resume={"partner": "ghost", "reason": "?"}), config, context=ctx)
    # still illegal after the re-ask: clamped to a legal partner, with a warning, and the story goes on
    warnings = [w for w in graph.get_state(config).values["warnings"] if w.character == "ann"]
    assert warnings and warnings[0].action == "choose"
    choice = next(m for m in graph.get_state(config).values["pool"] if m.kind == "choice" and m.sender == "ann")
    assert choice.payload.partner in {"ben", "cal", "dora"}  # type: ignore[union-attr]
