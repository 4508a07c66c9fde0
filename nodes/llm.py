"""The one way a node talks to a model.

`ModelGateway.for_node(state, runtime, role)` picks the role's model from the run's context, asks for text
or for a validated pydantic object, re-asks with the validation error a bounded number of times, records
every call in the usage ledger and stops the run resumably (a LangGraph interrupt) when the budget is
spent. Model names:

- `local`, `local:0.5b`, `local:1.5b`: the embedded llama.cpp server (tools/local_model/), started on demand;
  `local` is the registry's default model ($SOPGRAPH_LOCAL_MODEL overrides it);
- `openai:<model>`: OpenAI, or any compatible server through OPENAI_BASE_URL;
- `<provider>:<model>` for any other provider LangChain's `init_chat_model` knows (`ollama:llama3.2`,
  `anthropic:claude-sonnet-4-5`, ...), with its integration package installed;
- a chat model object (any BaseChatModel), per run or per role, used as given;
- `scripted`: the deterministic test model (nodes/scripted.py);
- any name given to `register_model` (tests register scripted models with scripts this way).
One provider table (`PROVIDERS`, `provider_for`) decides how a name is built and what the gateway needs to
know about it (structured-output method, pricing, whether its server may be restarted).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.errors import GraphBubbleUp
from pydantic import BaseModel, ValidationError

from sopgraph.nodes.progress import reporter
from sopgraph.state.context import INSTANCE_PREFIX, Context, ModelSpec, model_name
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
    """The model kept replying with output that does not fit the schema.

    `usage` holds the ledger records of the failing node's gateway, the failed requests included: the node
    raises, so LangGraph keeps none of its writes, and whoever reports the stopped run adds these.
    """

    def __init__(self, message: str, usage: Sequence[UsageRecord] = ()) -> None:
        super().__init__(message)
        self.usage = list(usage)


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


# -- the provider table ---------------------------------------------------------------------------------
# A run's settings and the field names LangChain's chat model classes give them; a class takes the first
# one it has, and a setting it has none of is left to the provider's default.
_SETTING_FIELDS: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "max_output_tokens": ("max_tokens", "max_completion_tokens", "num_predict", "max_output_tokens", "max_new_tokens"),
    "request_timeout_s": ("timeout", "request_timeout", "default_request_timeout"),
    "seed": ("seed", "random_seed"),
}


@dataclass(frozen=True)
class Provider:
    """How one kind of model name becomes a chat model, and what the gateway needs to know about it."""

    name: str
    build: Callable[[str, Context], BaseChatModel]
    structured_method: Callable[[], str | None]
    """The with_structured_output method that works for it; None lets the model class choose."""
    priced: bool = False
    """Whether PRICES_PER_MTOK applies (OpenAI itself, not a compatible server)."""
    shared_server: bool = False
    """A server this process may have to restart: a refused connection gets one fresh server and a retry."""


def _scripted(name: str, ctx: Context) -> BaseChatModel:
    if name in _registry:
        return _registry[name]()
    from sopgraph.nodes.scripted import ScriptedChatModel

    return ScriptedChatModel(seed=ctx.seed)


def _local(name: str, ctx: Context) -> BaseChatModel:
    from sopgraph.tools import local_model

    spec_name = name.split(":", 1)[1] if ":" in name else None
    try:
        server = local_model.ensure_server(spec_name)
    except local_model.LocalModelError as exc:
        raise ModelError(f"local model: {exc}") from exc
    return _openai_model(server.alias, server.base_url, ctx, api_key="sk-local-no-key", loopback=True)


def _openai(name: str, ctx: Context) -> BaseChatModel:
    base_url = os.environ.get("OPENAI_BASE_URL") or None
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key and not base_url:
        raise ModelError(f"{name}: OPENAI_API_KEY is not set (or set OPENAI_BASE_URL for a compatible server)")
    return _openai_model(name.split(":", 1)[1], base_url, ctx, api_key=api_key or "sk-no-key")


def _field_names(cls: type) -> set[str]:
    fields = getattr(cls, "model_fields", {})
    return set(fields) | {f.alias for f in fields.values() if getattr(f, "alias", None)}


def _langchain(name: str, ctx: Context) -> BaseChatModel:
    """Any provider LangChain's `init_chat_model` knows (`ollama:`, `anthropic:`, ...), with the run's
    temperature, output cap, timeout and seed under whatever names its class gives them."""
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:  # pragma: no cover - langchain is a base dependency
        raise ModelError(f"{name}: provider strings need the langchain package ({exc})") from exc
    try:
        plain = init_chat_model(name)
        accepted = _field_names(type(plain))
        settings: dict[str, Any] = {}
        for setting, candidates in _SETTING_FIELDS.items():
            field_name = next((c for c in candidates if c in accepted), None)
            if field_name is not None:
                settings[field_name] = getattr(ctx, setting)
        return init_chat_model(name, **settings) if settings else plain
    except ImportError as exc:
        raise ModelError(f"{name}: {_one_line(exc).removeprefix('ImportError: ')}") from exc
    except Exception as exc:
        raise ModelError(f"{name}: {_one_line(exc)}") from exc


def _openai_structured_method() -> str:
    # OpenAI itself supports strict json_schema; an unknown compatible server gets forced function calling,
    # which nearly all of them implement.
    return "function_calling" if os.environ.get("OPENAI_BASE_URL") else "json_schema"


PROVIDERS: dict[str, Provider] = {
    "scripted": Provider("scripted", _scripted, lambda: "function_calling"),
    # llama.cpp's server turns a json_schema response format into a grammar: replies fit it by construction.
    "local": Provider("local", _local, lambda: "json_schema", shared_server=True),
    "openai": Provider("openai", _openai, _openai_structured_method, priced=True),
    "langchain": Provider("langchain", _langchain, lambda: None),
}


def _langchain_providers() -> frozenset[str]:
    try:
        from langchain.chat_models import base
    except ImportError:  # pragma: no cover - langchain is a base dependency
        return frozenset()
    return frozenset(getattr(base, "_BUILTIN_PROVIDERS", ()))


def provider_for(model: ModelSpec) -> Provider:
    """The provider table's entry for a model name; a one-line ModelError for a name nobody knows."""
    if isinstance(model, BaseChatModel):
        return INSTANCE
    name = model
    if name in _registry or name == "scripted" or name.startswith("scripted:"):
        return PROVIDERS["scripted"]
    if name == "local" or name.startswith("local:"):
        return PROVIDERS["local"]
    if name.startswith("openai:"):
        return PROVIDERS["openai"]
    if name.startswith(INSTANCE_PREFIX):
        raise ModelError(
            f"{name}: the run was started with a chat model object, which cannot be stored; "
            "continue it from Python with Context(model=<the model>)"
        )
    prefix, sep, rest = name.partition(":")
    known = _langchain_providers()
    if sep and rest and (not known or prefix.replace("-", "_").lower() in known):
        return PROVIDERS["langchain"]
    raise ModelError(
        f"unknown model name {name!r}: use 'local', 'local:0.5b', 'local:1.5b', 'openai:<model>', 'scripted', "
        "or '<provider>:<model>' for a LangChain provider (ollama, anthropic, google_genai, ...)"
    )


