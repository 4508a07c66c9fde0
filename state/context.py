"""Runtime settings passed to a graph run (LangGraph's `context`): models, budget, limits.

The context is not part of the checkpointed state, so the CLI records it in the run's metadata at start
and hands the same settings back on resume, replay and fork.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from pydantic import WithJsonSchema

ModelSpec = Annotated[
    str | BaseChatModel,
    # Over the API (and in Studio's form) a model is a name; chat model objects are for Python callers.
    WithJsonSchema({"type": "string", "description": "local, openai:<model>, <provider>:<model>, scripted"}),
]
"""A model name (`local`, `openai:gpt-4o-mini`, `ollama:llama3.2`, `scripted`, a registered name) or a chat
model object handed in by the caller."""

INSTANCE_PREFIX = "instance:"
"""How a chat model object is named in the usage ledger and in run metadata (it is named, never stored)."""


def model_name(model: ModelSpec) -> str:
    if isinstance(model, str):
        return model
    ident = getattr(model, "model_name", None) or getattr(model, "model", None) or model._llm_type
    return f"{INSTANCE_PREFIX}{type(model).__name__}:{ident}"


def default_model() -> str:
    """The model a run uses when none is named: SOPGRAPH_MODEL, else the embedded one."""
    return os.environ.get("SOPGRAPH_MODEL", "local")


@dataclass(kw_only=True)
class Context:
    """Settings every sopgraph graph understands."""

    model: ModelSpec = field(default_factory=default_model)
    """Default model for every role: `local`, `openai:<model>`, `<provider>:<model>` (any LangChain
    provider), `scripted`, a registered name, or a chat model object."""
    models: dict[str, ModelSpec] = field(default_factory=dict)
    """Per-role (or per-character) overrides of `model`, names or chat model objects."""
    budget_tokens: int | None = None
    """Stop (resumably) once the run has used this many tokens."""
    budget_usd: float | None = None
    """Stop (resumably) once the run has cost this many dollars."""
    max_reasks: int = 2
    """How many times an invalid structured reply is sent back with its validation error."""
    temperature: float = 0.2
    max_output_tokens: int = 1024
    request_timeout_s: float = 900.0
    """Generous: the embedded model now and then answers 5-10x slower than usual."""
    seed: int = 0
    out_dir: str | None = None
    """Where a graph that writes files writes them, over the state's `out_dir`: a replay or a fork of a run
    gets a directory of its own this way, from whichever checkpoint it starts (the state may not be editable
    there: a checkpoint with pending parallel tasks)."""

    def model_for(self, role: str) -> ModelSpec:
        return self.models.get(role, self.model)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (run metadata): a chat model object is recorded by name only."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["model"] = model_name(self.model)
        data["models"] = {role: model_name(m) for role, m in self.models.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Context:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})
