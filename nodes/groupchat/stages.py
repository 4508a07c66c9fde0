"""The nodes and routes of the group-chat stage machine.

setup → [update → private chat → confidential meeting → group chat × sub-rounds] × rounds → final update
→ settlement (votes) → tally. `advance` is the join after every unit of work; it writes the next stage and
`route_stage` turns that into the next node (or the parallel `Send`s of a stage). Everything a character
is shown is read through `pool.view` as that character; parallel tasks get exactly that view in their
`Send` payload, never the raw pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import zip_longest
from typing import Any, Final, Literal

from langgraph.runtime import Runtime
from langgraph.types import Send

from sopgraph.nodes.groupchat import actions, hygiene, prompts
from sopgraph.nodes.groupchat.asking import Player, Where, usage
from sopgraph.nodes.groupchat.rules import ONE_ON_ONE, acting_order, decide, stage_enabled
from sopgraph.nodes.progress import emit
from sopgraph.state.context import Context
from sopgraph.state.groupchat import (
    Ablations,
    Ballot,
    BallotPaper,
    ChatCursor,
    GroupChatState,
    Persona,
    PersonaPatch,
    PersonaSnapshot,
    Scenario,
    SpeakTask,
    Stage,
    SummarizeTask,
    UpdateTask,
    VoteRule,
    VoteTask,
    merge_personas,
)
from sopgraph.state.pool import SYSTEM, Message, Pool, Subscription, Visibility, close_subround
from sopgraph.state.usage import UsageTotals


class Node:
    """The node names: graphs/groupchat.py registers the nodes under them, the routes below return them (their
    return types say which), and `Send`s address them. Plain strings, as LangGraph stores them in checkpoints."""

    SETUP: Final = "setup"
    UPDATE: Final = "update"
    ADVANCE: Final = "advance"
    PRIVATE_CHAT: Final = "private_chat"
    PRIVATE_TURN: Final = "private_turn"
    MEETING: Final = "meeting"
    MEETING_TURN: Final = "meeting_turn"
    SUMMARIZE: Final = "summarize"
    SPEAK: Final = "speak"
    CLOSE_SUBROUND: Final = "close_subround"
    SETTLEMENT: Final = "settlement"
    VOTE: Final = "vote"
    TALLY: Final = "tally"


OpenNode = Literal["private_chat", "meeting"]
TurnNode = Literal["private_turn", "meeting_turn"]

EVERYTHING = Subscription(all_kinds=True, own=True)
STAGE_ORDER = (Stage.PRIVATE_CHAT, Stage.MEETING, Stage.GROUP_CHAT)
TURN_NODE: dict[Stage, TurnNode] = {Stage.PRIVATE_CHAT: Node.PRIVATE_TURN, Stage.MEETING: Node.MEETING_TURN}
OPEN_NODE: dict[Stage, OpenNode] = {Stage.PRIVATE_CHAT: Node.PRIVATE_CHAT, Stage.MEETING: Node.MEETING}
VISIBILITY = {Stage.PRIVATE_CHAT: Visibility.PARTICIPANTS, Stage.MEETING: Visibility.EXISTENCE_PUBLIC}

# Message kinds (`Message.kind`) of what the stages publish besides the spoken lines (whose kind is their stage).
SUMMARY = "summary"
SNAPSHOT = "snapshot"
PLAN = "plan"
THINK = "think"
CHOICE = "choice"
INTRO = "setup"
NOTICE = "settlement"
OUTCOME = "outcome"


# -- reading state ----------------------------------------------------------------------------------------


def scenario_of(state: Any) -> Scenario:
    value = state["scenario"]
    return value if isinstance(value, Scenario) else Scenario.model_validate(value)


def ablations_of(state: Any) -> Ablations:
    value = state.get("ablations")
    if value is None:
        return Ablations()
    return value if isinstance(value, Ablations) else Ablations.model_validate(value)


def context_of(runtime: Runtime[Context] | None) -> Context:
    return getattr(runtime, "context", None) or Context()


def spent(state: GroupChatState) -> UsageTotals:
    return UsageTotals.of(state.get("usage") or [])


def seen_by(state: GroupChatState, cid: str) -> list[Message]:
    """Everything `cid` may see, as it may see it: the only way a prompt is filled from the pool."""
    return Pool(state.get("pool")).view(cid, EVERYTHING)


MEMORY_KINDS = frozenset({SUMMARY, SNAPSHOT, PLAN, THINK, CHOICE})


def memory(state: GroupChatState, cid: str) -> list[Message]:
    """A character's memory: its own private notes in the pool, oldest first (append-only, as the pool)."""
    return [m for m in seen_by(state, cid) if m.sender == cid and m.kind in MEMORY_KINDS]


