"""A script for the scripted model that plays every group-chat action legally and records each call.

Tests use it to see a run from each character's side (what exactly reached that character's prompts); the
prompt-growth benchmark uses it to count prompt tokens per call by round. Replies are deterministic functions
of the request, so parallel tasks get the same answers in any order. Override any action with `on(schema, fn)`.

It reads structured fields, not prompt wording: who asks, in which round and stage and for which action come
from the request's run metadata (the gateway and the character's player tag every request), the legal ids
from the narrowed schema's enums. Only `scores` reads the prompt (a character's current scores are stated
nowhere else): its patterns are built from the prompt templates, and it fails loudly when they find nothing,
so a reworded prompt stops a test with a message instead of silently changing what it tests.
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
from sopgraph.nodes.groupchat.asking import ACTION_KEY, ROUND_KEY, STAGE_KEY
from sopgraph.nodes.llm import ROLE_KEY
from sopgraph.nodes.scripted import ScriptedRequest, count_tokens
from sopgraph.state.groupchat import Stage

_CID = r"[a-z][a-z0-9_]*"
SETTLING = (Stage.FINAL_UPDATE.value, Stage.SETTLEMENT.value)


def character_of(request: ScriptedRequest) -> str:
    """The character a request speaks for."""
    if ROLE_KEY not in request.metadata:
        raise LookupError(f"a request without {ROLE_KEY!r} metadata: not asked through a character's player")
    return str(request.metadata[ROLE_KEY])


def round_of(request: ScriptedRequest) -> int:
    """The round the request belongs to; 0 outside the rounds (a probe after the run)."""
    return int(request.metadata.get(ROUND_KEY, 0))


def stage_of(request: ScriptedRequest) -> str:
    """The stage as a `Stage` value (a vote's is `settlement`); empty outside the stages (a probe)."""
    return str(request.metadata.get(STAGE_KEY, "")).split(":", 1)[0]


def action_of(request: ScriptedRequest) -> str:
    """perceive, choose, think, speak, summarize, reflect, vote (or a probe's action)."""
    return str(request.metadata.get(ACTION_KEY, ""))


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
    """The asking character's current beliefs and feelings, as its prompt's memory (`prompts.memory`) states
    them; LookupError when the prompt states no memory or an item does not parse."""
    beliefs = _items(request, _BELIEFS, "beliefs", _BELIEF, "belief")
    feelings = _items(request, _FEELINGS, "relations", _FEELING, "id")
    return beliefs, feelings


def _items(
    request: ScriptedRequest, line: re.Pattern[str], group: str, item: re.Pattern[str], key: str
) -> dict[str, int]:
    match = line.search(request.prompt)
    if match is None:
        raise LookupError(f"{schema_name(request)} prompt of {character_of(request)}: no line {line.pattern!r}")
    out: dict[str, int] = {}
    for text in match[group].split(prompts.ITEMS):
        found = item.match(text)
        if found is None:
            if text in ("", prompts.NOBODY):
                continue
            raise LookupError(f"{schema_name(request)} prompt: {text!r} does not match {item.pattern!r}")
        out[found[key]] = int(found["score"])
    return out


def tag(request: ScriptedRequest) -> str:
    """A short digest of the request: makes every scripted utterance unique and traceable."""
    return hashlib.sha256(request.prompt.encode()).hexdigest()[:6]


@dataclass
class Call:
    character: str
    schema: str
    round: int
    stage: str
    """A `Stage` value."""
    prompt: str
    tokens: int

    @property
    def settling(self) -> bool:
        """The final update or a vote: after the last round."""
        return self.stage in SETTLING


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
