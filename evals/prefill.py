"""The Qwen2.5-Coder team's prompting protocol, for harness fidelity (`--prompt-style qwen`).

Their instruct evaluation (qwencoder-eval/instruct/eval_plus in the Qwen2.5-Coder repository, read to learn
the protocol; nothing is taken from it but the facts below) formats the chat by hand in ChatML, with their
own system line and a short user request holding the problem in a fence, and pre-fills the assistant turn
with the opening of a ```python fence, so the model's first token is code. Decoding is greedy with stop
strings that end the code block or the definitions (the closing fence, a main guard, a top-level print or
comment); the code is then sanitized (evalplus) and scored on the base tests.

A chat API cannot pre-fill the assistant turn, so this sampler renders the ChatML text itself and sends it
to the raw completions endpoint of an OpenAI-compatible server (the embedded llama.cpp server, or
OPENAI_BASE_URL). A scripted model gets the rendered text as its one message, for tests. The reply handed
back is the pre-filled fence plus the completion, closed, so the usual extraction and sanitizing apply.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import httpx
from langchain_core.messages import BaseMessage, HumanMessage

from sopgraph.nodes.llm import ModelError, provider_of, resolve_model
from sopgraph.nodes.repair import Proposal
from sopgraph.state.context import Context
from sopgraph.state.usage import UsageRecord

__all__ = ["PREFILL", "STOP", "SYSTEM", "PrefillSampler", "chatml", "cut_at_stop", "user_prompt"]

SYSTEM = "You are an intelligent programming assistant to produce Python algorithmic solutions"
PREFILL = "```python\n"
STOP = ("<|im_end|>", "<|endoftext|>", "\n```", "\nif __name__", "\ndef main(", "\nprint(", "\n#")
"""Where their decoder stops: end of turn, end of the code block, or the start of example code."""

_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def user_prompt(code: str) -> str:
    """Their user turn: a one-line request and the problem (a stub, or MBPP's docstring) in a fence."""
    return f"Can you complete the following Python function?\n```python\n{code.strip()}\n```\n"


def chatml(messages: Sequence[BaseMessage], prefill: str = PREFILL) -> str:
    """The conversation in Qwen's ChatML, ending in an open assistant turn that starts with `prefill`."""
    turns = [f"<|im_start|>{_ROLES.get(m.type, 'user')}\n{m.content}<|im_end|>\n" for m in messages]
    return "".join(turns) + "<|im_start|>assistant\n" + prefill


def cut_at_stop(text: str, stops: Sequence[str] = STOP) -> str:
    """The text up to the first stop string (servers stop there too; a scripted model does not)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


class PrefillSampler:
    """Samples through the raw completions endpoint with a pre-filled assistant turn; usage joins `records`."""

    def __init__(self, model: str, max_tokens: int, role: str, records: list[UsageRecord]) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.role = role
        self.records = records
        self.provider = provider_of(model)
        if self.provider not in ("local", "scripted", "openai") or (
            self.provider == "openai" and not os.environ.get("OPENAI_BASE_URL")
        ):
            raise ModelError(f"{model}: the qwen prompt style needs a raw completions endpoint (set OPENAI_BASE_URL)")
        self._lock = threading.Lock()

    def __call__(self, proposal: Proposal) -> str:
        prompt = chatml(proposal.messages)
        start = time.perf_counter()
        if self.provider == "scripted":
            ctx = Context(model=self.model, temperature=proposal.temperature, seed=proposal.seed)
            reply = resolve_model(self.model, ctx).invoke([HumanMessage(prompt)])
            usage = getattr(reply, "usage_metadata", None) or {}
            text, tin, tout = str(reply.content), usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        else:
            text, tin, tout = self._post(prompt, proposal)
        with self._lock:
            self.records.append(
                UsageRecord(
                    role=self.role,
                    model=self.model,
                    call="completion",
                    input_tokens=int(tin),
                    output_tokens=int(tout),
                    latency_s=round(time.perf_counter() - start, 4),
                )
            )
        return PREFILL + cut_at_stop(text).rstrip() + "\n```\n"

    def _endpoint(self) -> tuple[str, str]:
        if self.provider == "local":
            from sopgraph.tools import local_model

            spec = self.model.split(":", 1)[1] if ":" in self.model else None
            server = local_model.ensure_server(spec) if spec else local_model.ensure_server()
            return server.base_url, server.alias
        return os.environ["OPENAI_BASE_URL"].rstrip("/"), self.model.split(":", 1)[1]

    def _post(self, prompt: str, proposal: Proposal) -> tuple[str, int, int]:
        body = {
            "prompt": prompt,
            "max_tokens": self.max_tokens,
            "temperature": proposal.temperature,
            "seed": proposal.seed,
            "stop": list(STOP),
        }
        headers = {"Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', 'sk-local-no-key')}"}
        for retry in (False, True):
            base_url, alias = self._endpoint()
            try:
                with httpx.Client(trust_env=self.provider != "local", timeout=900.0) as client:
                    response = client.post(f"{base_url}/completions", json={**body, "model": alias}, headers=headers)
                    response.raise_for_status()
                    data = response.json()
                break
            except httpx.ConnectError as exc:  # the shared server was restarted by another process: once more
                if retry or self.provider != "local":
                    raise ModelError(f"{self.model} (completions): {exc}") from exc
            except (httpx.HTTPError, ValueError) as exc:
                raise ModelError(f"{self.model} (completions): {type(exc).__name__}: {exc}") from exc
        choice = (data.get("choices") or [{}])[0]
        usage = data.get("usage") or {}
        return str(choice.get("text") or ""), int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