INSTANCE = Provider("instance", lambda name, ctx: _unreachable(name), lambda: None)
"""A chat model object: used as given (its own temperature and limits), never cached or rebuilt."""


def _unreachable(name: str) -> BaseChatModel:
    raise AssertionError(f"{name}: a chat model object is not built from a name")


def provider_of(model: ModelSpec) -> str:
    return provider_for(model).name


def structured_method(model: ModelSpec) -> str | None:
    """The structured-output method that works for the model's provider."""
    return provider_for(model).structured_method()


def schema_format(schema: type[BaseModel]) -> dict[str, Any]:
    """The json_schema response format for a pydantic schema, as llama.cpp's server takes it."""
    doc = (schema.__doc__ or "").strip()
    return {"name": schema.__name__, "description": doc, "schema": schema.model_json_schema()}


REASK_TEMPERATURE = 0.7
"""Re-asks sample at least this hot: at a low temperature a small model sends the same invalid reply again."""


def reask_model(model: BaseChatModel, attempt: int) -> BaseChatModel:
    """The model for re-ask number `attempt` (2, 3, ...): hotter and with another seed where the chat model
    has those settings, so a re-ask is not the first request over again."""
    fields = type(model).model_fields
    if "temperature" not in fields:  # not a sampler (the scripted model): nothing to make hotter
        return model
    update: dict[str, Any] = {"temperature": max(REASK_TEMPERATURE, getattr(model, "temperature", None) or 0.0)}
    seed = getattr(model, "seed", None)
    if "seed" in fields and isinstance(seed, int):
        update["seed"] = seed + attempt - 1
    return model.model_copy(update=update)


