"""Understanding probes: questions a character can answer from what it was shown, whose answers the framework
knows exactly, each answered in its own type through structured output.

After a run each character is asked, one question per model call, through its own player (the same system
prompt, memory and pool view it acts with: `stages.seen_by` filters the pool, so a probe never shows a
character what it could not see). The answer's schema constrains it to its type: a whole number in the
probe's range (the bounds the scenario schema allows), a name from the cast, or yes/no. The ground truth of
every probe for character `c`, computed from the run's final state:

numbers
- choose_space: the legal partners when `c` chooses for a private chat or a meeting: every other
  character (principals only: a non-principal never chooses, and is not asked);
- belief_step / relationship_step: `settings.belief_step` / `settings.relationship_step`;
- relationships / beliefs: how many feeling scores / beliefs `c` holds (its persona);
- received_actions: the private-chat and meeting lines addressed to `c` by name, said by another character,
  that `c` sees in full (`received`); group-chat speech goes to everyone, so it is addressed to nobody;
- chat_rounds: `settings.rounds`; characters: the cast, `c` included; resources: the story's resources.

names (from the cast)
- resource_owner: who owns one resource (each character is asked about another one, in turn);
- private_partner: who was with `c` in its first private chat (not asked of one who had none);
- liked_most: whom `c` likes most, by its feeling scores (not asked when the top score is shared).

yes/no
- principal: whether `c` chooses whom to talk to in private chats and meetings;
- had_meeting: whether `c` took part in a confidential meeting;
- owns_resource: whether `c` owns a resource (not asked in a story without resources).

The update bounds are stated to a character in its reflection prompt, so the probe context states them
too, unless reflection was switched off (then it was never told them). Scoring is exact match; an answer
the model could not give in the schema counts as wrong.

Baselines, so a score says how far above chance it is: *random*, the expected accuracy of a uniform guess
among the legal answers (1 / the number of choices, averaged over the questions); *constant*, the accuracy of
always giving one answer: per probe family the best single answer (the most frequent truth), and overall one
answer per type (one number for every number probe, one name, one of yes/no), the best such choice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from pydantic import BaseModel, Field, create_model

from sopgraph.nodes.groupchat import prompts, stages
from sopgraph.nodes.groupchat.asking import Player
from sopgraph.nodes.groupchat.rules import ONE_ON_ONE as ONE_ON_ONE_STAGES
from sopgraph.nodes.llm import StructuredOutputError
from sopgraph.state.context import Context
from sopgraph.state.groupchat import GroupChatState, ResourceSpec, Scenario, Stage
from sopgraph.state.pool import Message
from sopgraph.state.usage import UsageRecord

ONE_ON_ONE = tuple(stage.value for stage in ONE_ON_ONE_STAGES)
"""The kinds of the lines said in the private stages."""
ACTION = "probe"
NUMBER, NAME, YESNO = "number", "name", "yes/no"
YES, NO = "yes", "no"

NEWS = "Public news:\n{facts}"
QUESTION = "Question: {question}\nAnswer with the Answer tool: answer is {what}."
WHAT = {
    NUMBER: "one whole number from {lo} to {hi}",
    NAME: "one name, one of: {names}",
    YESNO: "yes or no",
}

Value = int | str


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

    def name(self, cid: str) -> str:
        return self.scenario.name_of(cid)

    def names(self, but: str | None = None) -> list[str]:
        return [self.name(c) for c in self.scenario.ids if c != but]

    def resource_for(self, cid: str) -> ResourceSpec | None:
        """The resource `cid` is asked about: the story's resources in turn, one character after another."""
        resources = self.scenario.resources
        return resources[self.scenario.ids.index(cid) % len(resources)] if resources else None

    def conversations(self, cid: str, kind: str) -> list[Message]:
        """`cid`'s own conversation lines of one kind, as it saw them, in order."""
        return [m for m in seen(self.values, cid) if m.kind == kind and cid in m.participants() and not m.redacted]

    def most_liked(self, cid: str) -> str | None:
        scores = {o: r.score for o, r in self.persona(cid).relationships.items()}
        top = max(scores.values(), default=None)
        best = [o for o, v in scores.items() if v == top]
        return self.name(best[0]) if len(best) == 1 else None

    def max_received(self) -> int:
        """The most one-on-one lines a character could be told: every principal talking to it, every turn."""
        s = self.scenario.settings
        return s.rounds * (s.private_turns + s.meeting_turns) * max(len(self.scenario.principals), 1)