def own_notes(seen: Sequence[Message], cid: str, round_: int) -> list[str]:
    return [m.content for m in seen if m.kind == SUMMARY and m.sender == cid and m.round == round_]


def news(scenario: Scenario, seen: Sequence[Message], round_: int) -> list[str]:
    """Public facts of the round: the confidential meetings the viewer was not part of."""
    out: dict[tuple[int, frozenset[str]], str] = {}
    for m in seen:
        if m.redacted and m.round == round_:
            who = m.participants()
            names = " and ".join(scenario.name_of(c) for c in sorted(who))
            out.setdefault((m.sub_round, who), f"{names} held a confidential meeting.")
    return list(out.values())


SPOKEN = frozenset({Stage.PRIVATE_CHAT.value, Stage.MEETING.value, Stage.GROUP_CHAT.value})
HEARD_LINES = 40
"""How many of the latest spoken lines a speaker's reply is checked against for self-repeats and copies."""


def spoken(seen: Sequence[Message]) -> list[Message]:
    """The lines said in a run, as a viewer saw them (no silences, no redacted meetings)."""
    return [m for m in seen if m.kind in SPOKEN and not m.redacted and m.content != prompts.SILENT]


def heard(
    scenario: Scenario, seen: Sequence[Message], cid: str, system: str, card: str, task: str, listener: str
) -> hygiene.Heard:
    """What `cid`'s next line to `listener` (a name, or `prompts.EVERYONE`) is checked against: its prompt
    (card and instruction; not the dialogue, nor the thought it just had, which a line may well say aloud),
    its own earlier lines, and the others' lines it heard."""
    lines = spoken(seen)[-HEARD_LINES:]
    return hygiene.Heard(
        name=scenario.name_of(cid),
        prompt=(system, card, task),
        own=[m.content for m in lines if m.sender == cid],
        others=[(scenario.name_of(m.sender), m.content) for m in lines if m.sender != cid],
        templates=prompts.INSTRUCTIONS,
        listener=listener,
        cast=[c.name for c in scenario.characters],
    )


def key(round_: int, stage: Stage | str, *parts: object) -> str:
    """A message id fixed by where the message belongs: a node run twice (a retry, a fork that re-enters a
    stage) republishes the same ids, which the pool drops, so nothing is ever said twice."""
    return ":".join(str(p) for p in (round_, Stage(stage).value, *parts))


def private_note(
    cid: str, kind: str, content: str, round_: int, stage: Stage, payload: Any = None, sub_round: int = 0
) -> Message:
    """A message only its author sees: memory, plans, thoughts, choices."""
    return Message(
        id=key(round_, stage, sub_round, cid, kind),
        sender=cid,
        send_to=(cid,),
        visibility=Visibility.PARTICIPANTS,
        kind=kind,
        content=content,
        payload=payload,
        round=round_,
        stage=stage.value,
        sub_round=sub_round,
    )


def snapshot(persona: Persona, round_: int, stage: Stage) -> Message:
    doc = PersonaSnapshot(
        character=persona.id,
        round=round_,
        beliefs=dict(persona.beliefs),
        relationships={o: r.score for o, r in persona.relationships.items()},
        reflection=persona.reflection,
    )
    return private_note(persona.id, SNAPSHOT, persona.reflection or persona.plan, round_, stage, payload=doc)


# -- setup and transitions ------------------------------------------------------------------------------------


