"""State and documents of the demo graph: a writer pitches an idea, a critic reviews, until approved."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from sopgraph.state.limits import MAX_IDEA_CHARS
from sopgraph.state.pool import Document, PoolChannel
from sopgraph.state.usage import UsageChannel


class Pitch(Document):
    """A one-paragraph product pitch."""

    title: str = Field(description="Product name, a few words.", min_length=1, max_length=80)
    tagline: str = Field(description="One sentence that sells the product.", min_length=1, max_length=300)
    features: list[str] = Field(description="Two to five key features.", min_length=1, max_length=8)


class Review(Document):
    """The critic's verdict on a pitch."""

    verdict: Literal["approve", "revise"] = Field(description="approve if the pitch is good enough")
    score: int = Field(description="Quality from 1 (poor) to 10 (excellent).", ge=1, le=10)
    comments: str = Field(description="What to improve, one or two sentences.", max_length=600)


class DemoInput(BaseModel):
    """What a demo run is asked; validated before any node runs."""

    model_config = ConfigDict(extra="forbid")

    idea: str = Field(
        default="a command-line todo list",
        min_length=1,
        max_length=MAX_IDEA_CHARS,
        description="The product idea to pitch.",
    )
    max_revisions: int = Field(default=1, ge=0, le=20, description="How often the critic may send the pitch back.")


class DemoState(TypedDict, total=False):
    idea: str
    """The product idea to pitch."""
    max_revisions: int
    """How many times the critic may send the pitch back."""
    revisions: int
    """How many times it has been sent back so far."""
    outcome: str
    """approved / gave up, set by the final node."""
    pool: PoolChannel
    usage: UsageChannel