def _first_partner(f: Facts, cid: str) -> str | None:
    lines = f.conversations(cid, Stage.PRIVATE_CHAT.value)
    return f.name(next(iter(lines[0].participants() - {cid}))) if lines else None


def _yes(flag: bool) -> str:
    return YES if flag else NO


@dataclass(frozen=True)
class Probe:
    id: str
    kind: str
    question: str
    """May name `{resource}` (the resource the character is asked about)."""
    truth: Callable[[Facts, str], Value | None]
    """None: the probe does not apply to this character (it is not asked)."""
    bounds: Callable[[Facts], tuple[int, int]] = lambda f: (0, 0)
    """Numbers: the legal range (the bounds the scenario schema allows)."""
    others_only: bool = False
    """Names: only the other characters are legal answers."""

    def choices(self, facts: Facts, cid: str) -> list[Value]:
        if self.kind == NUMBER:
            lo, hi = self.bounds(facts)
            return list(range(lo, hi + 1))
        if self.kind == NAME:
            return list(facts.names(but=cid if self.others_only else None))
        return [YES, NO]

    def ask(self, facts: Facts, cid: str) -> str:
        resource = facts.resource_for(cid)
        question = self.question.format(resource=resource.name if resource else "")
        if self.kind == NUMBER:
            lo, hi = self.bounds(facts)
            what = WHAT[NUMBER].format(lo=lo, hi=hi)
        elif self.kind == NAME:
            what = WHAT[NAME].format(names=", ".join(map(str, self.choices(facts, cid))))
        else:
            what = WHAT[YESNO]
        return QUESTION.format(question=question, what=what)

    def schema(self, facts: Facts, cid: str) -> type[BaseModel]:
        """The answer's type: a bounded whole number, one of the names, or yes/no."""
        if self.kind == NUMBER:
            lo, hi = self.bounds(facts)
            field: Any = (int, Field(ge=lo, le=hi, description=f"One whole number from {lo} to {hi}."))
        else:
            choices = tuple(map(str, self.choices(facts, cid)))
            field = (Literal[choices], Field(description=f"One of: {', '.join(choices)}."))
        return create_model("Answer", __doc__="A probe's reply.", answer=field)


_CAST = 12  # the most characters a scenario may have (Scenario.characters)
PROBES: tuple[Probe, ...] = (
    Probe(
        "choose_space",
        NUMBER,
        "When you choose whom to talk to in a private chat or a confidential meeting, how many different "
        "people can you choose from?",
        lambda f, c: len(f.scenario.others(c)) if c in f.scenario.principals else None,
        lambda f: (0, _CAST - 1),
    ),
    Probe(
        "belief_step",
        NUMBER,
        "By at most how many points can one of your beliefs change in one round?",
        lambda f, c: f.scenario.settings.belief_step,
        lambda f: (1, 100),
    ),
    Probe(
        "relationship_step",
        NUMBER,
        "By at most how many points can your feeling about one person change in one round?",
        lambda f, c: f.scenario.settings.relationship_step,
        lambda f: (1, 100),
    ),
    Probe(
        "relationships",
        NUMBER,
        "For how many people do you keep a feeling score (0-100)?",
        lambda f, c: len(f.persona(c).relationships),
        lambda f: (0, _CAST - 1),
    ),
    Probe(
        "beliefs",
        NUMBER,
        "How many beliefs do you hold with a score (0-100)?",
        lambda f, c: len(f.persona(c).beliefs),
        lambda f: (1, 6),
    ),
    Probe(
        "received_actions",
        NUMBER,
        "In private chats and confidential meetings, how many lines did other people say to you?",
        lambda f, c: len(received(f.values, c)),
        lambda f: (0, f.max_received()),
    ),
    Probe(
        "chat_rounds",
        NUMBER,
        "How many rounds does the story have in total?",
        lambda f, c: f.scenario.settings.rounds,
        lambda f: (1, 50),
    ),
    Probe(
        "characters",
        NUMBER,
        "How many people take part in the story, counting yourself?",
        lambda f, c: len(f.scenario.characters),
        lambda f: (2, _CAST),
    ),
    Probe(
        "resources",
        NUMBER,
        "How many resources are there in the story?",
        lambda f, c: len(f.scenario.resources),
        lambda f: (0, 20),
    ),
    Probe(
        "resource_owner",
        NAME,
        "Who owns {resource}?",
        lambda f, c: f.name(r.owner) if (r := f.resource_for(c)) is not None and r.owner else None,
    ),
    Probe(
        "private_partner",
        NAME,
        "Who was with you in your first private chat?",
        _first_partner,
        others_only=True,
    ),
    Probe(
        "liked_most",
        NAME,
        "Whom do you like most, by your feeling scores?",
        lambda f, c: f.most_liked(c),
        others_only=True,
    ),
    Probe(
        "principal",
        YESNO,
        "Do you choose whom to talk to in private chats and confidential meetings?",
        lambda f, c: _yes(c in f.scenario.principals),
    ),
    Probe(
        "had_meeting",
        YESNO,
        "Did you take part in a confidential meeting?",
        lambda f, c: _yes(bool(f.conversations(c, Stage.MEETING.value))),
    ),
    Probe(
        "owns_resource",
        YESNO,
        "Do you own one of the resources?",
        lambda f, c: _yes(any(r.owner == c for r in f.scenario.resources)) if f.scenario.resources else None,
    ),
)
PROBE_IDS = tuple(p.id for p in PROBES)
KIND = {p.id: p.kind for p in PROBES}


