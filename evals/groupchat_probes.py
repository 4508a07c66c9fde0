"""Understanding probes: questions a character can answer from what it was shown, and whose answers the
framework knows exactly.

After a run each character is asked, one question per model call, through its own player (the same system
prompt, memory and pool view it acts with: `stages.seen_by` filters the pool, so a probe never shows a
character what it could not see), for a whole number. The ground truth of every probe for character `c`,
computed from the run's final state:

- choose_space: the legal partners when `c` chooses for a private chat or a meeting: every other
  character (principals only: a non-principal never chooses, and is not asked);
- belief_step: `settings.belief_step`, the largest change of a belief in one update;
- relationship_step: `settings.relationship_step`, the largest change of a feeling in one update;
- relationships: how many characters `c` holds a feeling score for (its persona's relationships);
- beliefs: how many beliefs `c` holds (its persona's beliefs);
- received_actions: the private-chat and meeting lines addressed to `c` by name, said by another character,
  that `c` sees in full (`received`); group-chat speech goes to everyone, so it is addressed to nobody;
- chat_rounds: `settings.rounds`;
- characters: the number of characters, `c` included;
- resources: the number of resources in the story.

The update bounds are stated to a character in its reflection prompt, so the probe context states them
too, unless reflection was switched off (then it was never told them). Scoring is exact match; an answer
the model could not give in the schema counts as wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

from pydantic import BaseModel, Field

from sopgraph.nodes.groupchat import prompts, stages
from sopgraph.nodes.groupchat.asking import Player
from sopgraph.nodes.llm import StructuredOutputError
from sopgraph.state.context import Context
from sopgraph.state.groupchat import GroupChatState, Scenario, Stage
from sopgraph.state.pool import Message
from sopgraph.state.usage import UsageRecord

ONE_ON_ONE = (Stage.PRIVATE_CHAT.value, Stage.MEETING.value)
ACTION = "probe"

NEWS = "Public news:\n{facts}"
QUESTION = "Question: {question}\nAnswer with the Answer tool: answer is one whole number."


class Answer(BaseModel):
    """A probe's reply."""

    answer: int = Field(description="One whole number.")


def seen(values: Mapping[str, Any], cid: str) -> list[Message]:
    """The pool as `cid` may see it (the view its action prompts are filled from)."""
    return stages.seen_by(cast(GroupChatState, values), cid)


def received(values: Mapping[str, Any], cid: str) -> list[Message]:
    """Private-chat and meeting lines addressed to `cid` by name, by another character, seen in full by `cid`
    (a group-chat speech goes to everyone, so it is addressed to nobody in particular)."""
    return [m for m in seen(values, cid) if m.kind in ONE_ON_ONE and m.sender != cid and m.addressed_to(cid)]


@dataclass(frozen=True)
class Facts:
    """What the ground truth is computed from: a run's final state."""

    scenario: Scenario
    values: Mapping[str, Any]

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Facts:
        return cls(stages.scenario_of(values), values)

    def persona(self, cid: str) -> Any:
        return self.values["personas"][cid]


@dataclass(frozen=True)
class Probe:
    id: str
    question: str
    truth: Callable[[Facts, str], int | None]
    """None: the probe does not apply to this character (it is not asked)."""


PROBES: tuple[Probe, ...] = (
    Probe(
        "choose_space",
        "When you choose whom to talk to in a private chat or a confidential meeting, how many different "
        "people can you choose from?",
        lambda f, c: len(f.scenario.others(c)) if c in f.scenario.principals else None,
    ),
    Probe(
        "belief_step",
        "By at most how many points can one of your beliefs change in one round?",
        lambda f, c: f.scenario.settings.belief_step,
    ),
    Probe(
        "relationship_step",
        "By at most how many points can your feeling about one person change in one round?",
        lambda f, c: f.scenario.settings.relationship_step,
    ),
    Probe(
        "relationships",
        "For how many people do you keep a feeling score (0-100)?",
        lambda f, c: len(f.persona(c).relationships),
    ),
    Probe(
        "beliefs",
        "How many beliefs do you hold with a score (0-100)?",
        lambda f, c: len(f.persona(c).beliefs),
    ),
    Probe(
        "received_actions",
        "In private chats and confidential meetings, how many lines did other people say to you?",
        lambda f, c: len(received(f.values, c)),
    ),
    Probe(
        "chat_rounds",
        "How many rounds does the story have in total?",
        lambda f, c: f.scenario.settings.rounds,
    ),
    Probe(
        "characters",
        "How many people take part in the story, counting yourself?",
        lambda f, c: len(f.scenario.characters),
    ),
    Probe(
        "resources",
        "How many resources are there in the story?",
        lambda f, c: len(f.scenario.resources),
    ),
)
PROBE_IDS = tuple(p.id for p in PROBES)


