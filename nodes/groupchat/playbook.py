"""A script for the scripted model that plays every group-chat action legally and records each prompt.

Tests use it to see a run from each character's side (what exactly reached that character's prompts);
the prompt-growth benchmark uses it to count prompt tokens per call by round; `--model scripted` dry runs
may use it for replies that are legal rather than random. Replies are deterministic functions of the
request, so parallel tasks get the same answers in any order. Override any action with `on(schema, fn)`.
"""

from __future__ import annotations

import hashlib
import re
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sopgraph.nodes.groupchat import prompts
from sopgraph.nodes.scripted import ScriptedRequest, count_tokens

# Every pattern is built from the prompt templates themselves, so a reworded prompt keeps the playbook working.
_CID = r"[a-z][a-z0-9_]*"
_ID = prompts.pattern(prompts.SYSTEM.split("\n", 1)[0], id=_CID)
_ROUND = prompts.pattern(prompts.HEADER, round=r"\d+", rounds=r"\d+", stage=r"[^.\n]*")


def character_of(request: ScriptedRequest) -> str:
    """The character a request speaks for (named in the system prompt)."""
    match = _ID.search(request.system)
    return match["id"] if match else "?"


def round_of(request: ScriptedRequest) -> int:
    match = _ROUND.search(request.prompt)
    return int(match["round"]) if match else 0


def stage_of(request: ScriptedRequest) -> str:
    """The stage title's first words: Update, Private chat, Confidential meeting, Group chat, Settlement."""
    match = _ROUND.search(request.prompt)
    return re.split(r"[:,]", match["stage"])[0] if match else ""


def schema_name(request: ScriptedRequest) -> str:
    return request.schema.__name__ if request.schema is not None else "text"


def legal(schema: type[BaseModel] | None, field: str) -> list[str]:
    """The enum a narrowed schema allows for `field` (partner, candidate...)."""
    if schema is None or field not in schema.model_fields:
        return []
    return [str(v) for v in typing.get_args(schema.model_fields[field].annotation)]


_BELIEFS = prompts.pattern(prompts.BELIEFS, re.M, beliefs=".*")
_FEELINGS = prompts.pattern(prompts.FEELINGS, re.M, relations=".*")
_BELIEF = prompts.pattern(prompts.BELIEF, belief=".*", score=r"\d+")
_FEELING = prompts.pattern(prompts.FEELING, id=_CID, score=r"\d+")


def scores(request: ScriptedRequest) -> tuple[dict[str, int], dict[str, int]]:
    """The asking character's current beliefs and feelings, as its prompt states them."""
    beliefs: dict[str, int] = {}
    feelings: dict[str, int] = {}
    if match := _BELIEFS.search(request.prompt):
        for item in match["beliefs"].split(prompts.ITEMS):
            if found := _BELIEF.fullmatch(item):
                beliefs[found["belief"]] = int(found["score"])
    if match := _FEELINGS.search(request.prompt):
        for item in match["relations"].split(prompts.ITEMS):
            if found := _FEELING.match(item):
                feelings[found["id"]] = int(found["score"])
    return beliefs, feelings


def tag(request: ScriptedRequest) -> str:
    """A short digest of the request: makes every scripted utterance unique and traceable."""
    return hashlib.sha256(request.prompt.encode()).hexdigest()[:6]


@dataclass
class Call:
    character: str
    schema: str
    round: int
    stage: str
    prompt: str
    tokens: int


Handler = Callable[[ScriptedRequest, str], Any]


class Playbook:
    """Callable as `ScriptedChatModel.script`."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._handlers: dict[str, Handler] = {
            "Perception": lambda r, c: {"situation": f"{c} sizes up the room", "plan": f"{c} plans to persuade"},
            "Choice": lambda r, c: {"partner": legal(r.schema, "partner")[0], "reason": "first on the list"},
            "Thought": lambda r, c: {"thought": f"{c} thinks {tag(r)}"},
            "Speech": lambda r, c: {"speech": f"{c} says {tag(r)}"},
            "Summary": lambda r, c: {"summary": f"{c} notes {tag(r)}"},
            "Reflect": lambda r, c: {"reflection": f"{c} reflects {tag(r)}", "relationships": [], "beliefs": []},
            "Vote": lambda r, c: {"candidate": legal(r.schema, "candidate")[0], "reason": "best case"},
        }

    def on(self, schema: str, handler: Handler) -> Playbook:
        self._handlers[schema] = handler
        return self

    def __call__(self, request: ScriptedRequest) -> Any:
        cid = character_of(request)
        name = schema_name(request)
        call = Call(cid, name, round_of(request), stage_of(request), request.prompt, count_tokens(request.prompt))
        with self._lock:
            self.calls.append(call)
        handler = self._handlers.get(name)
        return handler(request, cid) if handler else None

    # -- what the recorded calls show ----------------------------------------------------------------------
    def prompts_of(self, character: str, schema: str | None = None) -> list[str]:
        return [c.prompt for c in self.calls if c.character == character and (schema is None or c.schema == schema)]

    def seen_by(self, character: str) -> str:
        """Everything that reached a character's prompts, as one text."""
        return "\n".join(self.prompts_of(character))

    def of(self, schema: str) -> list[Call]:
        return [c for c in self.calls if c.schema == schema]
