"""The one way a node talks to a model.

`ModelGateway.for_node(state, runtime, role)` picks the role's model from the run's context, asks for text
or for a validated pydantic object, re-asks with the validation error a bounded number of times, records
every call in the usage ledger and stops the run resumably (a LangGraph interrupt) when the budget is
spent. Model names:

- `local`: the embedded llama.cpp server (tools/local_model.py), started on demand;
- `openai:<model>`: OpenAI, or any compatible server through OPENAI_BASE_URL;
- `scripted`: the deterministic test model (nodes/scripted.py);
- any name given to `register_model` (tests register scripted models with scripts this way).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.errors import GraphBubbleUp
from pydantic import BaseModel, ValidationError

from sopgraph.state.context import Context
from sopgraph.state.usage import UsageRecord, UsageTotals

T = TypeVar("T", bound=BaseModel)

# Dollars per million tokens (input, output). Unknown models cost 0 and are reported as unpriced.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}


class ModelError(RuntimeError):
    """A model could not be resolved or reached; the message is one line meant for the user."""


class StructuredOutputError(ModelError):
    """The model kept replying with output that does not fit the schema."""


_registry: dict[str, Callable[[], BaseChatModel]] = {}
_cache: dict[tuple[str, float, float, int, int | None], BaseChatModel] = {}
_cache_lock = threading.Lock()


def register_model(name: str, model: BaseChatModel | Callable[[], BaseChatModel]) -> None:
    """Make `name` resolve to a given model (or factory); used by tests and plug-ins."""
    _registry[name] = model if callable(model) and not isinstance(model, BaseChatModel) else (lambda: model)
    forget_model(name)


def unregister_model(name: str) -> None:
    _registry.pop(name, None)
    forget_model(name)


def forget_model(name: str) -> None:
    """Drop cached clients for a name so the next call resolves it afresh."""
    with _cache_lock:
        dropped = [_cache.pop(k) for k in [k for k in _cache if k[0] == name]]
    for model in dropped:
        client = getattr(model, "http_client", None)
        if client is not None and hasattr(client, "close"):
            client.close()


def _causes(exc: BaseException) -> Iterator[BaseException]:
    chain: BaseException | None = exc
    while chain is not None:
        yield chain
        chain = chain.__cause__ or chain.__context__


def _is_connection_error(exc: BaseException) -> bool:
    return any("ConnectionError" in type(e).__name__ or "ConnectError" in type(e).__name__ for e in _causes(exc))


def _is_closed_client(exc: BaseException) -> bool:
    """httpx refusing a request on a client that forget_model closed: another thread replaced the server
    while this one held the old client."""
    return any(isinstance(e, RuntimeError) and "client has been closed" in str(e) for e in _causes(exc))


def provider_of(name: str) -> str:
    if name in _registry or name == "scripted" or name.startswith("scripted:"):
        return "scripted"
    if name == "local" or name.startswith("local:"):
        return "local"
    if name.startswith("openai:"):
        return "openai"
    raise ModelError(
        f"unknown model name {name!r}: use 'local', 'local:<registry name>', 'openai:<model>' or 'scripted'"
    )


def structured_method(name: str) -> str:
    """The structured-output method that works for the provider.

    llama.cpp's server answers `response_format: json_schema` with HTTP 500, but forced function calling
    works; OpenAI supports strict json_schema.
    """
    provider = provider_of(name)
    if provider == "openai" and not os.environ.get("OPENAI_BASE_URL"):
        return "json_schema"
    return "function_calling"


def _openai_model(
    model: str, base_url: str | None, ctx: Context, api_key: str | None, *, loopback: bool = False
) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    extra: dict[str, Any] = {}
    if base_url is not None:
        # langchain-openai sends the cap as `max_completion_tokens`, which llama.cpp's server (and other
        # OpenAI-compatible servers) silently ignore: a rambling reply then runs on to the context limit.
        # Those servers read `max_tokens`; OpenAI itself reads the new name.
        extra["extra_body"] = {"max_tokens": ctx.max_output_tokens}
    if loopback:  # never send the embedded server's traffic through an HTTP(S)_PROXY from the environment
        import httpx

        extra["http_client"] = httpx.Client(trust_env=False, timeout=ctx.request_timeout_s)
    return ChatOpenAI(
        **extra,
        model=model,
        base_url=base_url,
        api_key=api_key,  # type: ignore[arg-type]
        temperature=ctx.temperature,
        max_completion_tokens=ctx.max_output_tokens,
        timeout=ctx.request_timeout_s,
        max_retries=2,
        seed=ctx.seed,
        stream_usage=True,
    )


def resolve_model(name: str, ctx: Context | None = None) -> BaseChatModel:
    """A chat model for a model name; clear one-line ModelError on a bad name or missing setting."""
    ctx = ctx or Context(model=name)
    key = (name, ctx.temperature, ctx.request_timeout_s, ctx.max_output_tokens, ctx.seed)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    provider = provider_of(name)
    model: BaseChatModel
    if name in _registry:
        model = _registry[name]()
    elif provider == "scripted":
        from sopgraph.nodes.scripted import ScriptedChatModel

        model = ScriptedChatModel(seed=ctx.seed)
    elif provider == "local":
        from sopgraph.tools import local_model

        spec_name = name.split(":", 1)[1] if ":" in name else None
        try:
            server = local_model.ensure_server(spec_name) if spec_name else local_model.ensure_server()
        except local_model.LocalModelError as exc:
            raise ModelError(f"local model: {exc}") from exc
        model = _openai_model(server.alias, server.base_url, ctx, api_key="sk-local-no-key", loopback=True)
    else:
        base_url = os.environ.get("OPENAI_BASE_URL") or None
        api_key = os.environ.get("OPENAI_API_KEY")
        if not api_key and not base_url:
            raise ModelError(f"{name}: OPENAI_API_KEY is not set (or set OPENAI_BASE_URL for a compatible server)")
        model = _openai_model(name.split(":", 1)[1], base_url, ctx, api_key=api_key or "sk-no-key")
    with _cache_lock:
        _cache[key] = model
    return model


def preflight(ctx: Context) -> None:
    """Resolve every model a run's context names before the run starts, so a bad setting fails at once
    (and the embedded server is up before the first node waits on it)."""
    for name in sorted({ctx.model, *ctx.models.values()}):
        resolve_model(name, ctx)


def cost_of(name: str, input_tokens: int, output_tokens: int) -> float:
    if provider_of(name) != "openai" or os.environ.get("OPENAI_BASE_URL"):
        return 0.0
    price = PRICES_PER_MTOK.get(name.split(":", 1)[1])
    if price is None:
        return 0.0
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000


def _usage_of(message: Any) -> tuple[int, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage.get("input_tokens", 0) or 0), int(usage.get("output_tokens", 0) or 0)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _raw_reply_text(raw: Any) -> str:
    if isinstance(raw, AIMessage) and raw.tool_calls:
        return json.dumps(raw.tool_calls[0].get("args", {}))
    return str(getattr(raw, "content", raw) or "")


def as_messages(prompt: str | Sequence[BaseMessage], system: str | None = None) -> list[BaseMessage]:
    msgs: list[BaseMessage] = [HumanMessage(prompt)] if isinstance(prompt, str) else list(prompt)
    if system:
        msgs.insert(0, SystemMessage(system))
    return msgs


class ModelGateway:
    """Model access for one node execution, with its share of the usage ledger."""

    def __init__(self, ctx: Context, role: str, spent: UsageTotals | None = None) -> None:
        self.ctx = ctx
        self.role = role
        self.model_name = ctx.model_for(role)
        provider_of(self.model_name)  # fail fast on a bad name
        self.records: list[UsageRecord] = []
        self._spent_before = spent or UsageTotals()

    @classmethod
    def for_node(cls, state: Any, runtime: Any, role: str) -> ModelGateway:
        ctx = getattr(runtime, "context", None) or Context()
        ledger = state.get("usage", []) if isinstance(state, dict) else getattr(state, "usage", [])
        return cls(ctx, role, UsageTotals.of(ledger or []))

    # -- budget -------------------------------------------------------------------------------------
    def spent(self) -> UsageTotals:
        mine = UsageTotals.of(self.records)
        before = self._spent_before
        return UsageTotals(
            calls=before.calls + mine.calls,
            input_tokens=before.input_tokens + mine.input_tokens,
            output_tokens=before.output_tokens + mine.output_tokens,
            cost_usd=before.cost_usd + mine.cost_usd,
            latency_s=before.latency_s + mine.latency_s,
        )

    def over_budget(self) -> str | None:
        spent = self.spent()
        if self.ctx.budget_tokens is not None and spent.total_tokens >= self.ctx.budget_tokens:
            return f"token budget spent: {spent.total_tokens} of {self.ctx.budget_tokens} tokens"
        if self.ctx.budget_usd is not None and spent.cost_usd >= self.ctx.budget_usd:
            return f"dollar budget spent: ${spent.cost_usd:.4f} of ${self.ctx.budget_usd:.4f}"
        return None

    def check_budget(self) -> None:
        """Pause the run (interrupt) when the budget is spent; resuming with a larger budget continues."""
        from langgraph.types import interrupt

        # A resume answers one interrupt; if the resumed run's context still has no room, pause again.
        while (reason := self.over_budget()) is not None:
            interrupt({"reason": "budget", "message": reason, "role": self.role})

    # -- calls --------------------------------------------------------------------------------------
    def _model(self) -> BaseChatModel:
        return resolve_model(self.model_name, self.ctx)

    def _record(self, call: str, tin: int, tout: int, latency: float, attempts: int, ok: bool) -> None:
        self.records.append(
            UsageRecord(
                role=self.role,
                model=self.model_name,
                call=call,
                input_tokens=tin,
                output_tokens=tout,
                latency_s=round(latency, 4),
                cost_usd=cost_of(self.model_name, tin, tout),
                attempts=attempts,
                ok=ok,
            )
        )

    def _invoke(self, build: Callable[[BaseChatModel], Any], messages: list[BaseMessage]) -> Any:
        """One request. The embedded server is shared between processes and stops with the process that
        started it, so a refused connection to it gets one fresh server and one retry."""
        for retry in (False, True):
            try:
                return build(self._model()).invoke(messages, config={"metadata": {"sopgraph_role": self.role}})
            except Exception as exc:
                if isinstance(exc, GraphBubbleUp):
                    raise
                if not retry and provider_of(self.model_name) == "local":
                    if _is_connection_error(exc):
                        forget_model(self.model_name)
                        continue
                    if _is_closed_client(exc):  # already dropped from the cache: resolve afresh, retry
                        continue
                raise ModelError(f"{self.model_name} ({self.role}): {_one_line(exc)}") from exc
        raise AssertionError("unreachable")

    def text(self, prompt: str | Sequence[BaseMessage], *, system: str | None = None) -> str:
        self.check_budget()
        messages = as_messages(prompt, system)
        start = time.perf_counter()
        reply = self._invoke(lambda model: model, messages)
        tin, tout = _usage_of(reply)
        self._record("text", tin, tout, time.perf_counter() - start, 1, True)
        return str(reply.content)

    def structured(self, schema: type[T], prompt: str | Sequence[BaseMessage], *, system: str | None = None) -> T:
        """A validated `schema` instance; invalid replies go back with the error, then StructuredOutputError."""
        self.check_budget()
        messages = as_messages(prompt, system)
        method = structured_method(self.model_name)

        def build(model: BaseChatModel) -> Any:
            return model.with_structured_output(schema, method=method, include_raw=True)

        tin = tout = 0
        start = time.perf_counter()
        error = ""
        attempts = 0
        for attempts in range(1, self.ctx.max_reasks + 2):
            result = self._invoke(build, messages)
            raw = result.get("raw")
            i, o = _usage_of(raw)
            tin, tout = tin + i, tout + o
            parsed = result.get("parsed")
            problem = result.get("parsing_error")
            if parsed is not None and problem is None:
                try:
                    value = parsed if isinstance(parsed, schema) else schema.model_validate(parsed)
                except ValidationError as exc:
                    problem = exc
                else:
                    self._record(schema.__name__, tin, tout, time.perf_counter() - start, attempts, True)
                    return value
            error = _one_line(problem) if problem else "the reply held no object"
            messages = [
                *messages,
                AIMessage(content=_raw_reply_text(raw)[:4000]),
                HumanMessage(
                    f"That reply is not a valid {schema.__name__}: {error}\n"
                    f"Answer again with one complete, valid {schema.__name__} object and nothing else."
                ),
            ]
        self._record(schema.__name__, tin, tout, time.perf_counter() - start, attempts, False)
        raise StructuredOutputError(
            f"{self.model_name} ({self.role}) gave no valid {schema.__name__} after {attempts} attempts: {error}"
        )

    def usage_update(self) -> dict[str, list[UsageRecord]]:
        """The node's contribution to the ledger; merge it into the node's return value."""
        return {"usage": list(self.records)}
