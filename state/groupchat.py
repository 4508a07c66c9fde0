"""State, scenario schema and documents of the group-chat simulation (AgentGroupChat's stage machine).

A scenario (scenarios/*.yaml) fixes the cast, resources, rules and settings. The run state holds the
scenario, per-character personas (beliefs, relationships, reflection) in a channel that merges
per-character patches, and the message pool, where everything said is published with the visibility its
stage demands. A character's memory is append-only and lives in the pool: its own summaries, reflections
and persona snapshots, addressed to itself only. Bounds are enforced in one place (`Bounds`), and every
clamp leaves a `ClampWarning` in the state.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from langgraph.channels import DeltaChannel
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict

from sopgraph.state.datafile import read_mapping, validate
from sopgraph.state.pool import SNAPSHOT_EVERY, Document, Message, PoolChannel, append_unique
from sopgraph.state.usage import UsageChannel, UsageTotals

HUMAN = "human"
"""The model name of a character played by a person."""

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


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


ONE_ON_ONE = (Stage.PRIVATE_CHAT, Stage.MEETING)


# -- scenario -------------------------------------------------------------------------------------------


class ScenarioError(ValueError):
    """A scenario file cannot be used; the message names the file, the field and the problem."""


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

    def bounds(self) -> Bounds:
        s = self.settings
        return Bounds(
            belief_step=s.belief_step,
            relationship_step=s.relationship_step,
            speech_words=s.speech_words,
            reflection_words=s.reflection_words,
        )


def scenario_path(name_or_path: str | Path) -> Path:
    """A packaged story by name (`succession`) or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        return path
    return SCENARIO_DIR / f"{name_or_path}.yaml"


