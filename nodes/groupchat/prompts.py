"""Prompts of the group-chat actions, and the helpers that fill them.

Kept short for a 0.5B model with an 8k context: a prompt holds the character's card (system), its bounded
memory (reflection, plan, scores), this round's own notes and public news, and only the current stage's
visible messages. Nothing grows with the number of rounds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from sopgraph.state.groupchat import Persona, Scenario, Stage, limit_words
from sopgraph.state.pool import Message

SYSTEM = (
    'You are {name} (id: {id}) in the story "{title}". Stay in character and be brief.\n'
    "Rules: {rules}\n"
    "Who you are (private): {scratch}\n"
    "Your goal (private): {objective}\n"
    "People:\n{cast}\n"
    "{resources}"
    "Answer only with the {tool} tool."
)

HEADER = "Round {round} of {rounds}. {stage}."
STAGE_TITLES = {
    Stage.UPDATE: "Update: take stock before this round",
    Stage.PRIVATE_CHAT: "Private chat: nobody else knows it happens",
    Stage.MEETING: "Confidential meeting: others know you met, not what was said",
    Stage.GROUP_CHAT: "Group chat, sub-round {sub_round} of {sub_rounds}: everyone speaks at once",
    Stage.FINAL_UPDATE: "Settlement: the story is over, take stock",
    Stage.SETTLEMENT: "Settlement: the vote",
}

MEMORY = (
    "Your memory: {reflection}\n"
    "Your plan: {plan}\n"
    "Your beliefs (0-100): {beliefs}\n"
    "Your feelings about others (0-100): {relations}"
)

NOTES = "Your notes from earlier this round:\n{notes}"
FACTS = "Public news this round:\n{facts}"
LINES = "{title}:\n{lines}"

# The embedded 0.5B model refuses a bare "say your line" inside a long context ("I'm sorry, but I can't
# assist with that request.") but reliably continues a story: the speaking actions are phrased that way.
PERCEIVE = "Continue the story: {name} sizes up the situation and plans this round: whom to talk to, and what for."
CHOOSE = "Choose one person for a {what}. partner: their id, one of: {ids}."
THINK = "Continue the story: what {name} thinks before answering, at most 30 words."
SPEAK_ONE = "Continue the story: {name}'s {opening} to {partner_name}, at most {words} words."
SPEAK_GROUP = "Continue the story: {name}'s reply to the group, at most {words} words."
THOUGHT = "{name}'s thought: {thought}"
SUMMARIZE = "Continue the story: {name}'s note on what was learned in this {what}, at most 50 words."
BOUNDS = "Feelings move at most {rstep} and beliefs at most {bstep} points per round"
REFLECT = (
    "Your notes from last round:\n{notes}\n" + BOUNDS + "; list only what changed.\n"
    "Continue the story: {name} takes stock after the last round, in at most {words} words."
)
VOTE = "{knowledge}\nThe story is over. {question} candidate: the id of your choice, one of: {legal}."
KNOW_OWN = "What you came to know:\n{memory}"
KNOW_ALL = "What everyone came to know:\n{memories}"
REASK = "\nYour last answer broke the rules: {problems}. Answer again, within the rules."
REFUSED = "a refusal or an empty line is not part of the story; write {name}'s own words"
SILENT = "(says nothing)"
"""What a character is recorded as saying when it gave no usable line: not dialogue."""

WHAT = {
    Stage.PRIVATE_CHAT: "private chat",
    Stage.MEETING: "confidential meeting",
    Stage.GROUP_CHAT: "group chat",
}


def system_prompt(scenario: Scenario, cid: str, tool: str) -> str:
    me = scenario.character(cid)
    cast = "\n".join(
        f"- {c.id}: {c.name}{' (principal)' if c.principal else ''}, {c.tagline()}"
        for c in scenario.characters
        if c.id != cid
    )
    resources = ""
    if scenario.resources:
        items = "\n".join(
            f"- {r.id}: {r.name} (owner {r.owner}, impact {r.impact}): {limit_words(r.description, 20)[0]}"
            for r in scenario.resources
        )
        resources = f"Resources:\n{items}\n"
    return SYSTEM.format(
        name=me.name,
        id=me.id,
        title=scenario.title,
        rules=scenario.rules.strip(),
        scratch=me.scratch.strip(),
        objective=me.objective.strip(),
        cast=cast,
        resources=resources,
        tool=tool,
    )


def header(scenario: Scenario, round_: int, stage: Stage, sub_round: int = 0) -> str:
    title = STAGE_TITLES[stage].format(sub_round=sub_round, sub_rounds=scenario.settings.group_subrounds)
    return HEADER.format(round=round_, rounds=scenario.settings.rounds, stage=title)


def memory(persona: Persona) -> str:
    relations = ", ".join(
        f"{o} {r.score}" + (f" ({r.impression})" if r.impression else "") for o, r in persona.relationships.items()
    )
    beliefs = "; ".join(f"{b}: {s}" for b, s in persona.beliefs.items())
    return MEMORY.format(
        reflection=persona.reflection or "nothing yet",
        plan=persona.plan or "none yet",
        beliefs=beliefs,
        relations=relations or "nobody",
    )


def round_context(notes: Sequence[str], facts: Sequence[str]) -> str:
    """This round so far: the character's own notes and the public news."""
    return join(
        NOTES.format(notes=bullet(notes)) if notes else "",
        FACTS.format(facts=bullet(facts)) if facts else "",
    )


def bullet(items: Iterable[str]) -> str:
    return "\n".join(f"- {i}" for i in items)


def line(scenario: Scenario, message: Message) -> str:
    return f"{scenario.name_of(message.sender)} ({message.sender}): {message.content}"


def transcript(scenario: Scenario, messages: Sequence[Message], title: str, empty: str) -> str:
    body = "\n".join(line(scenario, m) for m in messages) if messages else empty
    return LINES.format(title=title, lines=body)


_REFUSAL = re.compile(r"(i'?m sorry|i am sorry)[, ]+but|can'?t assist|cannot assist|as an ai\b", re.I)


def refusal(text: str) -> bool:
    """The canned refusal small chat models fall back to when a role-play prompt confuses them (also after an
    echoed name: "Lina, I'm sorry, but I can't assist...")."""
    return bool(_REFUSAL.search((text or "")[:120]))


def clean(text: str, name: str, instruction: str = "") -> str:
    """Drop what a small model echoes back: the instruction it was given, a leading "Name:"."""
    text = " ".join(str(text).split())
    asked = instruction.rsplit("Continue the story: ", 1)[-1].strip()
    echoes = [e for e in (asked, f"{name}:", f"{name} says:") if e]
    while match := next((e for e in echoes if text.lower().startswith(e.lower())), None):
        text = text[len(match) :].strip()
    return text


def join(*parts: str) -> str:
    return "\n".join(p for p in parts if p)
