"""The character actions: perceive, choose, think, speak, summarize, reflect, vote.

Each builds a short prompt from what the caller passes in (already filtered through the pool), asks the
character's player for a typed reply, and returns the reply with any `ClampWarning`s. A person playing a
character is asked only for moves (choose, speak, vote); the bookkeeping actions (perceive, think,
summarize, reflect) are theirs to do in their head, so for them these are recorded without a model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sopgraph.nodes.groupchat import hygiene, prompts
from sopgraph.nodes.groupchat.asking import Player, Where, ask
from sopgraph.nodes.groupchat.replies import (
    CHOICE_REASON_WORDS,
    VOTE_REASON_WORDS,
    Choice,
    Perception,
    Reflect,
    Speech,
    Summary,
    Thought,
    Vote,
    choice_schema,
    reflect_schema,
    vote_schema,
)
from sopgraph.nodes.groupchat.rules import Bounds, favourite
from sopgraph.state.groupchat import (
    ChoiceMade,
    ClampWarning,
    LineCheck,
    Persona,
    PersonaPatch,
    Scenario,
    Stage,
    VoteRule,
    limit_words,
)
from sopgraph.state.pool import Message

Warnings = list[ClampWarning]

NOTE_WORDS = 30
"""A plan, the situation it comes from, a private thought: one sentence, cut here."""
SUMMARY_WORDS = 50
"""A character's note on a conversation (and the excerpt that stands in for it)."""

HYGIENE_REASKS = 1
"""One targeted re-ask for a defective line, then clean-up: a small model asked a third time mostly says the
same thing again, and every re-ask is a model call."""
THOUGHT_DEFECTS = (hygiene.REFUSAL, hygiene.NON_ANSWER, hygiene.SELF_REPEAT)
"""What a thought is re-asked for (then dropped): the thought stands right above the speaking instruction and
the 0.5B says it aloud. In the measured story's second group-chat sub-round every speaker's thought was its own
first line copied from the transcript, every line a self-repeat, re-asked with that thought still in the prompt,
said again and silenced; two first lines were "I don't know what to say next..." thoughts said aloud. A thought
that narrates ("Lina Park privately thinks...") is put in the first person by the clean-up instead."""


def perceive(player: Player, scenario: Scenario, persona: Persona, round_: int) -> tuple[Perception, Warnings]:
    where = Where(round_, Stage.UPDATE.value, persona.id)
    if player.human:
        return Perception(situation="", plan=persona.plan), []
    name = scenario.name_of(persona.id)
    task = prompts.PERCEIVE.format(name=name, objective=scenario.character(persona.id).objective.strip())
    prompt = prompts.compose(
        prompts.memory(persona, scenario), "", prompts.header(scenario, round_, Stage.UPDATE), task
    )
    reply, warnings = ask(
        player,
        Perception,
        prompt,
        prompts.system_prompt(scenario, persona.id),
        action="perceive",
        where=where,
        fallback=lambda v: v or Perception(situation="", plan=persona.plan),
    )
    plan, cut = limit_words(prompts.clean(reply.plan, name, task), NOTE_WORDS)
    situation = limit_words(prompts.clean(reply.situation, name, task), NOTE_WORDS)[0]
    if cut:
        warnings.append(where.warning("perceive", f"plan longer than {NOTE_WORDS} words", f"cut to {NOTE_WORDS} words"))
    return Perception(situation=situation, plan=plan), warnings


def choose(
    player: Player,
    scenario: Scenario,
    persona: Persona,
    round_: int,
    stage: Stage,
    legal: Sequence[str],
    context: str = "",
) -> tuple[ChoiceMade, Warnings]:
    where = Where(round_, stage.value, persona.id)
    schema = choice_schema(tuple(legal))
    prompt = prompts.compose(
        prompts.memory(persona, scenario),
        context,
        prompts.header(scenario, round_, stage),
        prompts.CHOOSE.format(what=prompts.WHAT[stage], ids=", ".join(legal)),
    )

    def fallback(_: object) -> Choice:
        return schema(partner=favourite(scenario, persona, legal, f"{round_}:{stage}"), reason="(clamped)")

    reply, warnings = ask(
        player,
        schema,
        prompt,
        prompts.system_prompt(scenario, persona.id),
        action="choose",
        where=where,
        fallback=fallback,
    )
    return ChoiceMade(partner=reply.partner, reason=limit_words(reply.reason, CHOICE_REASON_WORDS)[0]), warnings


