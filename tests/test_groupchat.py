"""The group-chat stage machine on the scripted model: visibility, acting order, clamping, votes, ablations."""

from __future__ import annotations

import re
import typing
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from groupchat_script import SETTLING, Playbook, action_of, character_of, legal, round_of, scores, stage_of, tag

from sopgraph.graphs.groupchat import build_groupchat_graph, groupchat_input
from sopgraph.nodes.groupchat import prompts, stages
from sopgraph.nodes.groupchat.asking import AT_KEY, ROUND_KEY, SCHEMA_LAST, STAGE_KEY
from sopgraph.nodes.groupchat.rules import acting_order, decide
from sopgraph.nodes.groupchat.stages import memory
from sopgraph.nodes.llm import ROLE_KEY, local_messages, register_model, unregister_model
from sopgraph.nodes.scripted import ScriptedChatModel, ScriptedRequest
from sopgraph.scenarios import load_scenario, parse_scenario
from sopgraph.state.context import Context
from sopgraph.state.groupchat import (
    Ablations,
    Ballot,
    Scenario,
    Stage,
    VoteRule,
)
from sopgraph.state.pool import Message, Visibility


def story(**overrides: Any) -> Scenario:
    """A small story with three principals and one bystander; settings overridable."""
    characters = [
        {
            "id": cid,
            "name": cid.title(),
            "principal": cid != "dora",
            "background": f"{cid.title()} is here.",
            "scratch": f"{cid.title()} keeps a secret.",
            "objective": "Win.",
            "beliefs": {"The river is clean": 50, "Trust the mayor": 50},
        }
        for cid in ("ann", "ben", "cal", "dora")
    ]
    data: dict[str, Any] = {
        "title": "River town",
        "rules": "Four neighbours argue about the river.",
        "characters": characters,
        "resources": overrides.pop("resources", []),
        "settings": {"rounds": 2, "group_subrounds": 2, "seed": 1, **overrides},
    }
    return parse_scenario(data)


def run(
    scripted: tuple[str, Any], scenario: Scenario | str, playbook: Playbook | None = None, **kw: Any
) -> tuple[dict[str, Any], Playbook]:
    name, model = scripted
    playbook = playbook or Playbook()
    model.script = playbook
    graph = build_groupchat_graph().compile()
    ctx = kw.pop("context", None) or Context(model=name)
    out = graph.invoke(groupchat_input(scenario, **kw), context=ctx)
    return out, playbook


def messages(out: dict[str, Any], kind: str) -> list[Message]:
    return [m for m in out["pool"] if m.kind == kind]


@pytest.fixture(scope="module")
def played() -> Iterator[tuple[dict[str, Any], Playbook, Scenario]]:
    """One two-round run, shared by the read-only visibility tests below."""
    name = f"scripted:{uuid.uuid4().hex[:8]}"
    model = ScriptedChatModel()
    register_model(name, model)
    try:
        scenario = story()
        out, book = run((name, model), scenario)
        yield out, book, scenario
    finally:
        unregister_model(name)


# -- a full run ---------------------------------------------------------------------------------------------


def test_every_packaged_story_runs_to_a_settlement(scripted) -> None:  # type: ignore[no-untyped-def]
    for name in ("succession", "court", "philosophers", "casting"):
        out, book = run(scripted, name, rounds=1)
        scenario = load_scenario(name)
        assert out["stage"] == Stage.DONE and out["outcome"] is not None
        votes = out["ballots"]
        assert len(votes) == len(scenario.settings.vote_rules) * len(scenario.characters)
        assert {m.kind for m in out["pool"]} >= {"private_chat", "meeting", "group_chat", "summary", "outcome"}
        assert not out["warnings"], out["warnings"]
        assert {c.character for c in book.calls} == set(scenario.ids)


