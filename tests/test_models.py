"""Bring your own model: chat model objects per run and per role, and LangChain provider strings."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from pydantic import BaseModel, Field

from sopgraph.graphs.demo import build_demo_graph, demo_input
from sopgraph.nodes.llm import PROVIDERS, ModelError, ModelGateway, provider_for, resolve_model
from sopgraph.nodes.scripted import ScriptedChatModel
from sopgraph.state.context import Context


class Verdict(BaseModel):
    ok: bool
    reason: str = Field(min_length=3)


def test_a_chat_model_object_runs_a_graph() -> None:
    """`Context(model=<BaseChatModel>)` used to fail with `TypeError: unhashable`."""
    model = ScriptedChatModel()
    out = build_demo_graph().compile().invoke(demo_input(max_revisions=0), context=Context(model=model))
    assert out["outcome"] in {"approved", "gave up"}
    assert model.calls >= 2
    assert {r.model for r in out["usage"]} == {"instance:ScriptedChatModel:scripted"}


def test_a_chat_model_object_for_one_role(scripted) -> None:
    name, default = scripted
    critic = ScriptedChatModel()
    ctx = Context(model=name, models={"critic": critic})
    out = build_demo_graph().compile().invoke(demo_input(max_revisions=0), context=ctx)
    by_role = {r.role: r.model for r in out["usage"]}
    assert by_role == {"writer": name, "critic": "instance:ScriptedChatModel:scripted"}
    assert critic.calls == 1 and default.calls == 1
    assert Context.from_dict(ctx.to_dict()).models == {"critic": "instance:ScriptedChatModel:scripted"}


def test_a_stored_object_name_says_how_to_continue() -> None:
    with pytest.raises(ModelError, match=r"chat model object.*Context\(model="):
        provider_for("instance:ScriptedChatModel:scripted")


def test_provider_strings_go_through_init_chat_model_with_the_run_settings() -> None:
    pytest.importorskip("langchain_ollama")
    ctx = Context(model="ollama:llama3.2", temperature=0.7, max_output_tokens=77, seed=5)
    model: Any = resolve_model("ollama:llama3.2", ctx)
    assert type(model).__name__ == "ChatOllama"
    assert (model.model, model.temperature, model.num_predict, model.seed) == ("llama3.2", 0.7, 77, 5)
    assert provider_for("ollama:llama3.2") is PROVIDERS["langchain"]
    assert resolve_model("ollama:llama3.2", ctx) is model  # built once per name and settings


def test_a_provider_without_its_package_is_one_line() -> None:
    try:
        import langchain_anthropic  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("langchain-anthropic is installed here")
    with pytest.raises(ModelError, match=r"anthropic:claude-x: .*pip install langchain-anthropic") as info:
        ModelGateway(Context(model="anthropic:claude-x"), "tester").text("hi")
    assert "\n" not in str(info.value)


def test_structured_output_without_tool_calling_falls_back_to_json_and_reasks() -> None:
    model = FakeListChatModel(responses=['{"ok": true, "reason": "no"}', 'Sure: {"ok": true, "reason": "fine"}'])
    llm = ModelGateway(Context(model=model), "judge")
    verdict = llm.structured(Verdict, "Is it fine?")
    assert verdict == Verdict(ok=True, reason="fine")
    assert llm.records[-1].attempts == 2 and llm.records[-1].ok
