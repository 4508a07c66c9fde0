"""Group-chat runs against SQLite and the real PostgreSQL: fork a round with an edited belief, crash and resume."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from groupchat_script import Playbook
from test_groupchat import story

from sopgraph.graphs import runner
from sopgraph.graphs.groupchat import groupchat_input
from sopgraph.nodes.llm import ModelError
from sopgraph.state.context import Context
from sopgraph.state.groupchat import Stage


def said(values: dict[str, Any]) -> Counter[tuple[str, str, int, int, str]]:
    """What was said, as a multiset (parallel speeches may land in any order)."""
    return Counter((m.sender, m.kind, m.round, m.sub_round, m.content) for m in values["pool"])


def test_fork_at_round_two_with_an_edited_belief_changes_the_continuation(checkpointer, scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = Playbook()
    thread = f"gc-fork-{uuid.uuid4().hex[:8]}"
    payload = groupchat_input(story(rounds=2, group_subrounds=1), ablate=["meeting"])
    first = runner.start_run("groupchat", payload, checkpointer, Context(model=name), thread_id=thread)
    assert first.status == "done" and first.values["outcome"] is not None

    snaps = runner.history(checkpointer, thread)
    round_two = next(
        s for s in snaps if s.values.get("round") == 2 and s.values.get("stage") == Stage.UPDATE and "update" in s.next
    )
    assert set(round_two.next) == {"update"}  # the round's parallel updates are about to run
    cp = round_two.config["configurable"]["checkpoint_id"]
    assert round_two.values["personas"]["ann"].beliefs["Trust the mayor"] == 50

    forked = runner.fork_run(checkpointer, thread, cp, {"personas": {"ann": {"beliefs": {"Trust the mayor": 95}}}})
    assert forked.status == "done" and forked.values["outcome"] is not None
    assert forked.values["personas"]["ann"].beliefs["Trust the mayor"] == 95

    round_one = [m for m in first.values["pool"] if m.round <= 1]
    assert [m.id for m in forked.values["pool"][: len(round_one)]] == [m.id for m in round_one]
    original_r2 = {
        m.content for m in first.values["pool"] if m.round == 2 and m.sender == "ann" and m.kind == "group_chat"
    }
    forked_r2 = {
        m.content for m in forked.values["pool"] if m.round == 2 and m.sender == "ann" and m.kind == "group_chat"
    }
    assert original_r2 and forked_r2 and original_r2.isdisjoint(forked_r2)
    ann_prompts = [c.prompt for c in model.script.calls if c.character == "ann" and c.round == 2]
    assert any("Trust the mayor: 95" in p for p in ann_prompts)
    assert Counter(m.kind for m in forked.values["pool"]) == Counter(m.kind for m in first.values["pool"])
    # the original branch is untouched
    graph = runner.compile_graph("groupchat", checkpointer)
    original = graph.get_state(runner.run_config(thread, first.checkpoint_id))
    assert original.values["personas"]["ann"].beliefs["Trust the mayor"] == 50


@pytest.mark.parametrize("fail_at", [10, 50], ids=["mid-private-chat", "mid-group-chat"])
def test_crash_mid_round_then_resume_finishes_as_an_uninterrupted_run(checkpointer, scripted, fail_at) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = Playbook()
    clean = runner.start_run(
        "groupchat",
        groupchat_input(story(rounds=1)),
        checkpointer,
        Context(model=name),
        thread_id=f"gc-clean-{uuid.uuid4().hex[:8]}",
    )
    clean_perceives = len(model.script.of("Perception"))

    model.script = Playbook()
    model.fail_calls = frozenset({model.calls + fail_at})
    thread = f"gc-crash-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ModelError, match="scripted fault"):
        runner.start_run(
            "groupchat", groupchat_input(story(rounds=1)), checkpointer, Context(model=name), thread_id=thread
        )
    graph = runner.compile_graph("groupchat", checkpointer)
    stopped = graph.get_state(runner.run_config(thread))
    assert stopped.next and stopped.values["round"] == 1
    assert stopped.values["stage"] in (Stage.PRIVATE_CHAT, Stage.GROUP_CHAT)

    resumed = runner.resume_run(checkpointer, thread)
    assert resumed.status == "done"
    assert said(resumed.values) == said(clean.values)  # nothing lost, nothing said twice
    assert len({m.id for m in resumed.values["pool"]}) == len(resumed.values["pool"])
    assert len(model.script.of("Perception")) == clean_perceives  # finished work was not redone
    assert resumed.values["outcome"] == clean.values["outcome"]


def test_forking_where_a_stage_would_be_reentered_says_nothing_twice(checkpointer, scripted) -> None:  # type: ignore[no-untyped-def]
    """At the end of round 1 the fork's node is the sub-round join, whose edge fans out the summaries
    again: the fixed message ids keep the pool free of repeats."""
    name, model = scripted
    model.script = Playbook()
    thread = f"gc-refork-{uuid.uuid4().hex[:8]}"
    first = runner.start_run(
        "groupchat", groupchat_input(story(rounds=1)), checkpointer, Context(model=name), thread_id=thread
    )
    snaps = runner.history(checkpointer, thread)
    end = next(s for s in snaps if s.next == ("advance",) and s.values.get("stage") == Stage.GROUP_CHAT)
    forked = runner.fork_run(
        checkpointer, thread, end.config["configurable"]["checkpoint_id"], {"personas": {"ann": {"plan": "a new plan"}}}
    )
    assert forked.status == "done"
    assert Counter(m.kind for m in forked.values["pool"]) == Counter(m.kind for m in first.values["pool"])
    assert len({m.id for m in forked.values["pool"]}) == len(forked.values["pool"])


def test_a_budget_spent_in_a_parallel_stage_pauses_and_resumes(scripted) -> None:  # type: ignore[no-untyped-def]
    """Every parallel task of the step pauses at once; one resume with a larger budget answers them all."""
    from sopgraph.graphs.runner import open_checkpointer

    name, model = scripted
    model.script = Playbook()
    with open_checkpointer("memory") as saver:
        paused = runner.start_run(
            "groupchat", groupchat_input(story(rounds=1)), saver, Context(model=name, budget_tokens=0), thread_id="b"
        )
        assert paused.status == "paused" and len(paused.interrupts) == 4  # the four parallel updates
        assert {i["reason"] for i in paused.interrupts} == {"budget"}
        done = runner.resume_run(saver, "b", overrides={"budget_tokens": 10**7})
    assert done.status == "done" and done.values["outcome"] is not None


def test_every_groupchat_type_survives_a_checkpoint_round_trip(tmp_path, scripted, caplog) -> None:  # type: ignore[no-untyped-def]
    """Scenario, personas, tasks in Send payloads, ballots, warnings: all rebuilt as their classes, with no
    allow-list warning."""
    from sopgraph.graphs.runner import open_checkpointer
    from sopgraph.state.groupchat import Ballot, ClampWarning, Persona, Scenario

    name, model = scripted
    model.script = Playbook().on("Vote", lambda r, c: {"candidate": c, "reason": "me"})  # clamps: warnings
    with open_checkpointer(str(tmp_path / "types.sqlite")) as saver:
        out = runner.start_run("groupchat", groupchat_input(story(rounds=1)), saver, Context(model=name), thread_id="t")
        snaps = runner.history(saver, "t")
        values = runner.compile_graph("groupchat", saver).get_state(runner.run_config("t")).values
    assert out.status == "done" and len(snaps) > 20
    assert isinstance(values["scenario"], Scenario) and isinstance(values["personas"]["ann"], Persona)
    assert all(isinstance(b, Ballot) for b in values["ballots"]) and values["warnings"]
    assert all(isinstance(w, ClampWarning) for w in values["warnings"])
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "serde" in r.name]