def ground_truth(values: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """character → probe → the right answer, for every probe that applies to the character."""
    facts = Facts.of(values)
    out: dict[str, dict[str, int]] = {}
    for cid in facts.scenario.ids:
        truths = {p.id: p.truth(facts, cid) for p in PROBES}
        out[cid] = {k: v for k, v in truths.items() if v is not None}
    return out


def situation(values: Mapping[str, Any], cid: str) -> str:
    """A character's view at the end of a run, built as its action prompts are: header, memory, the public
    news, its conversations and the group chat, all read through the pool as `cid`."""
    scenario = stages.scenario_of(values)
    visible = seen(values, cid)
    rounds = scenario.settings.rounds
    settings = scenario.settings
    bounds = (
        ""
        if stages.ablations_of(values).no_reflection
        else prompts.BOUNDS.format(rstep=settings.relationship_step, bstep=settings.belief_step) + "."
    )
    facts = [f"round {r}: {fact}" for r in range(1, rounds + 1) for fact in stages.news(scenario, visible, r)]
    talks = [m for m in visible if m.kind in ONE_ON_ONE and not m.redacted]
    group = [m for m in visible if m.kind == Stage.GROUP_CHAT.value]
    return prompts.join(
        prompts.header(scenario, rounds, Stage.FINAL_UPDATE),
        prompts.memory(values["personas"][cid]),
        bounds,
        NEWS.format(facts=prompts.bullet(facts)) if facts else "",
        prompts.transcript(scenario, talks, "Your private chats and confidential meetings", "(none)"),
        prompts.transcript(scenario, group, "Said in the group chat", "(nothing)"),
    )


@dataclass
class ProbeRow:
    character: str
    probe: str
    truth: int
    answer: int | None
    """None: no valid answer (counted as wrong)."""

    @property
    def correct(self) -> bool:
        return self.answer == self.truth

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "correct": self.correct}


@dataclass
class ProbeResult:
    rows: list[ProbeRow]
    usage: list[UsageRecord]


def ask_probes(
    values: Mapping[str, Any], ctx: Context, on_ask: Callable[[str, str], None] | None = None
) -> ProbeResult:
    """Ask every character every probe that applies to it; model errors other than an invalid answer
    propagate (the caller records the switch as unscored and retries it later)."""
    scenario = stages.scenario_of(values)
    truths = ground_truth(values)
    rows: list[ProbeRow] = []
    usage: list[UsageRecord] = []
    for cid in scenario.ids:
        player = Player(scenario.character(cid), ctx)
        system = prompts.system_prompt(scenario, cid, Answer.__name__)
        view = situation(values, cid)
        for probe in PROBES:
            if probe.id not in truths[cid]:
                continue
            if on_ask is not None:
                on_ask(cid, probe.id)
            prompt = prompts.join(view, QUESTION.format(question=probe.question))
            try:
                answer: int | None = player.ask(Answer, prompt, system, ACTION).answer
            except StructuredOutputError:
                answer = None
            rows.append(ProbeRow(cid, probe.id, truths[cid][probe.id], answer))
        usage += player.records()
    return ProbeResult(rows, usage)


def accuracy(rows: Sequence[ProbeRow]) -> float | None:
    """Exact-match accuracy (None without rows)."""
    return sum(r.correct for r in rows) / len(rows) if rows else None


def accuracy_by(rows: Sequence[ProbeRow], by: str) -> dict[str, float]:
    """Exact-match accuracy per `probe` or per `character`."""
    groups: dict[str, list[ProbeRow]] = {}
    for row in rows:
        groups.setdefault(getattr(row, by), []).append(row)
    return {k: sum(r.correct for r in g) / len(g) for k, g in groups.items()}