def setup(state: GroupChatState) -> dict[str, Any]:
    scenario = scenario_of(state)
    personas = {cid: Persona.initial(scenario, cid) for cid in scenario.ids}
    cast = "; ".join(f"{c.name} ({c.id})" for c in scenario.characters)
    intro = Message(
        id=key(0, Stage.SETUP, "intro"),
        sender=SYSTEM,
        kind=INTRO,
        content=f"{scenario.title}. {scenario.rules.strip()} Cast: {cast}.",
        stage=Stage.SETUP.value,
    )
    announce(scenario, 1, Stage.UPDATE)
    return {
        "scenario": scenario,
        "ablations": ablations_of(state),
        "personas": personas,
        "round": 1,
        "stage": Stage.UPDATE,
        "order": [],
        "actor": 0,
        "chat": None,
        "sub_round": 0,
        "pool": [intro, *(snapshot(p, 0, Stage.SETUP) for p in personas.values())],
    }


def _enter(state: GroupChatState, stages: Sequence[Stage]) -> dict[str, Any]:
    """The first enabled stage among `stages` that has work, else the end of the round."""
    scenario, ablations = scenario_of(state), ablations_of(state)
    round_ = state["round"]
    for stage in stages:
        if not stage_enabled(ablations, stage):
            continue
        if stage in ONE_ON_ONE:
            order = acting_order(scenario, state["personas"], round_, stage)
            if order:
                return {"stage": stage, "order": order, "actor": 0, "chat": None}
            continue
        return {"stage": stage, "sub_round": 1, "chat": None}
    if round_ < scenario.settings.rounds:
        return {"round": round_ + 1, "stage": Stage.UPDATE, "order": [], "actor": 0, "chat": None}
    if stage_enabled(ablations, Stage.FINAL_UPDATE):
        return {"stage": Stage.FINAL_UPDATE, "chat": None}
    return {"stage": Stage.SETTLEMENT, "chat": None}


def announce(scenario: Scenario, round_: int, stage: Stage, sub_round: int = 0) -> None:
    """A `stage` stream event as a stage (or a group-chat sub-round) starts."""
    where = f"round {round_} of {scenario.settings.rounds}: {stage.value.replace('_', ' ')}"
    if stage == Stage.GROUP_CHAT:
        where += f", sub-round {sub_round} of {scenario.settings.group_subrounds}"
    fields = {"stage": stage.value, "round": round_, "rounds": scenario.settings.rounds, "sub_round": sub_round}
    emit("stage", where, **fields)


def advance(state: GroupChatState) -> dict[str, Any]:
    """A unit of work is done (an update, a conversation, a group chat): decide what comes next."""
    update = _next(state)
    stage, round_ = update.get("stage", state["stage"]), update.get("round", state["round"])
    if stage != state["stage"] or round_ != state["round"]:
        announce(scenario_of(state), round_, Stage(stage), update.get("sub_round", 0))
    return update


def _next(state: GroupChatState) -> dict[str, Any]:
    stage = state["stage"]
    if stage == Stage.UPDATE:
        return _enter(state, STAGE_ORDER)
    if stage == Stage.FINAL_UPDATE:
        return {"stage": Stage.SETTLEMENT}
    if stage in ONE_ON_ONE:
        nxt = state["actor"] + 1
        if nxt < len(state["order"]):
            return {"actor": nxt, "chat": None}
        return _enter(state, STAGE_ORDER[STAGE_ORDER.index(stage) + 1 :])
    if stage == Stage.GROUP_CHAT:
        return _enter(state, ())
    raise ValueError(f"advance: nothing follows stage {stage!r}")


def route_stage(state: GroupChatState) -> Literal["private_chat", "meeting", "settlement"] | list[Send]:
    """The conditional edge of the stage machine: an update or a group-chat sub-round fans out (`Send`s to
    `Node.UPDATE`, `Node.SPEAK`)."""
    stage = state["stage"]
    if stage in (Stage.UPDATE, Stage.FINAL_UPDATE):
        return update_sends(state)
    if stage in ONE_ON_ONE:
        return OPEN_NODE[stage]
    if stage == Stage.GROUP_CHAT:
        return speak_sends(state)
    return Node.SETTLEMENT


# -- update (parallel) -------------------------------------------------------------------------------------


