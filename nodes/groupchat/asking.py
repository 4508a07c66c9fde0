"""Who answers for a character, and the ask → re-ask → clamp discipline every action follows.

A character is played by its model (through the gateway) or by a person (`model: human`, through a
LangGraph interrupt that carries the prompt and the expected JSON schema; the run resumes with
`Command(resume={...})`). Either way an answer that is malformed or out of bounds is asked for again a
bounded number of times (`Context.max_reasks`), then replaced by a legal fallback, and a `ClampWarning`
records what happened.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from langgraph.types import interrupt
from pydantic import BaseModel, ValidationError

from sopgraph.nodes.groupchat import prompts
from sopgraph.nodes.llm import ModelGateway, StructuredOutputError
from sopgraph.state.context import Context, ModelSpec
from sopgraph.state.groupchat import HUMAN, CharacterSpec, ClampWarning
from sopgraph.state.usage import UsageRecord, UsageTotals

T = TypeVar("T", bound=BaseModel)

SCHEMA_LAST = True
"""A character switches schemas under one system prompt (its card): the embedded server gets each request's
schema after the prompt, so the card, memory and stage it shares with the character's last request stay a
cached prefix (`local_messages`; measured by benchmarks/groupchat_prompt_cache.py)."""

MAX_OUTPUT_TOKENS = 384
"""Every character reply is a few sentences (a reflection with its score changes is the longest): a small model
that loops inside a JSON string is stopped here instead of at the run's general cap."""


def model_for(spec: CharacterSpec, ctx: Context) -> ModelSpec:
    """The scenario's model for the character, else the run's per-character model, else the default."""
    return spec.model or ctx.models.get(spec.id) or ctx.model


ROUND_KEY = "sopgraph_round"
STAGE_KEY = "sopgraph_stage"
AT_KEY = "sopgraph_at"
ACTION_KEY = "sopgraph_action"
"""Run-metadata keys a character's model request carries besides the gateway's `ROLE_KEY` (the character):
where in the run it is asked and for which action. Traces show them; test scripts read them instead of the
prompt's wording."""


@dataclasses.dataclass
class Where:
    round: int
    stage: str
    character: str
    at: str = ""

    def metadata(self) -> dict[str, Any]:
        return {ROUND_KEY: self.round, STAGE_KEY: self.stage, AT_KEY: self.at}

    def warning(self, action: str, problem: str, fallback: str) -> ClampWarning:
        return ClampWarning(
            round=self.round,
            stage=self.stage,
            character=self.character,
            action=action,
            problem=problem[:500],
            fallback=fallback[:300],
            at=self.at,
        )


class Player:
    """Answers structured questions for one character within one node execution."""

    def __init__(self, spec: CharacterSpec, ctx: Context | None, spent: UsageTotals | None = None) -> None:
        self.spec = spec
        self.ctx = ctx or Context()
        model = model_for(spec, self.ctx)
        self.human = model == HUMAN
        self.llm: ModelGateway | None = None
        if not self.human:
            models = {**self.ctx.models, spec.id: model}
            cap = min(self.ctx.max_output_tokens, MAX_OUTPUT_TOKENS)
            self.llm = ModelGateway(
                dataclasses.replace(self.ctx, models=models, max_output_tokens=cap),
                role=spec.id,
                spent=spent,
                schema_last=SCHEMA_LAST,
            )

    def ask(
        self, schema: type[T], prompt: str, system: str, action: str, where: Where | None = None, attempt: int = 1
    ) -> T:
        """`attempt` 2, 3, ...: a re-ask, sampled hotter and with another seed (the gateway's `reask_model`)."""
        if self.llm is not None:
            tags = {ACTION_KEY: action, **(where.metadata() if where else {})}
            ask = prompts.join(prompt, prompts.REPLY.format(tool=schema.__name__))
            return self.llm.structured(schema, ask, system=system, metadata=tags, attempt=attempt)
        return self._ask_human(schema, prompt, action)

    def _ask_human(self, schema: type[T], prompt: str, action: str) -> T:
        error = ""
        for _ in range(self.ctx.max_reasks + 1):
            answer = interrupt(
                {
                    "reason": "human",
                    "character": self.spec.id,
                    "action": action,
                    "message": f"{self.spec.name} ({self.spec.id}) is yours to play: {action}. "
                    f"Answer with a JSON object of the {schema.__name__} schema."
                    + (f" Your last answer was invalid: {error}" if error else ""),
                    "prompt": prompt,
                    "schema": schema.model_json_schema(),
                }
            )
            try:
                return schema.model_validate(answer)
            except ValidationError as exc:
                error = " ".join(str(exc).split())[:300]
        raise StructuredOutputError(f"human ({self.spec.id}) gave no valid {schema.__name__}: {error}")

    def records(self) -> list[UsageRecord]:
        return list(self.llm.records) if self.llm is not None else []


def ask(
    player: Player,
    schema: type[T],
    prompt: str,
    system: str,
    *,
    action: str,
    where: Where,
    fallback: Callable[[T | None], T],
    check: Callable[[T], list[str]] | None = None,
    describe: Callable[[T], str] = lambda v: v.model_dump_json()[:200],
    reasks: int | None = None,
    reword: Callable[[list[str]], str] | None = None,
    reprompt: Callable[[T], str] | None = None,
) -> tuple[T, list[ClampWarning]]:
    """A valid answer, or a clamped one with a warning.

    Type and enum errors are re-asked by the gateway (or the human loop); `check` finds range problems,
    which are re-asked here with the problems spelled out (`reword` turns them into the words added to the
    prompt, `prompts.REASK` by default; `reasks` times, default `Context.max_reasks`), each re-ask sampled
    hotter and with another seed than the answer before it; whatever is still wrong goes to `fallback`.
    `reprompt`: the prompt a re-ask of an answer extends, when it should leave out part of the first (default
    `prompt`).
    """
    try:
        value = player.ask(schema, prompt, system, action, where)
    except StructuredOutputError as exc:
        fixed = fallback(None)
        return fixed, [where.warning(action, str(exc), describe(fixed))]
    if check is None:
        return value, []
    for attempt in range(2, 2 + (player.ctx.max_reasks if reasks is None else reasks)):
        problems = check(value)
        if not problems:
            return value, []
        try:
            told = reword(problems) if reword else prompts.REASK.format(problems="; ".join(problems))
            again = prompt if reprompt is None else reprompt(value)
            value = player.ask(schema, again + told, system, action, where, attempt)
        except StructuredOutputError as exc:
            fixed = fallback(value)
            return fixed, [where.warning(action, str(exc), describe(fixed))]
    problems = check(value)
    if not problems:
        return value, []
    fixed = fallback(value)
    return fixed, [where.warning(action, "; ".join(problems), describe(fixed))]


def usage(*players: Player) -> dict[str, Any]:
    return {"usage": [r for p in players for r in p.records()]}
