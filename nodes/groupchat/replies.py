"""The reply schemas of the character actions, beside the prompts (prompts.py) that ask for them.

Small on purpose (a 0.5B model fills them through forced function calling). Ids are narrowed per call to the
legal ones (an enum the model sees and pydantic enforces). A score update is a new score (weak models copy and
nudge a number more reliably than they produce a difference); how far it may move is checked by
`rules.Bounds`: asked again, then clamped. No reply is ever checkpointed: the actions turn them into
documents and persona patches (sopgraph.state.groupchat) first.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

CHOICE_REASON_WORDS = 15
VOTE_REASON_WORDS = 20
IMPRESSION_WORDS = 12
"""Word limits a schema's field states (or implies: "a few words"), and what the actions and rules cut it to."""


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
    reason: str = Field(description=f"Why, at most {CHOICE_REASON_WORDS} words.")


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
    reason: str = Field(description=f"Why, at most {VOTE_REASON_WORDS} words.")


def _enum_field(values: Sequence[str], description: str) -> Any:
    return (Literal[tuple(values)], Field(description=f"{description} One of: {', '.join(values)}."))


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
