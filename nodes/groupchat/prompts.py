"""Prompts of the group-chat actions, and the helpers that fill them.

Kept short for a 0.5B model with an 8k context: a prompt holds the character's card (system), its bounded
memory (reflection, plan, scores), this round's own notes and public news, and only the current stage's
visible messages. Nothing grows with the number of rounds. The card is the same in all of a character's
requests and the rest comes in order of change (`compose`), so the server's prompt cache serves most of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from sopgraph.state.groupchat import Persona, Scenario, Stage, limit_words
from sopgraph.state.pool import Message

SYSTEM = (
    'You are {name} (id: {id}), a character in the story "{title}". You speak and think only as {name}, '
    "in the first person, in your own voice.\n"
    "The story: {rules}\n"
    "Who I am, and what I keep to myself: {scratch}\n"
    "What I want: {objective}\n"
    "The others:\n{cast}"
    "{resources}"
)
REPLY = "Reply with the {tool} tool."
"""Last in a model's prompt (`asking.Player`): it names the action's schema, so it stays out of the system prompt."""
CAST = "- {name} ({id}){principal}: {tagline}"

HEADER = "Round {round} of {rounds}. {stage}."
STAGE_TITLES = {
    Stage.UPDATE: "Update: take stock before this round",
    Stage.PRIVATE_CHAT: "Private chat: nobody else knows it happens",
    Stage.MEETING: "Confidential meeting: others know you met, not what was said",
    Stage.GROUP_CHAT: "Group chat, sub-round {sub_round} of {sub_rounds}: everyone speaks at once",
    Stage.FINAL_UPDATE: "Settlement: the story is over, take stock",
    Stage.SETTLEMENT: "Settlement: the vote",
}

REFLECTION = "What I remember: {reflection}"
PLAN = "My plan: {plan}"
BELIEFS = "My beliefs (0-100): {beliefs}"
FEELINGS = "My feelings about the others (0-100): {relations}"
BELIEF = "{belief}: {score}"
FEELING = "{name} ({id}) {score}{impression}"
IMPRESSION = " ({impression})"
ITEMS = "; "
NOBODY = "nobody"
"""The feelings line of a character with no relations."""
MEMORY = "\n".join((REFLECTION, PLAN, BELIEFS, FEELINGS))

NOTES = "My notes from earlier this round:\n{notes}"
FACTS = "Public news this round:\n{facts}"
LINES = "{title}:\n{lines}"

# The speaking actions name no word limit and no stage direction a small model could echo back ("Lina Park,
# at most 60 words. ..."): lengths are cut afterwards, and the line's own schema says "one to three
# sentences". They point at the character's aim without quoting it: the 0.5B model repeated an aim quoted
# last in the prompt word for word as its line ("I want to persuade the others that machines can be
# minds"), an echo that hygiene then turned into silence in most turns of a story. Each ends on a short,
# concrete move that only new words can make (answer the last line, ask a question, make an offer): the
# 0.5B model otherwise filled its line with its aim and its memory, both echoes of its prompt. THINK asks for the
# point to make in the first person (see THOUGHT).
PERCEIVE = "A new round begins. {name} wants: {objective} What does {name} make of the situation, and what is the plan?"
CHOOSE = "Choose one person for a {what}. partner: their id, one of: {ids}."
THINK = "What will {name} argue or ask next, and why? Think it in the first person."
SPEAK_ONE = (
    "{partner_name} is listening. What does {name} say to {partner_name} now, to get what {name} wants? "
    "Ask {partner_name} a question or make an offer."
)
REPLY_ONE = (
    "{partner_name} just spoke to {name}. What does {name} answer, to get what {name} wants? "
    "Reply to {partner_name}'s last line, then ask a question or make an offer."
)
EVERYONE = "the whole group"
SPEAK_GROUP = (
    "What does {name} say to " + EVERYONE + " now, to get what {name} wants? Ask them a question or make an offer."
)
REPLY_GROUP = (
    "What does {name} say to " + EVERYONE + " now, to get what {name} wants? "
    "Reply to one line said so far, naming who said it, or ask a question or make an offer."
)
THOUGHT = "My thought: {thought}"
"""The thought above a speaking instruction, in the first person like the memory: as "Aria Voss thinks: ..." the
0.5B answered in that form ("Aria Voss thinks: Aria Voss is curious...", "Lina Park says, Aria Voss says, Lina Park
thinks, Lina Park privately thinks."), narration that hygiene must re-ask. THINK no longer offers "what to say
next" or "privately think", which came back as "I don't know what to say next" and "Lina Park privately thinks"."""
SUMMARIZE = "What did {name} learn in this {what}, and about whom? {name}'s private note."
BOUNDS = "Feelings move at most {rstep} and beliefs at most {bstep} points per round"
REFLECT = (
    "My notes from last round:\n{notes}\n" + BOUNDS + "; list only what changed.\n"
    "How does {name} see things now, and whom does {name} like or distrust more than before?"
)
VOTE = "{knowledge}\nThe story is over. {question} candidate: the id of your choice, one of: {legal}."
KNOW_OWN = "What you came to know:\n{memory}"
KNOW_ALL = "What everyone came to know:\n{memories}"
REASK = "\nYour last answer broke the rules: {problems}. Answer again, within the rules."
RESAY = (
    "\nYour last line cannot be used: {problems}. "
    "Say in your own words, in one or two sentences, what {name} says to {listener} now."
)
"""The re-ask of a spoken line: the defects named with their evidence (hygiene.reask), then a request for the
character's own words."""
REFUSED = "a refusal or an empty line is not part of the story; write {name}'s own words"
SILENT = "(says nothing)"
"""What a character is recorded as saying when it gave no usable line: not dialogue."""

INSTRUCTIONS = (
    SYSTEM,
    CAST,
    REPLY,
    PERCEIVE,
    CHOOSE,
    THINK,
    SPEAK_ONE,
    REPLY_ONE,
    SPEAK_GROUP,
    REPLY_GROUP,
    THOUGHT,
    SUMMARIZE,
    REFLECT,
    RESAY,
)
"""The instruction templates: none of their wording belongs in a character's line (hygiene's leak check)."""

WHAT = {
    Stage.PRIVATE_CHAT: "private chat",
    Stage.MEETING: "confidential meeting",
    Stage.GROUP_CHAT: "group chat",
}


def system_prompt(scenario: Scenario, cid: str) -> str:
    """The character's card: the same text in every request it makes in a story, so the server's prompt cache
    keeps it (a story's characters, rules and resources are fixed; what changes goes in the prompt)."""
    me = scenario.character(cid)
    cast = "\n".join(
        CAST.format(name=c.name, id=c.id, principal=", principal" if c.principal else "", tagline=c.tagline())
        for c in scenario.characters
        if c.id != cid
    )
    resources = ""
    if scenario.resources:
        items = "\n".join(
            f"- {r.id}: {r.name} (owner {r.owner}, impact {r.impact}): {limit_words(r.description, 20)[0]}"
            for r in scenario.resources
        )
        resources = f"\nResources:\n{items}"
    return SYSTEM.format(
        name=me.name,
        id=me.id,
        title=scenario.title,
        rules=scenario.rules.strip(),
        scratch=me.scratch.strip(),
        objective=me.objective.strip(),
        cast=cast,
        resources=resources,
    )


def compose(memory: str, context: str, header: str, *rest: str) -> str:
    """A character's prompt, what changes least first: llama.cpp's server reuses only the common prefix of a
    prompt and one it processed before, so the memory (fixed within a round) leads, then this round's notes
    and news (which only grow), the stage's title, and last the stage's lines and the instruction."""
    return join(memory, context, header, *rest)


def header(scenario: Scenario, round_: int, stage: Stage, sub_round: int = 0) -> str:
    title = STAGE_TITLES[stage].format(sub_round=sub_round, sub_rounds=scenario.settings.group_subrounds)
    return HEADER.format(round=round_, rounds=scenario.settings.rounds, stage=title)


def memory(persona: Persona, scenario: Scenario | None = None) -> str:
    """The character's memory in its own words, people called by name (with the scenario)."""
    names = {c.id: c.name for c in scenario.characters} if scenario else {}
    relations = ITEMS.join(
        FEELING.format(
            name=names.get(o, o),
            id=o,
            score=r.score,
            impression=IMPRESSION.format(impression=r.impression) * bool(r.impression),
        )
        for o, r in persona.relationships.items()
    )
    beliefs = ITEMS.join(BELIEF.format(belief=b, score=s) for b, s in persona.beliefs.items())
    return MEMORY.format(
        reflection=persona.reflection or "nothing yet",
        plan=persona.plan or "none yet",
        beliefs=beliefs,
        relations=relations or NOBODY,
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


def clean(text: str, name: str, instruction: str = "") -> str:
    """Drop what a small model echoes back at the start of a line: the instruction it was given, "Name:"."""
    text = " ".join(str(text).split())
    echoes = [e for e in (instruction.strip(), f"{name}:", f"{name} says:") if e]
    while match := next((e for e in echoes if text.lower().startswith(e.lower())), None):
        text = text[len(match) :].strip()
    return text


def pattern(template: str, flags: int = 0, **groups: str) -> re.Pattern[str]:
    """A regex for `template` as filled in: the named placeholders captured with the given expressions, any
    other placeholder matching any text. Test doubles read prompts through it, so they follow a rewording."""
    out: list[str] = []
    pos = 0
    named: set[str] = set()
    for match in re.finditer(r"\{(\w+)\}", template):
        out.append(re.escape(template[pos : match.start()]))
        field = match.group(1)
        if field in groups and field not in named:
            out.append(f"(?P<{field}>{groups[field]})")
            named.add(field)
        else:
            out.append(".*?")
        pos = match.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out), flags)


def join(*parts: str) -> str:
    return "\n".join(p for p in parts if p)