def packaged_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    return validate(Scenario, data, source, ScenarioError)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read and validate a scenario; ScenarioError names the file, field and problem."""
    if not str(name_or_path).strip():
        raise ScenarioError(
            f"no scenario given: name a packaged story ({', '.join(packaged_scenarios())}) or a YAML file"
        )
    path = scenario_path(name_or_path)
    if not path.exists():
        known = ", ".join(packaged_scenarios())
        raise ScenarioError(f"{path}: no such scenario file (packaged stories: {known})")
    data = read_mapping(path, "title, rules, characters, resources, settings", ScenarioError)
    return parse_scenario(data, str(path))


class Ablations(_Strict):
    """Switches that turn stages or actions off (AgentGroupChat's ablations)."""

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

    def stage_enabled(self, stage: Stage) -> bool:
        off = {
            Stage.PRIVATE_CHAT: self.no_private_chat,
            Stage.MEETING: self.no_meeting,
            Stage.GROUP_CHAT: self.no_group_chat,
            Stage.FINAL_UPDATE: self.no_reflection,
        }
        return not off.get(stage, False)


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


# -- bounds and clamping: the one place --------------------------------------------------------------


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


class Bounds(_Strict):
    belief_step: int
    relationship_step: int
    speech_words: int
    reflection_words: int

    def belief_problems(self, persona: Persona, updates: Sequence[BeliefUpdate]) -> list[str]:
        out = []
        for u in updates:
            if u.belief not in persona.beliefs:
                out.append(f"belief {u.belief!r} is not one of yours")
            elif abs(u.score - persona.beliefs[u.belief]) > self.belief_step or not 0 <= u.score <= 100:
                out.append(
                    f"belief {u.belief!r} may move from {persona.beliefs[u.belief]} by at most {self.belief_step}"
                    f" (0-100), not to {u.score}"
                )
        return out

    def relationship_problems(self, persona: Persona, updates: Sequence[RelationshipUpdate]) -> list[str]:
        out = []
        for u in updates:
            if u.character not in persona.relationships:
                out.append(f"{u.character!r} is not another character's id")
                continue
            old = persona.relationships[u.character].score
            if abs(u.score - old) > self.relationship_step or not 0 <= u.score <= 100:
                out.append(
                    f"your feeling for {u.character} may move from {old} by at most {self.relationship_step}"
                    f" (0-100), not to {u.score}"
                )
        return out

    def apply_reflection(self, persona: Persona, reply: Reflect) -> tuple[PersonaPatch, list[str]]:
        """The persona patch a reflection makes, every score clamped to its bounded step; returns what had
        to be clamped."""
        clamped: list[str] = []
        beliefs: dict[str, int] = {}
        for u in reply.beliefs:
            if u.belief not in persona.beliefs:
                clamped.append(f"dropped unknown belief {u.belief!r}")
                continue
            old = persona.beliefs[u.belief]
            new = clamp_int(clamp_int(u.score, old - self.belief_step, old + self.belief_step), 0, 100)
            if new != u.score:
                clamped.append(f"belief {u.belief!r}: {u.score} clamped to {new}")
            beliefs[u.belief] = new
        rel: dict[str, Relationship] = {}
        for r in reply.relationships:
            if r.character not in persona.relationships:
                clamped.append(f"dropped feeling for unknown {r.character!r}")
                continue
            before = persona.relationships[r.character]
            step = self.relationship_step
            new = clamp_int(clamp_int(r.score, before.score - step, before.score + step), 0, 100)
            if new != r.score:
                clamped.append(f"feeling for {r.character}: {r.score} clamped to {new}")
            impression = limit_words(r.impression, 12)[0] or before.impression
            rel[r.character] = Relationship(score=new, impression=impression)
        reflection, cut = limit_words(reply.reflection, self.reflection_words)
        if cut:
            clamped.append(f"reflection cut to {self.reflection_words} words")
        return PersonaPatch(beliefs=beliefs, relationships=rel, reflection=reflection), clamped


# -- model-facing reply schemas ------------------------------------------------------------------------
# Small on purpose (a 0.5B model fills them through forced function calling). Ids are narrowed per call to
# the legal ones (an enum the model sees and pydantic enforces). A score update is a new score (weak models
# copy and nudge a number more reliably than they produce a difference); how far it may move is checked by
# `Bounds`: asked again, then clamped.


class Perception(BaseModel):
    situation: str = Field(description="What matters to me now, one sentence in my own words.")
    plan: str = Field(description="What I will do this round and with whom, one sentence.")


class Thought(BaseModel):
    thought: str = Field(description="My private thought before I speak, one sentence.")


class Speech(BaseModel):
    speech: str = Field(description="What I say aloud, in my own voice: one to three sentences.")


class Summary(BaseModel):
    summary: str = Field(description="What I learned, and about whom: one or two sentences in my own words.")


class Choice(BaseModel):
    partner: str = Field(description="The id of the character you choose.")
    reason: str = Field(description="Why, at most 15 words.")


class RelationshipUpdate(BaseModel):
    character: str = Field(description="Id of the other character.")
    score: int = Field(description="Your new feeling for them, 0-100.")
    impression: str = Field(default="", description="My impression of them now, a few words.")


class BeliefUpdate(BaseModel):
    belief: str = Field(description="The belief, exactly as written.")
    score: int = Field(description="How strongly you hold it now, 0-100.")


class Reflect(BaseModel):
    reflection: str = Field(
        description="My memory now, in my own words: what I know, what I want, whom I trust; a few sentences."
    )
    relationships: list[RelationshipUpdate] = Field(default_factory=list)
    beliefs: list[BeliefUpdate] = Field(default_factory=list)


class Vote(BaseModel):
    candidate: str = Field(description="The id you vote for.")
    reason: str = Field(description="Why, at most 20 words.")


def _enum_field(values: Sequence[str], description: str) -> Any:
    return (Literal[tuple(values)], Field(description=f"{description} One of: {', '.join(values)}."))  # type: ignore[valid-type]


@lru_cache(maxsize=256)
def choice_schema(legal: tuple[str, ...]) -> type[Choice]:
    """`Choice` whose partner must be one of `legal`."""
    return create_model("Choice", __base__=Choice, partner=_enum_field(legal, "The id of the character you choose."))


@lru_cache(maxsize=256)
def vote_schema(legal: tuple[str, ...]) -> type[Vote]:
    return create_model("Vote", __base__=Vote, candidate=_enum_field(legal, "The id you vote for."))


@lru_cache(maxsize=256)
def reflect_schema(others: tuple[str, ...], beliefs: tuple[str, ...]) -> type[Reflect]:
    """`Reflect` narrowed to this character's relations and beliefs."""
    score = (int, Field(description="0-100.", json_schema_extra={"minimum": 0, "maximum": 100}))
    rel = create_model(
        "RelationshipUpdate",
        __base__=RelationshipUpdate,
        character=_enum_field(others, "Id of the other character."),
        score=score,
    )
    bel = create_model(
        "BeliefUpdate",
        __base__=BeliefUpdate,
        belief=_enum_field(beliefs, "The belief, exactly as written."),
        score=score,
    )
    return create_model(
        "Reflect",
        __base__=Reflect,
        relationships=(list[rel], Field(default_factory=list, description="Only people you now see differently.")),  # type: ignore[valid-type]
        beliefs=(list[bel], Field(default_factory=list, description="Only beliefs that changed.")),  # type: ignore[valid-type]
    )


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


class GroupChatInput(BaseModel):
    """What a group-chat run is asked: a story by packaged name, YAML path or in full, and ablations.
    Validated before any node runs (the graph's input schema)."""

    model_config = ConfigDict(extra="forbid")

    scenario: Scenario | str = Field(
        description="A packaged story's name (see `sopgraph groupchat --help`), a YAML path, or a whole scenario."
    )
    ablations: Ablations = Field(
        default_factory=Ablations,
        description="Stages or actions switched off: an object of flags, or a list of names such as ['meeting'].",
    )

    @field_validator("scenario", mode="after")
    @classmethod
    def _load(cls, value: Scenario | str) -> Scenario:
        return load_scenario(value) if isinstance(value, str) else value

    @field_validator("ablations", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return Ablations.of(value) if isinstance(value, (list, tuple)) else value


def influence(scenario: Scenario, personas: Mapping[str, Persona], cid: str) -> float:
    """Resources owned plus the mean feeling of everyone else toward the character."""
    feelings = [p.relationships[cid].score for o, p in personas.items() if o != cid and cid in p.relationships]
    return scenario.holdings(cid) + (sum(feelings) / len(feelings) if feelings else 50.0)


def acting_order(
    scenario: Scenario, personas: Mapping[str, Persona], round_: int, stage: Stage, who: Sequence[str] | None = None
) -> list[str]:
    """Principals by influence, highest first; ties broken by a RNG seeded from the scenario seed."""
    rng = random.Random(f"{scenario.settings.seed}:{round_}:{stage.value}")
    ids = list(who if who is not None else scenario.principals)
    tiebreak = {cid: rng.random() for cid in ids}
    return sorted(ids, key=lambda c: (-influence(scenario, personas, c), tiebreak[c]))
