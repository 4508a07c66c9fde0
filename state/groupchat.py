"""The checkpointed types of the group-chat simulation (AgentGroupChat's stage machine).

Everything here is stored in a run's checkpoints, so it stays at `sopgraph.state.groupchat.*` (the
serializer's allow-list and every saved run name these classes by module): the scenario a run plays (a story
from scenarios/*.yaml), the ablation switches, per-character personas (beliefs, relationships, reflection)
in a channel that merges per-character patches, the clamp warnings, the documents kept in the message pool,
the ballots and outcome, and the `Send` payloads of the parallel tasks. A character's memory is append-only
and lives in the pool: its own summaries, reflections and persona snapshots, addressed to itself only.

What is not checkpointed lives with the code that uses it: loading a story (sopgraph.scenarios), the
model-facing reply schemas (nodes/groupchat/replies.py, beside the prompts) and the game's rules (bounds and
clamps, acting order, the winner: nodes/groupchat/rules.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from langgraph.channels import DeltaChannel
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict

from sopgraph.state.pool import SNAPSHOT_EVERY, Document, Message, PoolChannel, append_unique
from sopgraph.state.usage import UsageChannel, UsageTotals

HUMAN = "human"
"""The model name of a character played by a person."""


class Stage(StrEnum):
    """Where a run stands; the value is also the `stage` of the messages published there."""

    SETUP = "setup"
    UPDATE = "update"
    PRIVATE_CHAT = "private_chat"
    MEETING = "meeting"
    GROUP_CHAT = "group_chat"
    FINAL_UPDATE = "final_update"
    SETTLEMENT = "settlement"
    DONE = "done"


# -- scenario -------------------------------------------------------------------------------------------


Id = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,23}$", description="lower-case id: letters, digits, _")]
Score = Annotated[int, Field(ge=0, le=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InitialRelation(_Strict):
    """How a character feels about another at the start (a bare number is the score)."""

    score: Score = 50
    impression: str = Field(default="", max_length=120)

    @model_validator(mode="before")
    @classmethod
    def _bare_score(cls, data: Any) -> Any:
        return {"score": data} if isinstance(data, int) else data


class CharacterSpec(_Strict):
    id: Id
    name: str = Field(min_length=1, max_length=40)
    principal: bool = False
    """Principal characters act in the private stages (choose a partner); the others speak only when
    chosen or in the group chat."""
    background: str = Field(min_length=1, max_length=400, description="Public: everyone knows it.")
    scratch: str = Field(min_length=1, max_length=600, description="Private and immutable: who I really am.")
    objective: str = Field(min_length=1, max_length=300, description="Private: what I want.")
    beliefs: dict[Annotated[str, Field(min_length=1, max_length=120)], Score] = Field(min_length=1, max_length=6)
    relationships: dict[str, InitialRelation] = Field(default_factory=dict)
    """Initial feelings toward other characters by id; anyone not listed starts at 50."""
    model: str | None = None
    """`human`, or a model name; unset: the run context's model for this id, else its default model."""

    @property
    def is_human(self) -> bool:
        return self.model == HUMAN

    def tagline(self, words: int = 18) -> str:
        return limit_words(self.background, words)[0]


class ResourceSpec(_Strict):
    id: Id
    name: str = Field(min_length=1, max_length=60)
    owner: str
    impact: int = Field(ge=0, le=100, description="How much owning it weighs: influence and vote weight.")
    topics: list[str] = Field(default_factory=list, max_length=8)
    description: str = Field(min_length=1, max_length=300)


class VoteRule(StrEnum):
    """What a voter may know (own view or all knowledge) and whether it may vote for itself."""

    OWN_SELF = "own_self"
    OWN_NOSELF = "own_noself"
    ALL_SELF = "all_self"
    ALL_NOSELF = "all_noself"

    @property
    def knowledge(self) -> Literal["own", "all"]:
        return "own" if self.value.startswith("own") else "all"

    @property
    def self_vote(self) -> bool:
        return self.value.endswith("_self")