def think(
    player: Player,
    scenario: Scenario,
    persona: Persona,
    situation: str,
    where: Where,
    heard: hygiene.Heard | None = None,
) -> tuple[str, Warnings]:
    """The private thought before a line: re-asked once when it refuses, says nothing, or repeats a line the
    character already said (`heard.own`), then dropped; '' for none."""
    if player.human:
        return "", []
    name = scenario.name_of(persona.id)
    task = prompts.THINK.format(name=name)
    cast = [c.name for c in scenario.characters]
    context = (
        dataclasses.replace(heard, prompt=(), others=())
        if heard
        else hygiene.Heard(name, templates=prompts.INSTRUCTIONS, cast=cast)
    )

    def check(value: Thought) -> list[str]:
        found = hygiene.inspect(prompts.clean(value.thought, name, task), context)
        return hygiene.reask([f for f in found if f.defect in THOUGHT_DEFECTS], name)

    reply, warnings = ask(
        player,
        Thought,
        prompts.join(situation, task),
        prompts.system_prompt(scenario, persona.id),
        action="think",
        where=where,
        check=check,
        fallback=lambda v: Thought(thought=""),
        reasks=min(HYGIENE_REASKS, player.ctx.max_reasks),
    )
    text = hygiene.clean_up(prompts.clean(reply.thought, name, task), context)
    return limit_words(text, NOTE_WORDS)[0], warnings


def speak(
    player: Player,
    scenario: Scenario,
    persona: Persona,
    situation: str,
    task: str,
    where: Where,
    heard: hygiene.Heard,
) -> tuple[str, LineCheck, Warnings]:
    """One utterance, checked for emptiness, echoes, leaks, refusals, non-answers, narration, self-repeats and
    copies (`hygiene`): a defect is re-asked naming it and asking for the character's own words (hotter, another
    seed; without the thought when the line said it, as the 0.5B said it again when it was left in), then the
    line is repaired (silence when too little of the speaker's own is left); cut to the word limit.
    `task`: the thought, if any, and the instruction on the last line."""
    words = scenario.settings.speech_words
    name = scenario.name_of(persona.id)
    instruction = task.splitlines()[-1]
    thought = hygiene.words("\n".join(task.splitlines()[:-1]))
    seen: list[list[str]] = []
    if player.human:  # a person's lines are theirs: no hygiene beyond asking again for an empty one
        heard = hygiene.Heard(name, listener=heard.listener)

    def findings(text: str) -> list[hygiene.Finding]:
        found = hygiene.inspect(prompts.clean(text, name, instruction), heard)
        if player.human:
            return [f for f in found if f.defect == hygiene.EMPTY]
        if [f.defect for f in found] == [hygiene.EMPTY]:  # nothing left once the echoed instruction is stripped:
            echoed = [f for f in hygiene.inspect(text, heard) if f.defect in (hygiene.ECHO, hygiene.LEAK)]
            return echoed or found  # the re-ask names the words said, not "the line was empty"
        return found

    def check(value: Speech) -> list[str]:
        found = findings(value.speech)
        seen.append([f.defect for f in found])
        return hygiene.reask(found, name)

    def reprompt(value: Speech) -> str:
        """The re-ask leaves the thought out when the line repeats a run of it (the cache keeps the rest)."""
        said = hygiene.words(prompts.clean(value.speech, name, instruction))
        if thought and hygiene.shared_run(said, thought, hygiene.ECHO_WORDS):
            return prompts.join(situation, instruction)
        return prompts.join(situation, task)

    def fallback(value: Speech | None) -> Speech:
        text = hygiene.clean_up(prompts.clean(value.speech, name, instruction), heard) if value else ""
        return Speech(speech=text or prompts.SILENT)

    reply, warnings = ask(
        player,
        Speech,
        prompts.join(situation, task),
        prompts.system_prompt(scenario, persona.id),
        action="speak",
        where=where,
        check=check,
        fallback=fallback,
        reasks=min(HYGIENE_REASKS, player.ctx.max_reasks),
        reword=lambda problems: prompts.RESAY.format(
            problems="; ".join(problems), name=name, listener=heard.listener or prompts.EVERYONE
        ),
        reprompt=reprompt,
    )
    text, cut = limit_words(prompts.clean(reply.speech, name, instruction), words)
    if cut:
        warnings.append(where.warning("speak", f"speech longer than {words} words", f"cut to {words} words"))
    final = [] if text == prompts.SILENT else [f.defect for f in findings(text)]
    line = LineCheck(
        first=seen[0] if seen else [],
        last=seen[-1] if seen else [],
        final=final,
        reasks=max(len(seen) - 1, 0),
        cleaned=bool(warnings) and any(w.action == "speak" and "cut to" not in w.fallback for w in warnings),
    )
    return text, line, warnings