def test_routes_declare_their_destinations_and_the_graph_draws_them() -> None:
    """A route's return type names the nodes it may return; the graph's labelled edges reach every one of them
    (a route that gains a destination its graph does not draw fails here, not in a run)."""
    builder = build_groupchat_graph()
    drawn: dict[str, set[str]] = {}  # route -> the nodes its edges reach, from every source it routes
    for branches in builder.branches.values():
        for name, branch in branches.items():
            drawn.setdefault(name, set()).update((branch.ends or {}).values())
    assert set().union(*drawn.values()) <= set(builder.nodes)
    for route in (stages.route_stage, stages.route_turn):
        returns = typing.get_type_hints(route)["return"]
        declared = {a for t in typing.get_args(returns) if typing.get_origin(t) is Literal for a in typing.get_args(t)}
        assert declared and declared <= drawn[route.__name__], (route.__name__, declared - drawn[route.__name__])
    assert set(drawn) == {"route_stage", "route_turn", "route_subround", "route_votes"}


def test_stage_order_within_and_across_rounds(played) -> None:  # type: ignore[no-untyped-def]
    out, _, _ = played
    stages: list[tuple[int, str]] = []
    for m in out["pool"]:
        key = (m.round, m.stage)
        if m.stage and (not stages or stages[-1] != key):
            stages.append(key)
    expected = [(0, "setup")]
    for r in (1, 2):
        expected += [(r, "update"), (r, "private_chat"), (r, "meeting"), (r, "group_chat")]
    expected += [(2, "final_update"), (2, "settlement")]
    assert stages == expected


# -- visibility, as seen from each character's prompts ------------------------------------------------------


def test_private_chat_content_never_reaches_a_non_participant(played) -> None:  # type: ignore[no-untyped-def]
    out, book, scenario = played
    chats = messages(out, "private_chat")
    assert chats and all(m.visibility is Visibility.PARTICIPANTS for m in chats)
    for m in chats:
        insiders = m.participants()
        for cid in scenario.ids:
            if cid in insiders:
                continue
            assert m.content not in book.seen_by(cid), (cid, m)
    # the partner does hear it, in the next line of the conversation
    first = chats[0]
    (partner,) = first.send_to
    assert any(first.content in p for p in book.prompts_of(partner, "Speech"))


def test_meeting_existence_is_public_but_its_content_is_not(played) -> None:  # type: ignore[no-untyped-def]
    out, book, scenario = played
    meetings = messages(out, "meeting")
    assert meetings and all(m.visibility is Visibility.EXISTENCE_PUBLIC for m in meetings)
    for m in meetings:
        names = " and ".join(scenario.name_of(c) for c in sorted(m.participants()))
        outsiders = [c for c in scenario.ids if c not in m.participants()]
        for cid in outsiders:
            seen = book.seen_by(cid)
            assert m.content not in seen
            calls = book.of("Speech")
            group = [c.prompt for c in calls if (c.character, c.stage, c.round) == (cid, Stage.GROUP_CHAT, m.round)]
            assert group and all(f"{names} held a confidential meeting." in p for p in group)
        for cid in m.participants():
            assert any(m.content in p for p in book.prompts_of(cid, "Summary"))


def test_group_speech_is_heard_only_after_its_sub_round_closes(played) -> None:  # type: ignore[no-untyped-def]
    out, book, scenario = played
    speeches = messages(out, "group_chat")
    assert speeches and all(m.visibility is Visibility.AFTER_SUBROUND for m in speeches)
    for m in speeches:
        for cid in scenario.ids:
            if cid == m.sender:
                continue
            for prompt in book.prompts_of(cid, "Speech"):
                if f"Round {m.round} of" in prompt and f"sub-round {m.sub_round} of" in prompt:
                    assert m.content not in prompt  # a co-speaker of the same sub-round
                if f"Round {m.round} of" in prompt and f"sub-round {m.sub_round + 1} of" in prompt:
                    assert m.content in prompt  # the next sub-round hears it
    closes = [m for m in out["pool"] if m.kind == "subround_closed"]
    assert [(m.round, m.sub_round) for m in closes] == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_private_notes_stay_private(played) -> None:  # type: ignore[no-untyped-def]
    out, book, scenario = played
    for kind in ("summary", "think", "plan", "snapshot", "choice"):
        notes = messages(out, kind)
        assert notes, kind
        for m in notes:
            assert m.send_to == (m.sender,) and m.visibility is Visibility.PARTICIPANTS
            for cid in scenario.others(m.sender):
                # (an all-knowledge vote is told everyone's memory: that is its rule)
                seen = [p for p in book.prompts_of(cid) if "What everyone came to know" not in p]
                if m.content:
                    assert all(m.content not in p for p in seen), (kind, cid)