class WinnerRule(_Strict):
    kind: Literal["most_votes", "weighted_threshold", "judge"] = "most_votes"
    """most_votes: most ballots under `vote_rule`, ties broken by the seed; weighted_threshold: ballots
    weighted by the impact of the voter's resources, the leader wins only with at least `threshold` of
    the weight; judge: the `judge` character's ballot decides (most votes if the judge has none)."""
    vote_rule: VoteRule = VoteRule.OWN_NOSELF
    question: str = Field(default="Who should win?", min_length=1, max_length=160)
    candidates: list[str] | None = None
    """Ids that may be voted for; default: the principal characters."""
    threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    judge: str | None = None


class Settings(_Strict):
    rounds: int = Field(default=2, ge=1, le=50)
    group_subrounds: int = Field(default=2, ge=1, le=10)
    private_turns: int = Field(default=1, ge=1, le=5, description="Exchanges (one line each) per private chat.")
    meeting_turns: int = Field(default=1, ge=1, le=5, description="Exchanges per confidential meeting.")
    belief_step: int = Field(default=10, ge=1, le=100, description="Largest change of a belief in one update.")
    relationship_step: int = Field(default=10, ge=1, le=100, description="Largest change of a relationship.")
    speech_words: int = Field(default=60, ge=10, le=150)
    reflection_words: int = Field(default=100, ge=20, le=200)
    vote_rules: list[VoteRule] = Field(default_factory=lambda: list(VoteRule), min_length=1)
    winner: WinnerRule = Field(default_factory=WinnerRule)
    seed: int = 0

    @field_validator("vote_rules")
    @classmethod
    def _unique_rules(cls, rules: list[VoteRule]) -> list[VoteRule]:
        if len(set(rules)) != len(rules):
            raise ValueError("vote rules repeat")
        return rules


class Scenario(_Strict):
    """A story: cast, resources, rules and settings."""

    title: str = Field(min_length=1, max_length=80)
    rules: str = Field(min_length=1, max_length=900, description="Told to every character in every prompt.")
    characters: list[CharacterSpec] = Field(min_length=2, max_length=12)
    resources: list[ResourceSpec] = Field(default_factory=list, max_length=20)
    settings: Settings = Field(default_factory=Settings)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        ids = [c.id for c in self.characters]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"characters: duplicate id {', '.join(dupes)}")
        known = set(ids)
        if not any(c.principal for c in self.characters):
            raise ValueError("characters: at least one character must be principal: true")
        for c in self.characters:
            for other in c.relationships:
                if other not in known or other == c.id:
                    raise ValueError(f"characters[{c.id}].relationships: {other!r} is not another character's id")
        rids = [r.id for r in self.resources]
        if len(set(rids)) != len(rids):
            raise ValueError("resources: duplicate id")
        for r in self.resources:
            if r.owner not in known:
                raise ValueError(f"resources[{r.id}].owner: {r.owner!r} is not a character id")
        winner = self.settings.winner
        for cand in winner.candidates or []:
            if cand not in known:
                raise ValueError(f"settings.winner.candidates: {cand!r} is not a character id")
        if winner.kind == "judge" and winner.judge not in known:
            raise ValueError(f"settings.winner.judge: {winner.judge!r} is not a character id")
        if winner.vote_rule not in self.settings.vote_rules:
            raise ValueError(f"settings.winner.vote_rule: {winner.vote_rule.value} is not one of settings.vote_rules")
        return self

    # -- queries -------------------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.characters]

    @property
    def principals(self) -> list[str]:
        return [c.id for c in self.characters if c.principal]

    def character(self, cid: str) -> CharacterSpec:
        for c in self.characters:
            if c.id == cid:
                return c
        raise KeyError(f"no character {cid!r} in {self.title!r}")

    def name_of(self, cid: str) -> str:
        return self.character(cid).name if cid in self.ids else cid

    def others(self, cid: str) -> list[str]:
        return [i for i in self.ids if i != cid]

    def candidates(self) -> list[str]:
        return list(self.settings.winner.candidates or self.principals)

    def holdings(self, cid: str) -> int:
        """The summed impact of the resources a character owns."""
        return sum(r.impact for r in self.resources if r.owner == cid)