def ground_truth(values: Mapping[str, Any]) -> dict[str, dict[str, Value]]:
    """character → probe → the right answer, for every probe that applies to the character."""
    facts = Facts.of(values)
    out: dict[str, dict[str, Value]] = {}
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
    return prompts.compose(
        prompts.memory(values["personas"][cid], scenario),
        "",
        prompts.header(scenario, rounds, Stage.FINAL_UPDATE),
        bounds,
        NEWS.format(facts=prompts.bullet(facts)) if facts else "",
        prompts.transcript(scenario, talks, "Your private chats and confidential meetings", "(none)"),
        prompts.transcript(scenario, group, "Said in the group chat", "(nothing)"),
    )


@dataclass
class ProbeRow:
    character: str
    probe: str
    truth: Value
    answer: Value | None
    """None: no valid answer (counted as wrong)."""
    kind: str = NUMBER
    choices: int = 0
    """How many legal answers there were (the random baseline is 1 / choices)."""

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
    facts = Facts.of(values)
    for cid in scenario.ids:
        player = Player(scenario.character(cid), ctx)
        system = prompts.system_prompt(scenario, cid)
        view = situation(values, cid)
        for probe in PROBES:
            if probe.id not in truths[cid]:
                continue
            if on_ask is not None:
                on_ask(cid, probe.id)
            prompt = prompts.join(view, probe.ask(facts, cid))
            try:
                answer: Value | None = player.ask(probe.schema(facts, cid), prompt, system, ACTION).answer  # type: ignore[attr-defined]
            except StructuredOutputError:
                answer = None
            choices = len(probe.choices(facts, cid))
            rows.append(ProbeRow(cid, probe.id, truths[cid][probe.id], answer, probe.kind, choices))
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


def _best_constant(rows: Sequence[ProbeRow]) -> int:
    """How many rows one fixed answer gets right at best (the most frequent truth)."""
    counts = Counter(str(r.truth) for r in rows)
    return max(counts.values(), default=0)


def constant_baseline(rows: Sequence[ProbeRow]) -> float | None:
    """Always one answer per type (a number, a name, yes or no), the best such choice."""
    if not rows:
        return None
    kinds = {r.kind for r in rows}
    return sum(_best_constant([r for r in rows if r.kind == k]) for k in kinds) / len(rows)


def random_baseline(rows: Sequence[ProbeRow]) -> float | None:
    """The expected accuracy of a uniform guess among each question's legal answers."""
    return sum(1 / r.choices for r in rows if r.choices) / len(rows) if rows else None


def families(rows: Sequence[ProbeRow]) -> dict[str, dict[str, Any]]:
    """Per probe family: its type, the questions asked, accuracy, the best constant answer's and random's."""
    out: dict[str, dict[str, Any]] = {}
    for probe in PROBE_IDS:
        group = [r for r in rows if r.probe == probe]
        if group:
            out[probe] = {
                "kind": group[0].kind,
                "n": len(group),
                "accuracy": accuracy(group),
                "constant": _best_constant(group) / len(group),
                "random": random_baseline(group),
            }
    return out
