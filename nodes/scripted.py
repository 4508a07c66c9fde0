"""The scripted chat model: deterministic, offline, and honest about not being intelligent.

Tests and dry runs use it in place of a real model. Without a script it answers text prompts with a fixed
marker sentence and structured requests with schema-valid data generated from the pydantic schema
(seeded by the prompt, so the same request always gets the same answer, whatever order parallel nodes run
in). A script overrides either. It can inject latency and faults and reports token usage like a provider.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from polyfactory.factories.pydantic_factory import ModelFactory
from pydantic import BaseModel, ConfigDict, PrivateAttr


class ScriptedFault(RuntimeError):
    """An error the scripted model was told to raise (stands in for a provider failure)."""


@dataclass
class ScriptedRequest:
    """What a script sees of one call."""

    messages: list[BaseMessage]
    call_index: int
    schema: type[BaseModel] | None = None
    tool_name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """The request's run metadata (the gateway tags who asks and where: `sopgraph_role`, ...), never the prompt."""

    @property
    def prompt(self) -> str:
        return "\n".join(str(m.content) for m in self.messages)

    @property
    def system(self) -> str:
        return "\n".join(str(m.content) for m in self.messages if m.type == "system")

    @property
    def last(self) -> str:
        return str(self.messages[-1].content) if self.messages else ""


Script = Callable[[ScriptedRequest], Any]
"""Returns a str (text reply), a dict or BaseModel (structured reply), or None for the default."""


def count_tokens(text: str) -> int:
    """A provider-like token estimate: about four characters a token."""
    return max(1, (len(text) + 3) // 4) if text else 0


def _digest(*parts: Any) -> int:
    raw = json.dumps(parts, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")


def fake_instance(schema: type[BaseModel], seed: int) -> BaseModel:
    """Schema-valid data for `schema`, the same for the same seed."""
    factory = ModelFactory.create_factory(schema, __check_model__=False)
    factory.__random__ = random.Random(seed)
    factory.__faker__.seed_instance(seed)
    return factory.build()


class ScriptedChatModel(BaseChatModel):
    """Deterministic chat model with with_structured_output / bind_tools support."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    script: Script | None = None
    seed: int = 0
    latency_s: float = 0.0
    fail_calls: frozenset[int] = frozenset()
    """0-based call indices that raise ScriptedFault."""
    invalid_calls: frozenset[int] = frozenset()
    """0-based call indices whose structured reply is deliberately invalid (an empty object)."""
    name_: str = "scripted"

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _calls: int = PrivateAttr(default=0)
    _requests: list[ScriptedRequest] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def requests(self) -> list[ScriptedRequest]:
        """Every request seen so far, for tests that assert what a node sent."""
        return list(self._requests)

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        schemas = [t for t in tools if isinstance(t, type) and issubclass(t, BaseModel)]
        fmt = kwargs.get("ls_structured_output_format") or {}
        if isinstance(fmt.get("schema"), type) and issubclass(fmt["schema"], BaseModel):
            schemas = [fmt["schema"]]
        names = [convert_to_openai_tool(t)["function"]["name"] for t in tools]
        return self.bind(
            scripted_tools=names,
            scripted_schemas=schemas,
            scripted_tool_choice=tool_choice,
            **{k: v for k, v in kwargs.items() if k != "ls_structured_output_format"},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._lock:
            index = self._calls
            self._calls += 1
        tool_names: list[str] = kwargs.get("scripted_tools") or []
        schemas: list[type[BaseModel]] = kwargs.get("scripted_schemas") or []
        forced = bool(tool_names) and kwargs.get("scripted_tool_choice") not in (None, "auto", "none")
        schema = schemas[0] if forced and schemas else None
        request = ScriptedRequest(
            messages=list(messages),
            call_index=index,
            schema=schema,
            tool_name=tool_names[0] if forced else None,
            metadata={**(run_manager.metadata if run_manager else {}), **(kwargs.get("scripted_metadata") or {})},
        )
        with self._lock:
            self._requests.append(request)
        if self.latency_s:
            time.sleep(self.latency_s)
        if index in self.fail_calls:
            raise ScriptedFault(f"scripted fault injected on call {index}")

        scripted = self.script(request) if self.script else None
        prompt = request.prompt
        seed = _digest(self.seed, prompt, request.tool_name)
        if forced:
            if index in self.invalid_calls:
                args: dict[str, Any] = {}
            elif isinstance(scripted, BaseModel):
                args = scripted.model_dump(mode="json")
            elif isinstance(scripted, dict):
                args = scripted
            elif schema is not None:
                args = fake_instance(schema, seed).model_dump(mode="json")
            else:
                raise ScriptedFault(f"no script and no pydantic schema for tool {request.tool_name!r}")
            reply = AIMessage(
                content="",
                tool_calls=[{"name": tool_names[0], "args": args, "id": f"call_{uuid.UUID(int=seed)}"}],
            )
            out_text = json.dumps(args)
        else:
            if isinstance(scripted, str):
                text = scripted
            elif scripted is not None:
                text = json.dumps(scripted.model_dump(mode="json") if isinstance(scripted, BaseModel) else scripted)
            else:
                text = f"[scripted reply {seed % 10_000:04d}] I am a scripted model; I only acknowledge: " + (
                    " ".join(request.last.split()[:12])
                )
            reply = AIMessage(content=text)
            out_text = text
        usage = {
            "input_tokens": count_tokens(prompt),
            "output_tokens": count_tokens(out_text),
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        reply.usage_metadata = usage  # type: ignore[assignment]
        reply.response_metadata = {"model_name": self.name_, "token_usage": usage}
        return ChatResult(generations=[ChatGeneration(message=reply)], llm_output={"token_usage": usage})