class Ablations(_Strict):
    """Switches that turn stages or actions off (AgentGroupChat's ablations). Part of the run's state, so a
    resume, replay or fork keeps them; which stage each switch stops is a rule (nodes/groupchat/rules.py)."""

    no_private_chat: bool = False
    no_meeting: bool = False
    no_group_chat: bool = False
    no_reflection: bool = False
    no_think: bool = False

    @classmethod
    def of(cls, names: Iterable[str] = ()) -> Ablations:
        """From names like `meeting` / `no_meeting` / `no-meeting`."""
        flags: dict[str, bool] = {}
        for raw in names:
            key = raw.strip().lower().replace("-", "_")
            key = key if key.startswith("no_") else f"no_{key}"
            key = {"no_confidential_meeting": "no_meeting", "no_private": "no_private_chat"}.get(key, key)
            if key not in cls.model_fields:
                known = ", ".join(k.removeprefix("no_") for k in cls.model_fields)
                raise ValueError(f"unknown ablation {raw!r}; known: {known}")
            flags[key] = True
        return cls(**flags)

    def names(self) -> list[str]:
        return [k for k, v in self.model_dump().items() if v]


# -- persona ----------------------------------------------------------------------------------------


class Relationship(_Strict):
    score: Score = 50
    impression: str = ""


class Persona(_Strict):
    """A character's mutable self. The scratch stays in the scenario (immutable); the memory is the
    character's own entries in the pool (append-only)."""

    id: str
    beliefs: dict[str, int]
    relationships: dict[str, Relationship]
    reflection: str = ""
    """Bounded running memory: the old reflection folded together with the last round's summaries."""
    plan: str = ""
    """This round's plan, from perceive."""

    @classmethod
    def initial(cls, scenario: Scenario, cid: str) -> Persona:
        spec = scenario.character(cid)
        rel = {
            o: Relationship(score=spec.relationships[o].score, impression=spec.relationships[o].impression)
            if o in spec.relationships
            else Relationship()
            for o in scenario.others(cid)
        }
        return cls(id=cid, beliefs=dict(spec.beliefs), relationships=rel)


class PersonaPatch(_Strict):
    """A partial update of one persona; several patches to different characters merge without conflict."""

    beliefs: dict[str, int] = Field(default_factory=dict)
    relationships: dict[str, Relationship] = Field(default_factory=dict)
    reflection: str | None = None
    plan: str | None = None


def _apply(persona: Persona | None, cid: str, patch: PersonaPatch) -> Persona:
    base = persona or Persona(id=cid, beliefs={}, relationships={})
    rel = dict(base.relationships)
    for other, r in patch.relationships.items():
        rel[other] = r
    return base.model_copy(
        update={
            "beliefs": {**base.beliefs, **{k: clamp_int(v, 0, 100) for k, v in patch.beliefs.items()}},
            "relationships": rel,
            "reflection": base.reflection if patch.reflection is None else patch.reflection,
            "plan": base.plan if patch.plan is None else patch.plan,
        }
    )


def merge_personas(current: Mapping[str, Persona] | None, update: Mapping[str, Any] | None) -> dict[str, Persona]:
    """Reducer: a full Persona replaces; a PersonaPatch (or a dict, as a fork's `--set` gives) patches."""
    out = dict(current or {})
    for cid, value in (update or {}).items():
        if isinstance(value, Persona):
            out[cid] = value
        elif isinstance(value, PersonaPatch):
            out[cid] = _apply(out.get(cid), cid, value)
        elif isinstance(value, dict) and "id" in value and "beliefs" in value and "relationships" in value:
            out[cid] = Persona.model_validate(value)
        else:
            out[cid] = _apply(out.get(cid), cid, PersonaPatch.model_validate(value))
    return out


# -- clamps: what was done instead of an out-of-bounds answer (the rules are nodes/groupchat/rules.py) --------


class ClampWarning(BaseModel):
    """A model (or person) answered out of bounds even after being asked again; what was done instead."""

    model_config = ConfigDict(frozen=True)

    id: str = ""
    round: int
    stage: str
    character: str
    action: str
    problem: str
    fallback: str
    at: str = ""
    """Where within the stage (sub-round, conversation line), when it matters."""

    @model_validator(mode="after")
    def _content_id(self) -> ClampWarning:
        """Fixed by content, so a node that runs again does not record its warnings twice."""
        if not self.id:
            raw = "|".join((str(self.round), self.stage, self.at, self.character, self.action, self.problem))
            object.__setattr__(self, "id", hashlib.sha256(raw.encode()).hexdigest()[:16])
        return self


WarningChannel = Annotated[
    list[ClampWarning], DeltaChannel(append_unique(ClampWarning), snapshot_frequency=SNAPSHOT_EVERY)
]