def summarize(
    player: Player,
    scenario: Scenario,
    persona: Persona,
    round_: int,
    stage: Stage,
    lines: Sequence[Message],
    sub_round: int = 0,
) -> tuple[str, Warnings]:
    where = Where(round_, stage.value, persona.id, at=f"conversation {sub_round}")
    what = prompts.WHAT[stage]
    convo = prompts.transcript(scenario, lines, f"The {what}", "(nothing was said)")
    excerpt = limit_words(" / ".join(prompts.line(scenario, m) for m in lines) or "nothing was said", SUMMARY_WORDS)[0]
    if player.human:
        return f"{what}: {excerpt}", []
    name = scenario.name_of(persona.id)
    task = prompts.SUMMARIZE.format(name=name, what=what)
    reply, warnings = ask(
        player,
        Summary,
        prompts.compose("", "", prompts.header(scenario, round_, stage), convo, task),
        prompts.system_prompt(scenario, persona.id),
        action="summarize",
        where=where,
        check=lambda v: [prompts.REFUSED.format(name=name)] if hygiene.refusal(v.summary) else [],
        fallback=lambda v: Summary(summary=excerpt),
    )
    text, cut = limit_words(prompts.clean(reply.summary, name, task), SUMMARY_WORDS)
    if cut:
        warnings.append(
            where.warning("summarize", f"summary longer than {SUMMARY_WORDS} words", f"cut to {SUMMARY_WORDS} words")
        )
    return f"{what}: {text}", warnings


def reflect(
    player: Player,
    scenario: Scenario,
    persona: Persona,
    round_: int,
    notes: Sequence[str],
    final: bool = False,
) -> tuple[PersonaPatch, Warnings]:
    """New reflection = old reflection + last round's notes; relationship and belief changes bounded."""
    stage = Stage.FINAL_UPDATE if final else Stage.UPDATE
    where = Where(round_, stage.value, persona.id)
    bounds = Bounds.of(scenario)
    folded = limit_words(" ".join([persona.reflection, *notes]), bounds.reflection_words)[0]
    if player.human or not notes:
        return PersonaPatch(reflection=folded), []
    schema = reflect_schema(tuple(persona.relationships), tuple(persona.beliefs))
    prompt = prompts.compose(
        prompts.memory(persona, scenario),
        "",
        prompts.header(scenario, round_, stage),
        prompts.REFLECT.format(
            name=scenario.name_of(persona.id),
            notes=prompts.bullet(notes),
            words=bounds.reflection_words,
            rstep=bounds.relationship_step,
            bstep=bounds.belief_step,
        ),
    )

    def check(value: Reflect) -> list[str]:
        refused = (
            [prompts.REFUSED.format(name=scenario.name_of(persona.id))] if hygiene.refusal(value.reflection) else []
        )
        return (
            refused
            + bounds.belief_problems(persona, value.beliefs)
            + bounds.relationship_problems(persona, value.relationships)
        )

    reply, warnings = ask(
        player,
        schema,
        prompt,
        prompts.system_prompt(scenario, persona.id),
        action="reflect",
        where=where,
        check=check,
        fallback=lambda v: v if v is not None and not hygiene.refusal(v.reflection) else Reflect(reflection=folded),
    )
    task = prompt.splitlines()[-1]
    reply = reply.model_copy(update={"reflection": prompts.clean(reply.reflection, scenario.name_of(persona.id), task)})
    patch, clamped = bounds.apply_reflection(persona, reply)
    if clamped and not warnings:
        warnings.append(where.warning("reflect", "; ".join(clamped), "values clamped to their bounds"))
    elif clamped:
        warnings = [
            w.model_copy(update={"fallback": "; ".join(clamped)[:300]}) if w.action == "reflect" else w
            for w in warnings
        ]
    return patch, warnings


def vote(
    player: Player,
    scenario: Scenario,
    persona: Persona,
    rule: VoteRule,
    legal: Sequence[str],
    knowledge: Sequence[str],
) -> tuple[Vote, bool, Warnings]:
    """A ballot among the legal candidates; returns it, whether it was clamped, and warnings."""
    round_ = scenario.settings.rounds
    where = Where(round_, f"{Stage.SETTLEMENT.value}:{rule.value}", persona.id)
    if rule.knowledge == "own":
        known = prompts.KNOW_OWN.format(memory=prompts.bullet(knowledge) or "- nothing")
    else:
        known = prompts.KNOW_ALL.format(memories=prompts.bullet(knowledge) or "- nothing")
    prompt = prompts.compose(
        prompts.memory(persona, scenario),
        "",
        prompts.header(scenario, round_, Stage.SETTLEMENT),
        prompts.VOTE.format(knowledge=known, question=scenario.settings.winner.question, legal=", ".join(legal)),
    )
    schema = vote_schema(tuple(legal))

    def fallback(_: object) -> Vote:
        return schema(candidate=favourite(scenario, persona, legal, f"vote:{rule.value}"), reason="(clamped)")

    reply, warnings = ask(
        player,
        schema,
        prompt,
        prompts.system_prompt(scenario, persona.id),
        action="vote",
        where=where,
        fallback=fallback,
    )
    return (
        Vote(candidate=reply.candidate, reason=limit_words(reply.reason, VOTE_REASON_WORDS)[0]),
        bool(warnings),
        warnings,
    )