def test_memory_is_each_characters_own_append_only_notes(played) -> None:  # type: ignore[no-untyped-def]
    out, _, scenario = played
    for cid in scenario.ids:
        notes = memory(out, cid)
        assert notes and all(m.sender == cid and m.send_to == (cid,) for m in notes)
        assert [m.id for m in notes] == [m.id for m in out["pool"] if m in notes]  # in publication order
        rounds = [m.round for m in notes]
        assert rounds == sorted(rounds) and rounds[-1] == 2
        halfway = {k: v for k, v in out.items() if k != "pool"} | {"pool": out["pool"][: len(out["pool"]) // 2]}
        assert [m.id for m in memory(halfway, cid)] == [m.id for m in notes[: len(memory(halfway, cid))]]


def test_reflection_folds_last_rounds_notes_and_prompts_stay_bounded(played) -> None:  # type: ignore[no-untyped-def]
    out, book, scenario = played
    for cid in scenario.ids:
        (prompt,) = [p for p in book.prompts_of(cid, "Reflect") if "Round 2 of 2. Update" in p]
        notes = [m.content for m in messages(out, "summary") if m.sender == cid and m.round == 1]
        assert notes and all(n in prompt for n in notes)
        later = [m.content for m in messages(out, "summary") if m.sender == cid and m.round == 2]
        assert not any(n in prompt for n in later)
    # round-2 prompts carry the reflection, not round 1's conversations
    r1_lines = [m.content for m in out["pool"] if m.round == 1 and m.kind in {"private_chat", "meeting", "group_chat"}]
    for call in book.calls:
        if call.round == 2 and call.schema == "Speech":
            assert not any(line in call.prompt for line in r1_lines)


def test_non_principals_speak_only_when_chosen_or_in_group_chat(played) -> None:  # type: ignore[no-untyped-def]
    out, _, scenario = played
    chosen = {(m.round, m.stage, m.sub_round): m.payload.partner for m in messages(out, "choice")}  # type: ignore[union-attr]
    actors = {(m.round, m.stage, m.sub_round): m.sender for m in messages(out, "choice")}
    for m in out["pool"]:
        if m.kind in {"private_chat", "meeting"}:
            key = (m.round, m.stage, m.sub_round)
            assert m.sender in {actors[key], chosen[key]}
            assert scenario.character(actors[key]).principal
    assert all(m.sender != "dora" for m in messages(out, "choice"))
    assert {m.sender for m in messages(out, "group_chat")} == set(scenario.ids)


# -- acting order -------------------------------------------------------------------------------------------


def test_principals_act_in_order_of_influence(scripted) -> None:  # type: ignore[no-untyped-def]
    resources = [
        {"id": "mill", "name": "Mill", "owner": "ann", "impact": 10, "description": "A mill."},
        {"id": "bank", "name": "Bank", "owner": "ben", "impact": 40, "description": "A bank."},
        {"id": "boat", "name": "Boat", "owner": "cal", "impact": 25, "description": "A boat."},
        {"id": "farm", "name": "Farm", "owner": "dora", "impact": 90, "description": "Dora is no principal."},
    ]
    out, _ = run(scripted, story(resources=resources, rounds=1))
    for stage in ("private_chat", "meeting"):
        actors = [m.sender for m in messages(out, "choice") if m.stage == stage]
        assert actors == ["ben", "cal", "ann"]


def test_ties_in_influence_are_broken_by_the_seed() -> None:
    orders = set()
    for seed in range(12):
        scenario = story(seed=seed)
        from sopgraph.state.groupchat import Persona

        personas = {c: Persona.initial(scenario, c) for c in scenario.ids}
        first = acting_order(scenario, personas, 1, Stage.PRIVATE_CHAT)
        assert first == acting_order(scenario, personas, 1, Stage.PRIVATE_CHAT)  # deterministic
        assert sorted(first) == ["ann", "ben", "cal"]
        orders.add(tuple(first))
    assert len(orders) > 1  # the seed, not the id, decides ties


# -- clamping -----------------------------------------------------------------------------------------------


def test_illegal_choice_is_reasked_then_clamped_with_a_warning(scripted) -> None:  # type: ignore[no-untyped-def]
    book = Playbook().on("Choice", lambda r, c: {"partner": c, "reason": "myself"})  # never legal
    out, book = run(scripted, story(rounds=1), book, ablate=["meeting"])
    warnings = [w for w in out["warnings"] if w.action == "choose"]
    assert len(warnings) == 3 and all("Choice" in w.problem for w in warnings)
    assert len(book.of("Choice")) == 3 * 3  # each asked, then re-asked twice
    for m in messages(out, "choice"):
        assert m.payload.partner != m.sender and m.payload.reason == "(clamped)"  # type: ignore[union-attr]


def test_a_choice_corrected_on_reask_leaves_no_warning(scripted) -> None:  # type: ignore[no-untyped-def]
    def choose(request: ScriptedRequest, cid: str) -> dict[str, str]:
        fixed = "not a valid" in request.last
        return {"partner": legal(request.schema, "partner")[-1] if fixed else "nobody", "reason": "r"}

    out, book = run(scripted, story(rounds=1), Playbook().on("Choice", choose), ablate=["meeting"])
    assert not out["warnings"]
    assert len(book.of("Choice")) == 6
    assert all(m.payload.reason == "r" for m in messages(out, "choice"))  # type: ignore[union-attr]


def test_reflection_changes_are_reasked_then_clamped(scripted) -> None:  # type: ignore[no-untyped-def]
    def reflect(request: ScriptedRequest, cid: str) -> dict[str, Any]:
        beliefs, feelings = scores(request)
        other = sorted(feelings)[0]
        return {
            "reflection": " ".join(["word"] * 300),
            "relationships": [{"character": other, "score": feelings[other] - 45, "impression": "cold"}],
            "beliefs": [{"belief": "The river is clean", "score": beliefs["The river is clean"] + 70}],
        }

    book = Playbook().on("Reflect", reflect)
    out, book = run(scripted, story(rounds=2), book, ablate=["meeting", "private_chat"])
    reflects = [c for c in book.of("Reflect") if c.round == 2 and c.stage == Stage.UPDATE]
    assert len(reflects) == 4 * 3  # asked and re-asked twice, per character
    assert any("may move from 50 by at most 10" in c.prompt for c in reflects)
    snaps = {(m.sender, m.round, m.stage): m.payload for m in messages(out, "snapshot")}
    for cid in ("ann", "ben", "cal", "dora"):
        before, after = snaps[(cid, 1, "update")], snaps[(cid, 2, "update")]
        assert after.beliefs["The river is clean"] == before.beliefs["The river is clean"] + 10  # type: ignore[union-attr]
        moved = [o for o in after.relationships if after.relationships[o] != before.relationships[o]]  # type: ignore[union-attr]
        assert len(moved) == 1 and after.relationships[moved[0]] == before.relationships[moved[0]] - 10  # type: ignore[union-attr]
        assert len(after.reflection.split()) == 100  # type: ignore[union-attr]
    warned = [w for w in out["warnings"] if w.action == "reflect" and w.round == 2 and w.stage == "update"]
    assert len(warned) == 4 and all("clamped to" in w.fallback for w in warned)


def test_scores_stay_within_0_and_100(scripted) -> None:  # type: ignore[no-untyped-def]
    def reflect(request: ScriptedRequest, cid: str) -> dict[str, Any]:
        beliefs, _ = scores(request)
        up = min(100, beliefs["Trust the mayor"] + 10)
        return {"reflection": "up", "relationships": [], "beliefs": [{"belief": "Trust the mayor", "score": up}]}

    scenario = story(rounds=8, group_subrounds=1, belief_step=10)
    out, _ = run(scripted, scenario, Playbook().on("Reflect", reflect), ablate=["meeting", "private_chat", "think"])
    assert all(p.beliefs["Trust the mayor"] == 100 for p in out["personas"].values())
    assert not [w for w in out["warnings"] if w.action == "reflect"]  # legal steps up to the ceiling


def test_a_refusal_is_asked_again_then_replaced_by_silence(scripted) -> None:  # type: ignore[no-untyped-def]
    refusing = {"ann"}

    def speech(request: ScriptedRequest, cid: str) -> dict[str, str]:
        if cid in refusing:
            return {"speech": "I'm sorry, but I can't assist with that request."}
        return {"speech": f"Ben: {cid} is fine with the mill, at most 60 words."}

    book = Playbook().on("Speech", speech)
    out, book = run(scripted, story(rounds=1, group_subrounds=1), book, ablate=["meeting", "private_chat", "think"])
    said = {m.sender: m.content for m in messages(out, "group_chat")}
    assert said["ann"] == "(says nothing)"
    # the echoed name and instruction cut, Ben's own words kept, his report of himself in the first person
    assert said["ben"] == "I am fine with the mill."
    assert len([c for c in book.of("Speech") if c.character == "ann"]) == 2  # asked once more, naming the refusal
    assert [w.action for w in out["warnings"] if w.character == "ann"] == ["speak"]


def test_long_speech_is_cut_with_a_warning(scripted) -> None:  # type: ignore[no-untyped-def]
    book = Playbook().on("Speech", lambda r, c: {"speech": " ".join(f"{tag(r)}x{i}" for i in range(400))})
    out, _ = run(scripted, story(rounds=1, speech_words=20), book, ablate=["meeting", "private_chat"])
    assert all(len(m.content.split()) == 20 for m in messages(out, "group_chat"))
    assert len([w for w in out["warnings"] if w.action == "speak"]) == 8


# -- votes and winner -------------------------------------------------------------------------------------------


def test_vote_rules_set_what_a_voter_knows_and_whether_it_may_choose_itself(scripted) -> None:  # type: ignore[no-untyped-def]
    book = Playbook().on("Vote", lambda r, c: {"candidate": c, "reason": "me"})  # everyone votes for itself
    out, book = run(scripted, story(rounds=1), book, ablate=["meeting"])
    ballots = {(b.rule, b.voter): b for b in out["ballots"]}
    assert len(ballots) == 4 * 4
    for voter in ("ann", "ben", "cal"):
        assert ballots[(VoteRule.OWN_SELF, voter)].candidate == voter
        assert ballots[(VoteRule.ALL_SELF, voter)].candidate == voter
        for rule in (VoteRule.OWN_NOSELF, VoteRule.ALL_NOSELF):
            b = ballots[(rule, voter)]
            assert b.candidate != voter and b.clamped
    assert ballots[(VoteRule.OWN_SELF, "dora")].clamped  # not a candidate at all: re-asked, then clamped
    vote_warnings = [w for w in out["warnings"] if w.action == "vote"]
    assert len(vote_warnings) == 2 * 3 + 4  # noself rules for the three candidates; dora under all four
    reflections = {cid: p.reflection for cid, p in out["personas"].items()}
    for voter in ("ann", "dora"):
        own = [c.prompt for c in book.of("Vote") if c.character == voter and "What you came to know" in c.prompt]
        every = [c.prompt for c in book.of("Vote") if c.character == voter and "What everyone came to know" in c.prompt]
        assert own and every
        for other, text in reflections.items():
            if other != voter:
                assert all(text not in p for p in own)
                assert all(text in p for p in every)


def _ballots(rule: VoteRule, votes: dict[str, str]) -> list[Ballot]:
    return [Ballot(id=f"{rule}:{v}", voter=v, rule=rule, candidate=c) for v, c in votes.items()]


def test_most_votes_wins_and_ties_are_broken_by_the_seed() -> None:
    rule = VoteRule.OWN_NOSELF
    clear = decide(story(), _ballots(rule, {"ann": "ben", "ben": "cal", "cal": "ben", "dora": "ben"}))
    assert clear.winner == "ben" and not clear.tie_broken and clear.tallies[rule.value]["ben"] == 3
    winners = set()
    for seed in range(16):
        tie = decide(story(seed=seed), _ballots(rule, {"ann": "ben", "ben": "ann", "cal": "ann", "dora": "ben"}))
        assert tie.tie_broken and tie.winner in {"ann", "ben"}
        assert tie == decide(
            story(seed=seed), _ballots(rule, {"ann": "ben", "ben": "ann", "cal": "ann", "dora": "ben"})
        )
        winners.add(tie.winner)
    assert winners == {"ann", "ben"}


def test_weighted_threshold_and_judge_rules() -> None:
    rule = VoteRule.OWN_NOSELF
    resources = [
        {"id": "a", "name": "A", "owner": "ann", "impact": 10, "description": "x"},
        {"id": "d", "name": "D", "owner": "dora", "impact": 50, "description": "x"},
        {"id": "c", "name": "C", "owner": "cal", "impact": 40, "description": "x"},
    ]
    weighted = story(resources=resources, winner={"kind": "weighted_threshold", "threshold": 0.5})
    votes = {"ann": "ben", "ben": "cal", "cal": "ben", "dora": "cal"}  # ben: 10+40, cal: 0+50
    result = decide(weighted, _ballots(rule, votes))
    assert result.winner in {"ben", "cal"} and result.tie_broken  # 50% each
    strict = story(resources=resources, winner={"kind": "weighted_threshold", "threshold": 0.6})
    short = decide(strict, _ballots(rule, votes))
    assert short.winner is None and "no candidate reached 60%" in short.explanation
    won = decide(strict, _ballots(rule, {"ann": "cal", "dora": "cal", "cal": "ben"}))  # cal: 10 + 50
    assert won.winner == "cal" and not won.tie_broken
    judged = story(winner={"kind": "judge", "judge": "dora", "candidates": ["ann", "ben"]})
    assert decide(judged, _ballots(rule, {"ann": "ben", "ben": "ann", "cal": "ann", "dora": "ben"})).winner == "ben"


# -- ablations ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ablation", "absent_kinds", "absent_calls"),
    [
        ("private_chat", {"private_chat"}, set()),
        ("meeting", {"meeting"}, set()),
        ("group_chat", {"group_chat", "subround_closed"}, set()),
        ("reflection", set(), {"Reflect"}),
        ("think", {"think"}, {"Thought"}),
    ],
)
def test_each_ablation_switches_its_stage_or_action_off(scripted, ablation, absent_kinds, absent_calls) -> None:  # type: ignore[no-untyped-def]
    out, book = run(scripted, story(rounds=2, group_subrounds=1), ablate=[ablation])
    kinds = {m.kind for m in out["pool"]}
    calls = {c.schema for c in book.calls}
    assert not kinds & absent_kinds and not calls & absent_calls
    everything = {"private_chat", "meeting", "group_chat", "think", "summary", "outcome"} - absent_kinds
    assert everything <= kinds  # the rest still runs
    assert out["ablations"] == Ablations.of([ablation]) and out["outcome"] is not None
    if ablation == "reflection":
        initial = story().characters[0].beliefs
        assert all(p.beliefs == initial for p in out["personas"].values())
        assert not [m for m in out["pool"] if m.stage == Stage.FINAL_UPDATE]


def test_with_every_stage_off_the_story_still_settles(scripted) -> None:  # type: ignore[no-untyped-def]
    out, book = run(scripted, story(rounds=2), ablate=["private_chat", "meeting", "group_chat", "reflection", "think"])
    assert {c.schema for c in book.calls} == {"Perception", "Vote"}
    assert out["outcome"] is not None and len(out["ballots"]) == 16


def test_unknown_ablation_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown ablation 'gossip'; known: private_chat, meeting"):
        Ablations.of(["gossip"])
    assert Ablations.of(["no-meeting", "confidential_meeting"]) == Ablations(no_meeting=True)


# -- prompts stay flat ----------------------------------------------------------------------------------------


def test_prompt_tokens_per_call_do_not_grow_with_rounds(scripted) -> None:  # type: ignore[no-untyped-def]
    _, book = run(scripted, story(rounds=4, group_subrounds=1), ablate=["think"])
    by_round: dict[int, list[int]] = {}
    for call in book.calls:
        if not call.settling:
            by_round.setdefault(call.round, []).append(call.tokens)
    means = {r: sum(t) / len(t) for r, t in by_round.items()}
    peaks = {r: max(t) for r, t in by_round.items()}
    assert max(means[r] for r in (2, 3, 4)) <= 1.1 * min(means[r] for r in (2, 3, 4)), means
    assert max(peaks.values()) <= 1.15 * peaks[2], peaks


def test_local_requests_add_a_short_field_list_that_stays_flat(scripted) -> None:  # type: ignore[no-untyped-def]
    """As the embedded server gets them (`local_messages`: the field list after the prompt), a character's
    requests add a bounded tail that names each key of the reply and no JSON schema, and stay as flat over
    rounds as the prompts themselves."""
    run(scripted, story(rounds=4, group_subrounds=1), ablate=["think"])
    by_round: dict[int, list[int]] = {}
    for request in scripted[1].requests:
        rest = [m for m in request.messages if m.type != "system"]
        served = local_messages(request.schema, rest, request.system or None, SCHEMA_LAST)
        assert served[0].content == request.system  # the card alone: the cached prefix
        tail = str(served[-1].content).removeprefix(str(rest[-1].content))
        keys = re.findall(r'^ *"(\w+)"', tail, re.MULTILINE)
        assert set(keys) >= set(request.schema.model_fields) and "properties" not in tail, tail
        assert len(tail) < 700, tail
        if round_of(request) and stage_of(request) not in SETTLING:
            by_round.setdefault(round_of(request), []).append(sum(len(str(m.content)) for m in served))
    means = {r: sum(n) / len(n) for r, n in by_round.items()}
    assert max(means[r] for r in (2, 3, 4)) <= 1.1 * min(means[r] for r in (2, 3, 4)), means


# -- prompts keep a stable prefix (the embedded server's prompt cache) -----------------------------------------


def test_a_characters_requests_keep_a_stable_prefix(scripted) -> None:  # type: ignore[no-untyped-def]
    """llama.cpp's server reuses only the common prefix of a prompt and one it processed before
    (benchmarks/groupchat_prompt_cache.py): a character's system message is the same text in every request of
    a story, and the line it speaks after a thought repeats the thought's prompt up to its instruction."""
    scenario = load_scenario("philosophers")
    run(scripted, scenario, rounds=2)
    requests = scripted[1].requests
    for spec in scenario.characters:
        mine = [r for r in requests if character_of(r) == spec.id]
        assert {action_of(r) for r in mine} >= {"perceive", "think", "speak", "summarize", "reflect", "vote"}
        assert len({r.system for r in mine}) == 1, spec.id
        assert "Reply with" not in mine[0].system
    where = (ROLE_KEY, ROUND_KEY, STAGE_KEY, AT_KEY)
    thoughts = [r for r in requests if action_of(r) == "think"]
    for think in thoughts:
        name = scenario.name_of(character_of(think))
        situation, found = think.messages[1].content.split("\n" + prompts.THINK.format(name=name))[0], False
        for speak in requests:
            if action_of(speak) == "speak" and all(speak.metadata[k] == think.metadata[k] for k in where):
                assert str(speak.messages[1].content).startswith(f"{situation}\n"), (think.metadata, speak.last)
                found = True
        assert found, think.metadata
    assert len(thoughts) == 40


def test_votes_start_one_character_at_a_time(scripted) -> None:  # type: ignore[no-untyped-def]
    """The votes that start together are different characters': each reuses its own cached prompt, and a
    character's next ballot starts beside its first."""
    scenario = load_scenario("philosophers")
    out, _ = run(scripted, scenario, rounds=1)
    sends = stages.route_votes(out)
    voters = [send.arg.character for send in sends]
    n = len(scenario.ids)
    assert all(sorted(voters[i : i + n]) == sorted(scenario.ids) for i in range(0, len(voters), n))
    papers = sorted((send.arg.character, send.arg.papers[0].rule.value) for send in sends)
    assert papers == sorted((cid, rule.value) for cid in scenario.ids for rule in scenario.settings.vote_rules)


def _impressions(request: ScriptedRequest, cid: str) -> dict[str, Any]:
    """A reflection as long as allowed, a long impression of everyone, feelings moved within the bounds."""
    _, feelings = scores(request)
    return {
        "reflection": " ".join(f"{cid}-memory-{i}" for i in range(300)),
        "relationships": [
            {"character": o, "score": max(0, s - 5), "impression": f"{cid} finds {o} " + "very " * 30 + "sly"}
            for o, s in feelings.items()
        ],
        "beliefs": [],
    }


def test_each_character_is_prompted_in_its_own_words(scripted) -> None:  # type: ignore[no-untyped-def]
    scenario = load_scenario("philosophers")
    _, book = run(scripted, scenario, Playbook().on("Reflect", _impressions), rounds=2)
    for spec in scenario.characters:
        system = {c.prompt.split("\n")[0] for c in book.calls if c.character == spec.id}
        seen = book.seen_by(spec.id)
        assert spec.scratch.split(".")[0] in seen and spec.objective in seen  # its own secret and goal
        later = [c.prompt for c in book.calls if c.character == spec.id and c.round == 2 and c.schema == "Speech"]
        assert later and all(f"{spec.id} finds" in p for p in later)  # its feelings, in its own words
        for other in scenario.characters:
            if other.id != spec.id:
                assert other.objective not in seen and f"{other.id} finds" not in seen
                assert all(f"{other.name} ({other.id}) " in p for p in later)  # others called by name
        assert len(system) == 1


def test_prompts_stay_flat_with_the_longest_memories(scripted) -> None:  # type: ignore[no-untyped-def]
    _, book = run(scripted, story(rounds=6, group_subrounds=1), Playbook().on("Reflect", _impressions))
    by_round: dict[int, list[int]] = {}
    for call in book.calls:
        if not call.settling:
            by_round.setdefault(call.round, []).append(call.tokens)
    means = {r: sum(t) / len(t) for r, t in by_round.items()}
    # round 2 is the first with a memory, round 3 the first whose memory has been rewritten once: from then
    # on, nothing grows (the reflection and the impressions are bounded, notes are this round's only)
    assert max(means[r] for r in range(3, 7)) <= 1.01 * min(means[r] for r in range(3, 7)), means
    assert means[6] <= 1.1 * means[2], means
    speech = {r: max(c.tokens for c in book.of("Speech") if c.round == r) for r in range(3, 7)}
    assert max(speech.values()) <= 1.02 * min(speech.values()), speech