def explain_invalid(schema: type[BaseModel], data: Any, exc: ValidationError) -> str:
    """A validation error in words a model can act on. A required field that the reply did fill but that
    validation dropped (its value only repeated the field's description) is named as such, since
    "Field required" would tell the model to add what it believes it already sent."""
    sent = data if isinstance(data, dict) else {}
    notes = []
    for err in exc.errors():
        field = err["loc"][0] if err.get("loc") else None
        if err.get("type") == "missing" and isinstance(field, str) and sent.get(field):
            info = schema.model_fields.get(field)
            what = info.description if info is not None and info.description else field
            notes.append(
                f"{field} only repeated its description ({what!r}) instead of giving one; "
                f"write the actual {field.replace('_', ' ')} for this task"
            )
    return "; ".join(notes) if notes else _one_line(exc)


def schema_instruction(schema: type[BaseModel]) -> str:
    """The schema told to the model in words, one line a field: its JSON key, what the grammar cannot say (a
    list, a number, optional) and its description, which is what the prompt alone can carry (what goes where).
    The embedded server's grammar, made from the json_schema response format, enforces the rest (keys, types,
    enums, bounds), so the schema itself is not repeated: sent as JSON it was a third of a group chat's uncached
    prompt tokens (benchmarks/groupchat_prompt_cache.py). A choice the description does not spell out is listed."""
    js = schema.model_json_schema()
    lines = [f"Answer with one {schema.__name__} JSON object:"]
    _field_lines(js, js.get("$defs", {}), "", lines)
    return "\n".join(lines)


