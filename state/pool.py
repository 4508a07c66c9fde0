"""The message pool: the shared, append-only, typed state every graph is built on.

Roles and characters never talk to each other directly. They publish `Message`s into the pool and read
it back through `view`, which applies two filters in a fixed order:

1. *visibility* (who may see a message at all, and whether its content or only its existence), and
2. *subscription* (which of the visible messages a subscriber cares about: message kinds it watches,
   messages addressed to it).

Visibility is decided here, once, so a prompt can never leak what its speaker must not know.

The pool channel is a LangGraph `DeltaChannel`: a checkpoint stores only the messages a step added, so
checkpoint storage grows linearly with the run instead of quadratically.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from langgraph.channels import DeltaChannel
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, computed_field, field_validator, model_validator

EVERYONE = "*"
SYSTEM = "system"
SUBROUND_CLOSED = "subround_closed"


class Visibility(StrEnum):
    """Who may see a message."""

    PUBLIC = "public"
    """Everyone sees the whole message."""
    PARTICIPANTS = "participants"
    """Only the sender and the addressees see it; for everyone else it does not exist (private chat)."""
    EXISTENCE_PUBLIC = "existence_public"
    """Everyone learns that it happened and between whom; only participants see the content (a
    confidential meeting)."""
    AFTER_SUBROUND = "after_subround"
    """The sender sees it at once; everyone else once its sub-round is closed (simultaneous group-chat
    speech: nobody hears a speech of the same sub-round before speaking)."""


class Document(BaseModel):
    """Base of every typed payload (PRD, design, vote...).

    Subclasses register themselves by name so a payload read back from a checkpoint (a plain dict after
    JSON) is rebuilt as the same class.
    """

    model_config = ConfigDict(extra="forbid")
    registry: ClassVar[dict[str, type[Document]]] = {}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def doc_type(self) -> str:
        """Serialized with the document (not asked of a model) so a checkpoint can rebuild the class."""
        return type(self).__name__

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Document.registry[cls.__name__] = cls

    @model_validator(mode="before")
    @classmethod
    def _drop_doc_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and "doc_type" in data:
            return {k: v for k, v in data.items() if k != "doc_type"}
        return data

    @classmethod
    def revive(cls, data: Any) -> Any:
        """Turn a serialized payload back into its registered class."""
        if isinstance(data, dict) and data.get("doc_type") in Document.registry:
            return Document.registry[data["doc_type"]].model_validate(data)
        return data


class Message(BaseModel):
    """One entry of the pool (MetaGPT's Message, with AgentGroupChat's visibility)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    sender: str
    content: str = ""
    payload: SerializeAsAny[Document] | dict[str, Any] | None = None
    kind: str = Field(description="The action that caused the message (MetaGPT's cause_by).")
    send_to: tuple[str, ...] = (EVERYONE,)
    visibility: Visibility = Visibility.PUBLIC
    round: int = 0
    stage: str = ""
    sub_round: int = 0
    redacted: bool = False
    """True on the copy shown to a non-participant of an existence-public message."""

    @field_validator("payload", mode="before")
    @classmethod
    def _revive_payload(cls, value: Any) -> Any:
        return Document.revive(value)

    @field_validator("send_to", mode="before")
    @classmethod
    def _normalise_send_to(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        if value is None or (isinstance(value, (list, tuple, set, frozenset)) and not value):
            return (EVERYONE,)
        return tuple(value)

    @property
    def to_everyone(self) -> bool:
        return EVERYONE in self.send_to

    def participants(self) -> frozenset[str]:
        """The sender and the named addressees."""
        return frozenset({self.sender, *self.send_to}) - {EVERYONE}

    def addressed_to(self, name: str) -> bool:
        """Explicitly addressed to `name` (a broadcast is not)."""
        return name in self.send_to

    def redacted_copy(self) -> Message:
        """What a non-participant learns of an existence-public message: that it happened, and who met."""
        names = ", ".join(sorted(self.participants()))
        return self.model_copy(
            update={
                "content": f"[{self.kind} between {names}: contents are confidential]",
                "payload": None,
                "redacted": True,
            }
        )


def subround_key(message: Message) -> tuple[int, str, int]:
    return (message.round, message.stage, message.sub_round)


def close_subround(round: int, stage: str, sub_round: int) -> Message:
    """The marker that makes a sub-round's `AFTER_SUBROUND` speech visible to everyone."""
    return Message(
        sender=SYSTEM,
        kind=SUBROUND_CLOSED,
        content=f"round {round} {stage} sub-round {sub_round} closed",
        round=round,
        stage=stage,
        sub_round=sub_round,
    )


def append_unique(model: type[BaseModel]) -> Callable[[Sequence[Any], Sequence[Any]], list[Any]]:
    """A DeltaChannel reducer that appends records of `model`, ignoring an id already present.

    Each write may be one record or a list of them. Dropping repeated ids makes a node that is retried
    after a crash idempotent, and keeps the reducer batching-invariant as DeltaChannel requires.
    """

    def reduce(current: Sequence[Any], batches: Sequence[Any]) -> list[Any]:
        incoming: list[Any] = []
        for batch in batches:
            items: Iterable[Any] = batch if isinstance(batch, (list, tuple)) else [batch]
            incoming.extend(item if isinstance(item, model) else model.model_validate(item) for item in items)
        out = list(current)
        if incoming:
            seen = {m.id for m in current}
            for record in incoming:
                if record.id not in seen:
                    seen.add(record.id)
                    out.append(record)
        return out

    reduce.__name__ = f"append_unique_{model.__name__}"
    return reduce


append_messages = append_unique(Message)

SNAPSHOT_EVERY = 1000
"""Updates between full snapshots of an append-only channel. Every snapshot stores the whole list, so
frequent snapshots make storage quadratic again (every 100 updates: x2.3-2.8 bytes per doubling of the
run); loading a checkpoint replays at most this many writes, which costs little."""

PoolChannel = Annotated[list[Message], DeltaChannel(append_messages, snapshot_frequency=SNAPSHOT_EVERY)]
"""Use as the type of a state field: `pool: PoolChannel`."""


class Subscription(BaseModel):
    """What a role or character watches."""

    model_config = ConfigDict(frozen=True)

    kinds: frozenset[str] = frozenset()
    """Message kinds watched (MetaGPT's `_watch`)."""
    all_kinds: bool = False
    """Watch every kind (a character in a chat hears everything it is allowed to)."""
    addressed: bool = True
    """Also receive any message explicitly sent to me, whatever its kind."""
    own: bool = False
    """Include my own messages."""

    def matches(self, subscriber: str, message: Message) -> bool:
        if message.kind == SUBROUND_CLOSED:
            return False
        if message.sender == subscriber and not self.own:
            return False
        if self.all_kinds or message.kind in self.kinds:
            return True
        return self.addressed and message.addressed_to(subscriber) and message.sender != subscriber


def visible_copy(message: Message, subscriber: str, closed: set[tuple[int, str, int]]) -> Message | None:
    """The form in which `subscriber` may see `message`, or None if it may not see it at all."""
    if message.visibility is Visibility.PUBLIC:
        return message
    insider = subscriber == message.sender or message.to_everyone or message.addressed_to(subscriber)
    if message.visibility is Visibility.PARTICIPANTS:
        return message if insider else None
    if message.visibility is Visibility.EXISTENCE_PUBLIC:
        return message if insider else message.redacted_copy()
    if message.visibility is Visibility.AFTER_SUBROUND:
        if subscriber == message.sender:
            return message
        if insider and subround_key(message) in closed:
            return message
        return None
    raise ValueError(f"unknown visibility {message.visibility!r}")


def view(messages: Sequence[Message], subscriber: str, subscription: Subscription | None = None) -> list[Message]:
    """Exactly what `subscriber` may see of the pool, in publication order, filtered by its subscription."""
    subscription = subscription or Subscription(all_kinds=True)
    closed = {subround_key(m) for m in messages if m.kind == SUBROUND_CLOSED}
    out: list[Message] = []
    for message in messages:
        if not subscription.matches(subscriber, message):
            continue
        seen = visible_copy(message, subscriber, closed)
        if seen is not None:
            out.append(seen)
    return out


class Pool:
    """Read-side convenience over the pool list held in state."""

    def __init__(self, messages: Sequence[Message] | None) -> None:
        self.messages: Sequence[Message] = messages or []

    def view(self, subscriber: str, subscription: Subscription | None = None) -> list[Message]:
        return view(self.messages, subscriber, subscription)

    def latest(self, kind: str, subscriber: str | None = None) -> Message | None:
        """The newest message of a kind (as `subscriber` may see it, when given)."""
        seq = (
            self.view(subscriber, Subscription(kinds=frozenset({kind}), own=True))
            if subscriber
            else [m for m in self.messages if m.kind == kind]
        )
        return seq[-1] if seq else None

    def __len__(self) -> int:
        return len(self.messages)