def update_sends(state: GroupChatState) -> list[Send]:
    scenario, ablations = scenario_of(state), ablations_of(state)
    final = state["stage"] == Stage.FINAL_UPDATE
    round_ = state["round"]
    last = round_ if final else round_ - 1
    reflect = not ablations.no_reflection and last >= 1
    sends = []
    for cid in scenario.ids:
        notes = own_notes(seen_by(state, cid), cid, last) if reflect else []
        task = UpdateTask(
            character=cid,
            round=round_,
            scenario=scenario,
            persona=state["personas"][cid],
            spent=spent(state),
            notes=notes,
            reflect=reflect,
            perceive=not final,
            final=final,
        )
        sends.append(Send(Node.UPDATE, task))
    return sends


def update(task: UpdateTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """Reflect on the last round (bounded changes, folded memory), then perceive and plan this one."""
    scenario, cid = task.scenario, task.character
    player = Player(scenario.character(cid), context_of(runtime), task.spent)
    stage = Stage.FINAL_UPDATE if task.final else Stage.UPDATE
    persona = task.persona
    patch = PersonaPatch()
    warnings = []
    pool: list[Message] = []
    if task.reflect:
        patch, warned = actions.reflect(player, scenario, persona, task.round, task.notes, final=task.final)
        warnings += warned
        persona = merge_personas({cid: persona}, {cid: patch})[cid]
    if task.perceive:
        seen, warned = actions.perceive(player, scenario, persona, task.round)
        warnings += warned
        patch = patch.model_copy(update={"plan": seen.plan})
        persona = persona.model_copy(update={"plan": seen.plan})
        if seen.situation or seen.plan:
            text = f"{seen.situation} Plan: {seen.plan}".strip()
            pool.append(private_note(cid, PLAN, text, task.round, stage))
    pool.append(snapshot(persona, task.round, stage))
    return {"personas": {cid: patch}, "pool": pool, "warnings": warnings, **usage(player)}


# -- one-on-one stages: private chat, confidential meeting --------------------------------------------------


def open_chat(stage: Stage) -> Any:
    """The node where the acting principal chooses a partner (legal ids only)."""

    def node(state: GroupChatState, runtime: Runtime[Context]) -> dict[str, Any]:
        scenario, round_ = scenario_of(state), state["round"]
        index = state["actor"]
        actor = state["order"][index]
        persona = state["personas"][actor]
        seen = seen_by(state, actor)
        context = prompts.round_context(own_notes(seen, actor, round_), news(scenario, seen, round_))
        player = Player(scenario.character(actor), context_of(runtime), spent(state))
        choice, warnings = actions.choose(
            player, scenario, persona, round_, stage, scenario.others(actor), context=context
        )
        lines = 2 * (
            scenario.settings.private_turns if stage == Stage.PRIVATE_CHAT else scenario.settings.meeting_turns
        )
        cursor = ChatCursor(stage=stage, index=index, actor=actor, partner=choice.partner, lines=lines)
        note = private_note(actor, CHOICE, f"chose {choice.partner}: {choice.reason}", round_, stage, choice, index)
        return {"chat": cursor, "pool": [note], "warnings": warnings, **usage(player)}

    node.__name__ = OPEN_NODE[stage]
    return node


def _situation(
    scenario: Scenario, persona: Persona, seen: Sequence[Message], round_: int, stage: Stage, sub_round: int
) -> str:
    return prompts.compose(
        prompts.memory(persona, scenario),
        prompts.round_context(own_notes(seen, persona.id, round_), news(scenario, seen, round_)),
        prompts.header(scenario, round_, stage, sub_round),
    )


def chat_turn(stage: Stage) -> Any:
    """One line of a one-on-one conversation (a node of its own: a crash or a question to a person
    repeats one line, not the conversation)."""

    def node(state: GroupChatState, runtime: Runtime[Context]) -> dict[str, Any]:
        scenario, round_ = scenario_of(state), state["round"]
        chat = state["chat"]
        assert chat is not None
        speaker, listener = (chat.actor, chat.partner) if chat.turn % 2 == 0 else (chat.partner, chat.actor)
        persona = state["personas"][speaker]
        seen = seen_by(state, speaker)
        convo = [m for m in seen if m.kind == stage.value and m.round == round_ and m.sub_round == chat.index]
        situation = prompts.join(
            _situation(scenario, persona, seen, round_, stage, chat.index),
            prompts.transcript(scenario, convo, f"Your {prompts.WHAT[stage]} so far", "(you speak first)"),
        )
        player = Player(scenario.character(speaker), context_of(runtime), spent(state))
        where = Where(round_, stage.value, speaker, at=f"conversation {chat.index} line {chat.turn}")
        emit(
            "speaker",
            f"{scenario.name_of(speaker)} speaks to {scenario.name_of(listener)} (round {round_}, "
            f"{prompts.WHAT[stage]}, line {chat.turn + 1} of {chat.lines})",
            **_speaker(scenario, speaker, round_, stage, chat.index),
            to=listener,
            line=chat.turn + 1,
            lines=chat.lines,
        )
        name, partner = scenario.name_of(speaker), scenario.name_of(listener)
        template = prompts.REPLY_ONE if convo else prompts.SPEAK_ONE
        instruction = template.format(name=name, partner_name=partner)
        system = prompts.system_prompt(scenario, speaker)
        card = _situation(scenario, persona, seen, round_, stage, chat.index)
        checked = heard(scenario, seen, speaker, system, card, instruction, partner)
        pool: list[Message] = []
        thought = ""
        warnings: actions.Warnings = []
        if not ablations_of(state).no_think:
            thought, warnings = actions.think(player, scenario, persona, situation, where, checked)
            if thought:
                note = private_note(speaker, THINK, thought, round_, stage, sub_round=chat.index)
                pool.append(note.model_copy(update={"id": f"{note.id}:{chat.turn}"}))
        task = prompts.join(prompts.THOUGHT.format(name=name, thought=thought) if thought else "", instruction)
        text, check, warned = actions.speak(player, scenario, persona, situation, task, where, checked)
        pool.append(
            Message(
                id=key(round_, stage, chat.index, chat.turn, speaker),
                sender=speaker,
                send_to=(listener,),
                visibility=VISIBILITY[stage],
                kind=stage.value,
                content=text,
                payload=check,
                round=round_,
                stage=stage.value,
                sub_round=chat.index,
            )
        )
        return {
            "chat": chat.model_copy(update={"turn": chat.turn + 1}),
            "pool": pool,
            "warnings": warnings + warned,
            **usage(player),
        }

    node.__name__ = TURN_NODE[stage]
    return node


def _speaker(scenario: Scenario, cid: str, round_: int, stage: Stage, sub_round: int) -> dict[str, Any]:
    """The fields of a `speaker` stream event (who speaks, where)."""
    who = {"character": cid, "name": scenario.name_of(cid)}
    return {**who, "stage": stage.value, "round": round_, "sub_round": sub_round}


def route_turn(state: GroupChatState) -> TurnNode | list[Send]:
    """The next line, or both sides' summaries (`Send`s to `Node.SUMMARIZE`) once the conversation is over."""
    chat = state["chat"]
    assert chat is not None
    if chat.turn < chat.lines:
        return TURN_NODE[chat.stage]
    return [summarize_send(state, cid, chat.stage, chat.index) for cid in (chat.actor, chat.partner)]


# -- summaries (parallel) ------------------------------------------------------------------------------------


def summarize_send(state: GroupChatState, cid: str, stage: Stage, sub_round: int) -> Send:
    round_ = state["round"]
    seen = seen_by(state, cid)
    if stage == Stage.GROUP_CHAT:
        lines = [m for m in seen if m.kind == stage.value and m.round == round_]
    else:
        lines = [m for m in seen if m.kind == stage.value and m.round == round_ and m.sub_round == sub_round]
    task = SummarizeTask(
        character=cid,
        round=round_,
        scenario=scenario_of(state),
        persona=state["personas"][cid],
        spent=spent(state),
        stage=stage,
        sub_round=sub_round,
        lines=lines,
    )
    return Send(Node.SUMMARIZE, task)


def summarize(task: SummarizeTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """A character's own summary of a conversation: its memory (private to itself)."""
    player = Player(task.scenario.character(task.character), context_of(runtime), task.spent)
    text, warnings = actions.summarize(
        player, task.scenario, task.persona, task.round, task.stage, task.lines, task.sub_round
    )
    note = private_note(task.character, SUMMARY, text, task.round, task.stage, sub_round=task.sub_round)
    return {"pool": [note], "warnings": warnings, **usage(player)}


# -- group chat (parallel speakers per sub-round) ---------------------------------------------------------------


def speak_sends(state: GroupChatState) -> list[Send]:
    scenario, round_ = scenario_of(state), state["round"]
    think = not ablations_of(state).no_think
    sends = []
    for cid in scenario.ids:
        seen = seen_by(state, cid)
        task = SpeakTask(
            character=cid,
            round=round_,
            scenario=scenario,
            persona=state["personas"][cid],
            spent=spent(state),
            sub_round=state["sub_round"],
            heard=[m for m in seen if m.kind == Stage.GROUP_CHAT.value and m.round == round_],
            earlier=spoken(seen)[-HEARD_LINES:],
            facts=news(scenario, seen, round_),
            notes=own_notes(seen, cid, round_),
            think=think,
        )
        sends.append(Send(Node.SPEAK, task))
    return sends


def speak(task: SpeakTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """One character's group-chat speech, visible to the others once the sub-round closes."""
    scenario, cid, round_ = task.scenario, task.character, task.round
    stage = Stage.GROUP_CHAT
    persona = task.persona
    card = prompts.compose(
        prompts.memory(persona, scenario),
        prompts.round_context(task.notes, task.facts),
        prompts.header(scenario, round_, stage, task.sub_round),
    )
    situation = prompts.join(
        card, prompts.transcript(scenario, task.heard, "Said in the group so far", "(nothing yet)")
    )
    player = Player(scenario.character(cid), context_of(runtime), task.spent)
    where = Where(round_, stage.value, cid, at=f"sub-round {task.sub_round}")
    emit(
        "speaker",
        f"{scenario.name_of(cid)} speaks (round {round_}, group chat, sub-round {task.sub_round})",
        **_speaker(scenario, cid, round_, stage, task.sub_round),
    )
    name = scenario.name_of(cid)
    instruction = (prompts.REPLY_GROUP if spoken(task.heard) else prompts.SPEAK_GROUP).format(name=name)
    system = prompts.system_prompt(scenario, cid)
    checked = heard(scenario, task.earlier, cid, system, card, instruction, prompts.EVERYONE)
    pool: list[Message] = []
    thought = ""
    warnings: actions.Warnings = []
    if task.think:
        thought, warnings = actions.think(player, scenario, persona, situation, where, checked)
        if thought:
            pool.append(private_note(cid, THINK, thought, round_, stage, sub_round=task.sub_round))
    ask = prompts.join(prompts.THOUGHT.format(name=name, thought=thought) if thought else "", instruction)
    text, check, warned = actions.speak(player, scenario, persona, situation, ask, where, checked)
    pool.append(
        Message(
            id=key(round_, stage, task.sub_round, cid, "speech"),
            sender=cid,
            kind=stage.value,
            content=text,
            payload=check,
            visibility=Visibility.AFTER_SUBROUND,
            round=round_,
            stage=stage.value,
            sub_round=task.sub_round,
        )
    )
    return {"pool": pool, "warnings": warnings + warned, **usage(player)}


def close(state: GroupChatState) -> dict[str, Any]:
    """The join after a sub-round's speeches: they become visible to everyone."""
    marker = close_subround(state["round"], Stage.GROUP_CHAT.value, state["sub_round"])
    if state["sub_round"] < scenario_of(state).settings.group_subrounds:
        announce(scenario_of(state), state["round"], Stage.GROUP_CHAT, state["sub_round"] + 1)
    return {
        "pool": [marker.model_copy(update={"id": key(state["round"], Stage.GROUP_CHAT, state["sub_round"], "closed")})],
        "sub_round": state["sub_round"] + 1,
    }


def route_subround(state: GroupChatState) -> list[Send]:
    """The next sub-round's speeches (`Node.SPEAK`), or everyone's summary (`Node.SUMMARIZE`) after the last."""
    scenario = scenario_of(state)
    if state["sub_round"] <= scenario.settings.group_subrounds:
        return speak_sends(state)
    return [summarize_send(state, cid, Stage.GROUP_CHAT, 0) for cid in scenario.ids]


# -- settlement ------------------------------------------------------------------------------------------------


def settlement(state: GroupChatState) -> dict[str, Any]:
    scenario = scenario_of(state)
    names = ", ".join(f"{scenario.name_of(c)} ({c})" for c in scenario.candidates())
    rules = ", ".join(r.value for r in scenario.settings.vote_rules)
    notice = Message(
        id=key(state["round"], Stage.SETTLEMENT, "notice"),
        sender=SYSTEM,
        kind=NOTICE,
        content=f"The story ends after {state['round']} rounds. {scenario.settings.winner.question} "
        f"Candidates: {names}. Votes are taken under: {rules}.",
        round=state["round"],
        stage=Stage.SETTLEMENT.value,
    )
    return {"stage": Stage.SETTLEMENT, "pool": [notice]}


def knowledge(state: GroupChatState, cid: str, rule: VoteRule) -> list[str]:
    """What a voter may go by: its own memory, or (all knowledge) everyone's."""
    last = state["round"]

    def memory_of(who: str) -> list[str]:
        persona = state["personas"][who]
        notes = own_notes(seen_by(state, who), who, last)
        return [persona.reflection] if persona.reflection else notes

    if rule.knowledge == "own":
        return memory_of(cid)
    scenario = scenario_of(state)
    return [f"{scenario.name_of(w)} ({w}): {' '.join(memory_of(w)) or 'nothing'}" for w in scenario.ids]


def route_votes(state: GroupChatState) -> list[Send]:
    """One `Send` to `Node.VOTE` per ballot paper (all of a person's papers in one), taking the voters in turn:
    the votes that start together are different characters', each reusing its own cached prompt, and a
    character's next paper starts when a slot frees, beside its first (the server's prompt cache)."""
    scenario = scenario_of(state)
    sends: dict[str, list[Send]] = {}
    for cid in scenario.ids:
        papers = [
            BallotPaper(
                rule=rule,
                legal=[c for c in scenario.candidates() if rule.self_vote or c != cid],
                knowledge=knowledge(state, cid, rule),
            )
            for rule in scenario.settings.vote_rules
        ]
        batches = [papers] if scenario.character(cid).is_human else [[p] for p in papers]
        for batch in batches:
            task = VoteTask(
                character=cid,
                round=state["round"],
                scenario=scenario,
                persona=state["personas"][cid],
                spent=spent(state),
                papers=batch,
            )
            sends.setdefault(cid, []).append(Send(Node.VOTE, task))
    return [send for turn in zip_longest(*sends.values()) for send in turn if send is not None]


def vote(task: VoteTask, runtime: Runtime[Context]) -> dict[str, Any]:
    player = Player(task.scenario.character(task.character), context_of(runtime), task.spent)
    ballots, warnings = [], []
    for paper in task.papers:
        ballot_id = f"{paper.rule.value}:{task.character}"
        if not paper.legal:  # nobody to vote for under this rule: abstain
            ballots.append(Ballot(id=ballot_id, voter=task.character, rule=paper.rule, candidate=None))
            continue
        reply, clamped, warned = actions.vote(
            player, task.scenario, task.persona, paper.rule, paper.legal, paper.knowledge
        )
        warnings += warned
        ballots.append(
            Ballot(
                id=ballot_id,
                voter=task.character,
                rule=paper.rule,
                candidate=reply.candidate,
                reason=reply.reason,
                clamped=clamped,
            )
        )
    return {"ballots": ballots, "warnings": warnings, **usage(player)}


def tally(state: GroupChatState) -> dict[str, Any]:
    scenario = scenario_of(state)
    outcome = decide(scenario, state.get("ballots") or [])
    winner = f"{scenario.name_of(outcome.winner)} ({outcome.winner})" if outcome.winner else "nobody"
    notice = Message(
        id=key(state["round"], Stage.SETTLEMENT, "outcome"),
        sender=SYSTEM,
        kind=OUTCOME,
        content=f"Winner: {winner}. {outcome.explanation}.",
        payload=outcome,
        round=state["round"],
        stage=Stage.SETTLEMENT.value,
    )
    return {"outcome": outcome, "stage": Stage.DONE, "pool": [notice]}