def clamp_int(value: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(value)))


def limit_words(text: str, words: int) -> tuple[str, bool]:
    """The first `words` words (whitespace normalised) and whether anything was cut."""
    parts = str(text).split()
    return " ".join(parts[:words]), len(parts) > words


# -- documents kept in the pool and in state --------------------------------------------------------------


class ChoiceMade(Document):
    """A principal's partner choice (private to the chooser)."""

    partner: str
    reason: str = ""


class PersonaSnapshot(Document):
    """A character's scores after an update: the report's heatmaps and belief trajectories."""

    character: str
    round: int
    beliefs: dict[str, int]
    relationships: dict[str, int]
    reflection: str = ""


class LineCheck(Document):
    """What reply hygiene found in a spoken line (nodes/groupchat/hygiene.py): the defects of the first
    answer, of the last answer, and of the line as recorded, the re-asks spent, whether clean-up cut it."""

    first: list[str] = Field(default_factory=list)
    last: list[str] = Field(default_factory=list)
    final: list[str] = Field(default_factory=list)
    reasks: int = 0
    cleaned: bool = False


class Ballot(BaseModel):
    """One vote under one rule."""

    model_config = ConfigDict(frozen=True)

    id: str
    voter: str
    rule: VoteRule
    candidate: str | None
    """None: abstained (no legal candidate)."""
    reason: str = ""
    clamped: bool = False


BallotChannel = Annotated[list[Ballot], DeltaChannel(append_unique(Ballot), snapshot_frequency=SNAPSHOT_EVERY)]


class Outcome(Document):
    """The settlement: tallies under every vote rule and the winner by the scenario's rule."""

    tallies: dict[str, dict[str, int]]
    winner: str | None
    rule: str
    explanation: str
    tie_broken: bool = False


class ChatCursor(_Strict):
    """The one-on-one conversation under way in a private stage."""

    stage: Stage
    index: int
    """Which conversation of the stage (the actor's place in the order); the messages' sub_round."""
    actor: str
    partner: str
    turn: int = 0
    lines: int


# -- Send payloads: what a parallel task needs, already filtered through the pool ---------------------------


class Task(_Strict):
    character: str
    round: int
    scenario: Scenario
    persona: Persona
    spent: UsageTotals = Field(default_factory=UsageTotals)


class UpdateTask(Task):
    notes: list[str] = Field(default_factory=list)
    """The character's own summaries of the previous round."""
    reflect: bool = True
    perceive: bool = True
    final: bool = False


class SpeakTask(Task):
    sub_round: int
    heard: list[Message] = Field(default_factory=list)
    """Group-chat messages of this round the speaker may see (pool view): earlier, closed sub-rounds."""
    earlier: list[Message] = Field(default_factory=list)
    """The latest lines of the run the speaker heard or said (any stage): what a reply must not repeat."""
    facts: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    think: bool = True


class SummarizeTask(Task):
    stage: Stage
    sub_round: int = 0
    lines: list[Message] = Field(default_factory=list)
    """The conversation as this character saw it."""


class BallotPaper(_Strict):
    """One vote to cast: the rule, the legal candidates under it, and what the voter may go by."""

    rule: VoteRule
    legal: list[str]
    knowledge: list[str] = Field(default_factory=list)


class VoteTask(Task):
    papers: list[BallotPaper]
    """One per task for a model (all votes run in parallel); all of them for a person, who is asked one
    question at a time."""


class GroupChatState(TypedDict, total=False):
    scenario: Scenario
    """The story (immutable during a run; characters' scratch lives here)."""
    ablations: Ablations
    """Stages and actions switched off; part of the state so resume, replay and fork keep them."""
    round: int
    """1-based; runs from 1 to scenario.settings.rounds."""
    stage: Stage
    order: list[str]
    """The principals acting in the current private stage, by influence (ties by the seed)."""
    actor: int
    """Index into `order` of the principal acting now."""
    chat: ChatCursor | None
    sub_round: int
    """The current group-chat sub-round (1-based)."""
    personas: Annotated[dict[str, Persona], merge_personas]
    pool: PoolChannel
    usage: UsageChannel
    warnings: WarningChannel
    ballots: BallotChannel
    outcome: Outcome | None