def _resolve(node: dict[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """A property's schema with its $ref followed and an Optional's null branch dropped; its own keys win."""
    options = [o for o in node.get("anyOf", ()) if o.get("type") != "null"]
    if len(options) == 1:
        node = {**options[0], **{k: v for k, v in node.items() if k != "anyOf"}}
    ref = node.get("$ref")
    if isinstance(ref, str):
        node = {**defs.get(ref.rsplit("/", 1)[-1], {}), **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _field_lines(obj: dict[str, Any], defs: Mapping[str, Any], indent: str, lines: list[str]) -> None:
    required = set(obj.get("required", ()))
    for name, raw in obj.get("properties", {}).items():
        node = _resolve(raw, defs)
        description = str(node.get("description") or "").strip()
        notes = [] if name in required else ["optional"]
        item = _resolve(node["items"], defs) if node.get("type") == "array" and "items" in node else None
        kind = _kind(item if item is not None else node, description)
        if item is not None:
            what = "objects" if item.get("properties") else "" if kind else "strings"
            notes.append(f"a list of {what}" if what else f"a list, each {kind}")
        elif kind:
            notes.append(kind)
        head = f'{indent}"{name}"' + (f" ({', '.join(notes)})" if notes else "")
        lines.append(f"{head}: {description}" if description else head)
        nested = item if item is not None else node
        if nested.get("properties"):
            _field_lines(nested, defs, indent + "  ", lines)


def _kind(node: dict[str, Any], description: str) -> str:
    """What a value is, in words, leaving out what the description already says."""
    choices = node.get("enum") or ([node["const"]] if "const" in node else [])
    if choices:
        if all(str(c) in description for c in choices):
            return ""
        return "one of " + ", ".join(json.dumps(c) for c in choices)
    kind = {"integer": "integer", "number": "number", "boolean": "true or false"}.get(str(node.get("type")), "")
    low, high = node.get("minimum"), node.get("maximum")
    if kind and low is not None and high is not None and f"{low}-{high}" not in description:
        kind += f" {low}-{high}"
    return kind


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
        extra["http_client"] = _abandonable_client(ctx, loopback)
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


def _abandonable_client(ctx: Context, loopback: bool) -> Any:
    """The HTTP client for an OpenAI-compatible server: a request that Ctrl-C abandons mid-reply gets its
    connection shut down (tools/cancel.py), which is how llama.cpp's server learns to stop generating. So
    no connection is kept alive: each request opens its own (on loopback that costs well under a millisecond)
    and the hook learns its socket. The embedded server's traffic never goes through an HTTP(S)_PROXY from
    the environment."""
    import httpx

    from sopgraph.tools.cancel import track_http_request

    return httpx.Client(
        trust_env=not loopback,
        timeout=ctx.request_timeout_s,
        limits=httpx.Limits(max_keepalive_connections=0),
        follow_redirects=True,
        event_hooks={"request": [track_http_request]},
    )


def resolve_model(model: ModelSpec, ctx: Context | None = None) -> BaseChatModel:
    """A chat model for a model name (built once per name and settings) or the chat model object itself;
    a clear one-line ModelError on a bad name or missing setting."""
    if isinstance(model, BaseChatModel):
        return model
    name = model
    ctx = ctx or Context(model=name)
    key = (name, ctx.temperature, ctx.request_timeout_s, ctx.max_output_tokens, ctx.seed)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    built = provider_for(name).build(name, ctx)
    with _cache_lock:
        _cache[key] = built
    return built


def preflight(ctx: Context) -> None:
    """Resolve every model a run's context names before the run starts, so a bad setting fails at once
    (and the embedded server is up before the first node waits on it)."""
    specs = [ctx.model, *ctx.models.values()]
    for spec in sorted({s for s in specs if isinstance(s, str)}):
        resolve_model(spec, ctx)


def cost_of(model: ModelSpec, input_tokens: int, output_tokens: int) -> float:
    if not isinstance(model, str) or not provider_for(model).priced or os.environ.get("OPENAI_BASE_URL"):
        return 0.0
    price = PRICES_PER_MTOK.get(model.split(":", 1)[1])
    if price is None:
        return 0.0
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000


def _usage_of(message: Any) -> tuple[int, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage.get("input_tokens", 0) or 0), int(usage.get("output_tokens", 0) or 0)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _cut_off(exc: ModelError) -> tuple[int, int] | None:
    """(input, output) tokens of a structured reply that stopped at the output cap (the OpenAI client's
    LengthFinishReasonError: the JSON is unfinished, so the parse fails before our validation sees it);
    None for any other failure."""
    cause = exc.__cause__
    if type(cause).__name__ != "LengthFinishReasonError":
        return None
    usage = getattr(getattr(cause, "completion", None), "usage", None)
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)


def _raw_reply_text(raw: Any) -> str:
    if isinstance(raw, AIMessage) and raw.tool_calls:
        return json.dumps(raw.tool_calls[0].get("args", {}))
    return str(getattr(raw, "content", raw) or "")


def as_messages(prompt: str | Sequence[BaseMessage], system: str | None = None) -> list[BaseMessage]:
    msgs: list[BaseMessage] = [HumanMessage(prompt)] if isinstance(prompt, str) else list(prompt)
    if system:
        msgs.insert(0, SystemMessage(system))
    return msgs


def local_messages(
    schema: type[BaseModel],
    prompt: str | Sequence[BaseMessage],
    system: str | None = None,
    schema_last: bool = False,
) -> list[BaseMessage]:
    """A structured request to the embedded server: its grammar constrains the syntax, the schema in words says
    what goes where. The server's prompt cache reuses a request's common prefix with one it processed before,
    so the schema goes with the system prompt when a caller keeps one schema per system prompt (a company
    role), and after the prompt when it switches schemas under one (a group-chat character thinks, then
    speaks). benchmarks/groupchat_prompt_cache.py replays requests composed here."""
    instruction = schema_instruction(schema)
    if not schema_last:
        return as_messages(prompt, f"{system}\n\n{instruction}" if system else instruction)
    messages = as_messages(prompt, system)
    last = messages[-1]
    if not isinstance(last, HumanMessage):
        return [*messages, HumanMessage(instruction)]
    return [*messages[:-1], HumanMessage(f"{last.content}\n\n{instruction}")]


def _json_prompted(model: BaseChatModel, schema: type[BaseModel]) -> Any:
    """Structured output for a model without tool calling or a JSON mode LangChain knows: the schema goes
    into the request, the reply's first JSON object is validated (and re-asked by the caller on failure)."""
    from langchain_core.runnables import RunnableLambda

    instruction = SystemMessage(
        f"Reply with one JSON object, and nothing else, that validates against this JSON schema:\n"
        f"{json.dumps(schema.model_json_schema())}"
    )

    def ask(messages: list[BaseMessage]) -> dict[str, Any]:
        raw = model.invoke([*messages, instruction])
        text = str(raw.content)
        start, end = text.find("{"), text.rfind("}")
        try:
            parsed = schema.model_validate_json(text[start : end + 1] if 0 <= start < end else text)
        except ValidationError as exc:
            return {"raw": raw, "parsed": None, "parsing_error": exc}
        return {"raw": raw, "parsed": parsed, "parsing_error": None}

    return RunnableLambda(ask)


ROLE_KEY = "sopgraph_role"
"""The run-metadata key of every model request naming the role (or character) that asks."""


class ModelGateway:
    """Model access for one node execution, with its share of the usage ledger."""

    def __init__(self, ctx: Context, role: str, spent: UsageTotals | None = None, *, schema_last: bool = False) -> None:
        self.ctx = ctx
        self.role = role
        self.schema_last = schema_last
        """Where the embedded server's structured requests carry the schema (`local_messages`)."""
        self.model: ModelSpec = ctx.model_for(role)
        self.model_name = model_name(self.model)
        self.provider = provider_for(self.model)  # fails fast on a bad name
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

    def estimate(self, messages: Sequence[BaseMessage]) -> int:
        """Tokens the next call will likely use: its prompt (about 4 characters a token) and a reply as long
        as this run's replies have been on average."""
        spent = self.spent()
        prompt = sum(len(str(m.content)) for m in messages) // 4
        return prompt + (spent.output_tokens // spent.calls if spent.calls else 0)

    def over_budget(self, upcoming: int = 0) -> str | None:
        """Why the next call may not be made (`upcoming`: its estimated tokens), or None."""
        spent = self.spent()
        if self.ctx.budget_tokens is not None and spent.total_tokens + upcoming >= self.ctx.budget_tokens:
            if spent.total_tokens >= self.ctx.budget_tokens or not upcoming:
                return f"token budget spent: {spent.total_tokens} of {self.ctx.budget_tokens} tokens"
            return (
                f"token budget spent: {spent.total_tokens} of {self.ctx.budget_tokens} tokens used, "
                f"and the next call needs about {upcoming}"
            )
        if self.ctx.budget_usd is not None and spent.cost_usd >= self.ctx.budget_usd:
            return f"dollar budget spent: ${spent.cost_usd:.4f} of ${self.ctx.budget_usd:.4f}"
        return None

    def check_budget(self, messages: Sequence[BaseMessage] = ()) -> None:
        """Pause the run (interrupt) when the budget is spent, or would be by the call about to be made with
        `messages`; resuming with a larger budget continues."""
        from langgraph.types import interrupt

        upcoming = self.estimate(messages) if messages else 0
        # A resume answers one interrupt; if the resumed run's context still has no room, pause again.
        while (reason := self.over_budget(upcoming)) is not None:
            interrupt({"reason": "budget", "message": reason, "role": self.role})

    # -- calls --------------------------------------------------------------------------------------
    def progress(self, schema: str | None = None) -> None:
        """A `model` stream event naming the node a call waits in (nodes/progress.py)."""
        message = f"{self.role} waits for {self.model_name}" + (f" ({schema})" if schema else "")
        reporter(self.role)("model", message, role=self.role, model=self.model_name, schema=schema)

    def _model(self) -> BaseChatModel:
        return resolve_model(self.model, self.ctx)

    def _record(self, call: str, tin: int, tout: int, latency: float, attempts: int, ok: bool) -> None:
        self.records.append(
            UsageRecord(
                role=self.role,
                model=self.model_name,
                call=call,
                input_tokens=tin,
                output_tokens=tout,
                latency_s=round(latency, 4),
                cost_usd=cost_of(self.model, tin, tout),
                attempts=attempts,
                ok=ok,
            )
        )

    def _invoke(
        self,
        build: Callable[[BaseChatModel], Any],
        messages: list[BaseMessage],
        metadata: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request. The embedded server is shared between processes and stops with the process that
        started it, so a refused connection to it gets one fresh server and one retry. `metadata` goes with the
        request to callbacks and traces (and to the scripted model's scripts), never into the prompt."""
        config = {"metadata": {ROLE_KEY: self.role, **(metadata or {})}}
        for retry in (False, True):
            try:
                return build(self._model()).invoke(messages, config=config)
            except Exception as exc:
                if isinstance(exc, GraphBubbleUp):
                    raise
                if not retry and self.provider.shared_server:
                    if _is_connection_error(exc):
                        forget_model(self.model_name)
                        continue
                    if _is_closed_client(exc):  # already dropped from the cache: resolve afresh, retry
                        continue
                raise ModelError(f"{self.model_name} ({self.role}): {_one_line(exc)}") from exc
        raise AssertionError("unreachable")

    def text(self, prompt: str | Sequence[BaseMessage], *, system: str | None = None) -> str:
        messages = as_messages(prompt, system)
        self.check_budget(messages)
        self.progress()
        start = time.perf_counter()
        reply = self._invoke(lambda model: model, messages)
        tin, tout = _usage_of(reply)
        self._record("text", tin, tout, time.perf_counter() - start, 1, True)
        return str(reply.content)

    def structured(
        self,
        schema: type[T],
        prompt: str | Sequence[BaseMessage],
        *,
        system: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        attempt: int = 1,
    ) -> T:
        """A validated `schema` instance; invalid replies go back with the error, then StructuredOutputError.
        `metadata` tags the request for callbacks and traces (who asks, where in the run). `attempt`: a caller
        that re-asks for reasons of its own (a defective line, a score out of bounds) passes 2, 3, ... and gets
        the hotter, reseeded model of the gateway's own re-asks (`reask_model`)."""
        method = self.provider.structured_method()
        local = self.provider.name == "local"
        if local:
            messages = local_messages(schema, prompt, system, self.schema_last)
        else:
            messages = as_messages(prompt, system)
        self.check_budget(messages)
        target: Any = schema_format(schema) if local else schema
        self.progress(schema.__name__)

        def build(model: BaseChatModel) -> Any:
            try:
                if method is None:
                    return model.with_structured_output(target, include_raw=True)
                return model.with_structured_output(target, method=method, include_raw=True)
            except NotImplementedError:  # no tool calling: ask for JSON in the prompt and validate it here
                return _json_prompted(model, schema)

        tin = tout = 0
        start = time.perf_counter()
        error = ""
        attempts = 0
        for attempts in range(1, self.ctx.max_reasks + 2):
            n = attempt + attempts - 1
            step = build if n == 1 else (lambda model, n=n: build(reask_model(model, n)))
            try:
                result = self._invoke(step, messages, metadata)
            except ModelError as exc:
                cut = _cut_off(exc)
                if cut is None:
                    raise
                tin, tout = tin + cut[0], tout + cut[1]
                error = f"the reply was cut off at the output limit ({cut[1]} tokens) before the object was complete"
                messages = [
                    *messages,
                    HumanMessage(f"{error}. Answer again with one valid {schema.__name__} object, much shorter."),
                ]
                continue
            raw = result.get("raw")
            i, o = _usage_of(raw)
            tin, tout = tin + i, tout + o
            parsed = result.get("parsed")
            problem = result.get("parsing_error")
            if parsed is not None and problem is None:
                try:
                    value = parsed if isinstance(parsed, schema) else schema.model_validate(parsed)
                except ValidationError as exc:
                    problem = ValueError(explain_invalid(schema, parsed, exc))
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
            f"{self.model_name} ({self.role}) gave no valid {schema.__name__} after {attempts} attempts: {error}",
            usage=self.records,
        )

    def usage_update(self) -> dict[str, list[UsageRecord]]:
        """The node's contribution to the ledger; merge it into the node's return value."""
        return {"usage": list(self.records)}
