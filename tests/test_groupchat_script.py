"""The tests' group-chat script follows the run, not the prompts' wording (issue #16): who asks, in which round
and stage, comes from the request's metadata; the scores it reads from a prompt round-trip `prompts.memory`,
and a prompt it cannot read stops the test with a message."""

from __future__ import annotations

from typing import Any

import pytest
from groupchat_script import Playbook, scores
from langchain_core.messages import HumanMessage, SystemMessage
from test_groupchat import run, story

from sopgraph.nodes.groupchat import prompts
from sopgraph.nodes.llm import ROLE_KEY
from sopgraph.nodes.scripted import ScriptedRequest
from sopgraph.scenarios import load_scenario
from sopgraph.state.groupchat import Persona, Relationship, Stage


def _request(prompt: str, cid: str = "ann") -> ScriptedRequest:
    return ScriptedRequest(
        messages=[SystemMessage("card"), HumanMessage(prompt)], call_index=0, metadata={ROLE_KEY: cid}
    )


def test_scores_round_trip_the_memory_prompts_state() -> None:
    scenario = load_scenario("succession")
    for spec in scenario.characters:
        persona = Persona.initial(scenario, spec.id)
        others = {
            o: Relationship(score=7 * i, impression=f"odd ({o}), or not" * (i % 2))
            for i, o in enumerate(persona.relationships)
        }
        persona = persona.model_copy(update={"relationships": others})
        prompt = prompts.join(prompts.header(scenario, 2, Stage.UPDATE), prompts.memory(persona, scenario), "Reflect.")
        beliefs, feelings = scores(_request(prompt, spec.id))
        assert beliefs == persona.beliefs and beliefs
        assert feelings == {o: r.score for o, r in others.items()}
    lonely = Persona(id="ann", beliefs={"Rain is good": 40}, relationships={})
    assert scores(_request(prompts.memory(lonely))) == ({"Rain is good": 40}, {})


def test_a_prompt_without_the_memory_fails_loudly() -> None:
    with pytest.raises(LookupError, match="Reflect|prompt"):
        scores(_request("Round 1 of 2. Update.\nHow does Ann see things now?"))


def test_rewording_the_card_and_header_changes_nothing_the_script_records(
    scripted: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, plain = run(scripted, story(rounds=1, group_subrounds=1), Playbook())
    monkeypatch.setattr(
        prompts,
        "SYSTEM",
        "Story {title}: {rules}\nPlay {name} ({id}); {scratch} {objective}\n{cast}{resources}",
    )
    monkeypatch.setattr(prompts, "HEADER", "{stage} — this is round {round}/{rounds}")
    _, reworded = run(scripted, story(rounds=1, group_subrounds=1), Playbook())
    assert any(c.prompt.startswith("Story River town") for c in reworded.calls)  # the rewording took effect

    def where(book: Playbook) -> list[tuple[str, str, int, str]]:
        return sorted((c.character, c.schema, c.round, c.stage) for c in book.calls)

    assert where(reworded) == where(plain)
    stages = {c.stage for c in plain.calls}
    assert stages == {
        Stage.UPDATE,
        Stage.PRIVATE_CHAT,
        Stage.MEETING,
        Stage.GROUP_CHAT,
        Stage.FINAL_UPDATE,
        Stage.SETTLEMENT,
    }
    assert {c.character for c in plain.calls} == {"ann", "ben", "cal", "dora"} and {c.round for c in plain.calls} == {1}
