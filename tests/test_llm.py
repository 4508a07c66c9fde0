"""The model gateway: resolution, structured output with bounded re-ask, usage ledger, budget stops."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import BaseModel, Field, model_validator

from sopgraph.graphs.demo import build_demo_graph, demo_input
from sopgraph.nodes.llm import (
    ModelError,
    ModelGateway,
    StructuredOutputError,
    forget_model,
    provider_of,
    resolve_model,
    schema_instruction,
)
from sopgraph.nodes.scripted import ScriptedChatModel, ScriptedRequest
from sopgraph.state.context import Context
from sopgraph.state.demo import Pitch, Review
from sopgraph.state.usage import UsageTotals


class Answer(BaseModel):
    city: str = Field(min_length=2)
    population: int = Field(ge=0, le=50_000_000)
    tags: list[str] = Field(min_length=1)


class Count(BaseModel):
    n: int


def gateway(name: str, **ctx: Any) -> ModelGateway:
    return ModelGateway(Context(model=name, **ctx), role="tester")


def test_unknown_model_name_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="unknown model name 'gpt5'"):
        provider_of("gpt5")
    with pytest.raises(ModelError, match="unknown model name"):
        gateway("nonsense")


def test_openai_needs_a_key_or_a_base_url() -> None:
    with pytest.raises(ModelError, match="OPENAI_API_KEY is not set"):
        resolve_model("openai:gpt-4o-mini")


def test_unreachable_endpoint_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    llm = ModelGateway(Context(model="openai:some-model", request_timeout_s=5), role="tester")
    with pytest.raises(ModelError) as info:
        llm.text("hello")
    message = str(info.value)
    assert "\n" not in message and "openai:some-model" in message and "Connection" in message


@dataclass
class Endpoint:
    """A loopback OpenAI-compatible server: records request bodies, answers with the queued contents."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    contents: list[Any] = field(default_factory=list)
    """Reply contents in order; a (content, finish_reason) pair sets the finish reason."""


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            state.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            content = state.contents.pop(0) if state.contents else "ok"
            finish = "stop"
            if isinstance(content, tuple):  # (content, finish_reason)
                content, finish = content
            message = {"role": "assistant", "content": content}
            reply = {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37},
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_port}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_compatible_endpoints_get_the_output_cap_as_max_tokens(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI-compatible servers (llama.cpp's among them) read `max_tokens`, not `max_completion_tokens`."""
    monkeypatch.setenv("OPENAI_BASE_URL", endpoint.url)
    assert gateway("openai:m", max_output_tokens=77).text("hi") == "ok"
    assert endpoint.bodies and endpoint.bodies[0]["max_tokens"] == 77


@pytest.fixture
def local_endpoint(endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    """`local:*` names resolved to the loopback endpoint instead of a llama.cpp server."""
    from sopgraph.tools import local_model

    asked: list[str | None] = []

    def ensure_server(name: str | None = None, **kwargs: Any) -> local_model.ServerHandle:
        asked.append(name)
        spec = local_model.get_spec(name)
        port = int(endpoint.url.rsplit(":", 1)[1].split("/")[0])
        return local_model.ServerHandle(endpoint.url, spec.name, port, 0, False, Path("m.gguf"), Path("m.log"))

    monkeypatch.setattr(local_model, "ensure_server", ensure_server)
    for name in ("local", "local:0.5b", "local:1.5b"):
        forget_model(name)
    endpoint.asked = asked  # type: ignore[attr-defined]
    yield endpoint
    for name in ("local", "local:0.5b", "local:1.5b"):
        forget_model(name)


def test_local_schema_after_the_prompt_keeps_the_system_message_fixed(local_endpoint: Endpoint) -> None:
    """A caller that switches schemas under one system prompt (a group-chat character) gets each schema after
    its prompt, so the server's prompt cache can keep the system message: byte for byte the same."""
    local_endpoint.contents = [json.dumps({"city": "Oslo", "population": 700_000, "tags": ["fjord"]}), '{"n": 3}']
    llm = ModelGateway(Context(model="local"), role="tester", schema_last=True)
    llm.structured(Answer, "Which city?", system="You are a geographer.")
    llm.structured(Count, "How many?", system="You are a geographer.")
    systems = [body["messages"][0] for body in local_endpoint.bodies]
    assert systems == [{"role": "system", "content": "You are a geographer."}] * 2
    (first,), (second,) = (body["messages"][1:] for body in local_endpoint.bodies)
    assert first["role"] == "user" and first["content"].startswith("Which city?\n\n")
    assert first["content"].endswith(schema_instruction(Answer)) and named_keys(first["content"]) == KEYS
    assert second["content"].startswith("How many?\n\n") and '"n"' in second["content"]


KEYS = ["city", "population", "tags"]


def named_keys(text: str) -> list[str]:
    """The JSON keys a local structured prompt lists, one a line, at any depth."""
    return re.findall(r'^ *"(\w+)"', text, re.MULTILINE)


def test_local_prompts_list_the_fields_and_leave_the_schema_to_the_grammar() -> None:
    """The embedded server's grammar enforces a reply's shape (json_schema response format); the prompt says
    what goes where: every key at every depth with its description once, a choice or a range the description
    does not spell out, no JSON schema. The schema text was most of a group chat's uncached prompt tokens."""
    from sopgraph.nodes.groupchat import replies
    from sopgraph.state.company import PRD, TaskPlan

    reflect = replies.reflect_schema(("bruno", "chen"), ("Humans stay special",))
    for schema in (Answer, PRD, TaskPlan, replies.Speech, replies.vote_schema(("bruno", "chen")), reflect):
        text = schema_instruction(schema)
        js = schema.model_json_schema()
        objects = [js, *js.get("$defs", {}).values()]
        keys = [k for o in objects for k in o.get("properties", {})]
        assert sorted(named_keys(text)) == sorted(keys), schema.__name__
        descriptions = {
            p["description"] for o in objects for p in o.get("properties", {}).values() if "description" in p
        }
        assert all(text.count(d) == 1 for d in descriptions if d != "0-100."), schema.__name__
        assert not any(word in text for word in ('"properties"', "$defs", '"title"', '"type"'))
        assert len(text) < 0.6 * len(json.dumps(js, separators=(",", ":"))), schema.__name__
    assert "(integer 0-50000000)" in schema_instruction(Answer)  # a range the description does not give
    assert '"score" (integer): 0-100.' in schema_instruction(reflect)  # ... and one it does, once
    lines = schema_instruction(reflect).splitlines()
    assert '  "character": Id of the other character. One of: bruno, chen.' in lines  # nested, choices once
    assert '"relationships" (optional, a list of objects): Only people you now see differently.' in lines

    class Pick(BaseModel):
        side: Literal["code", "test"] = Field(description="Which side is wrong.")
        sure: bool

    assert schema_instruction(Pick).splitlines()[1:] == [
        '"side" (one of "code", "test"): Which side is wrong.',
        '"sure" (true or false)',
    ]


def test_local_structured_output_asks_for_json_schema(local_endpoint: Endpoint) -> None:
    """The embedded server constrains decoding to the schema: no tools, a json_schema response format, and
    the schema's descriptions in the system prompt (the grammar alone does not tell the model what goes where)."""
    local_endpoint.contents = [json.dumps({"city": "Oslo", "population": 700_000, "tags": ["fjord"]})]
    llm = ModelGateway(Context(model="local", models={"engineer": "local:1.5b"}), role="tester")
    assert llm.structured(Answer, "Which city?", system="You are a geographer.").city == "Oslo"
    (body,) = local_endpoint.bodies
    assert "tools" not in body and "tool_choice" not in body
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Answer"
    assert fmt["json_schema"]["schema"] == Answer.model_json_schema()
    system = body["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("You are a geographer.")
    assert '"population"' in system["content"]
    assert body["model"] == "qwen2.5-coder-0.5b"
    ModelGateway(Context(model="local", models={"engineer": "local:1.5b"}), role="engineer").text("hi")
    assert local_endpoint.bodies[-1]["model"] == "qwen2.5-coder-1.5b"  # per role
    assert local_endpoint.asked == [None, "1.5b"]  # type: ignore[attr-defined]


def test_a_group_chat_reply_fits_the_grammar_and_validates_on_the_local_model(local_endpoint: Endpoint) -> None:
    """A character's structured request to the embedded server: its card alone as the system message, the field
    list after the prompt, the narrowed schema (legal ids, belief names) as the grammar. A reply that fills
    the keys the prompt names parses; one naming a character outside the grammar's choices is re-asked."""
    from sopgraph.nodes.groupchat import replies
    from sopgraph.nodes.groupchat.asking import Player
    from sopgraph.scenarios import load_scenario

    spec = load_scenario("philosophers").characters[0]
    schema = replies.reflect_schema(("bruno", "chen"), ("Humans stay special",))
    good = {
        "reflection": "Bruno doubts me; Chen may help.",
        "relationships": [{"character": "chen", "score": 60, "impression": "an ally"}],
        "beliefs": [{"belief": "Humans stay special", "score": 40}],
    }
    bad = {**good, "relationships": [{"character": "dora", "score": 60}]}
    local_endpoint.contents = [json.dumps(bad), json.dumps(good)]
    player = Player(spec, Context(model="local"))
    value = player.ask(schema, "How do you see things now?", "The card.", "reflect")
    assert value == schema.model_validate(good)
    first, second = local_endpoint.bodies
    assert first["messages"][0] == {"role": "system", "content": "The card."}
    prompt = first["messages"][-1]["content"]
    assert prompt.startswith("How do you see things now?") and prompt.endswith(schema_instruction(schema))
    assert set(named_keys(prompt)) == set(good) | {"character", "score", "impression", "belief"}
    assert first["response_format"]["json_schema"]["schema"] == schema.model_json_schema()
    assert "'bruno' or 'chen'" in second["messages"][-1]["content"]  # the validation error, re-asked
    (record,) = player.records()
    assert (record.call, record.attempts, record.ok) == ("Reflect", 2, True)


def test_every_failed_attempt_is_counted_and_travels_with_the_error(local_endpoint: Endpoint) -> None:
    local_endpoint.contents = ['{"city": "X"}', "not json", '{"city": "Oslo", "population": -1, "tags": []}']
    llm = gateway("local:0.5b", max_reasks=2)
    with pytest.raises(StructuredOutputError, match="no valid Answer after 3 attempts") as info:
        llm.structured(Answer, "Which city?")
    assert len(local_endpoint.bodies) == 3
    totals = UsageTotals.of(info.value.usage)
    assert (totals.calls, totals.input_tokens, totals.output_tokens) == (3, 90, 21)
    assert info.value.usage == llm.records and not llm.records[-1].ok


class Design(BaseModel):
    approach: str = Field(description="How to build it, two or three sentences.", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _drop_echo(cls, data: Any) -> Any:  # the company documents drop a value that repeats its description
        if isinstance(data, dict) and "two or three sentences" in str(data.get("approach", "")):
            return {k: v for k, v in data.items() if k != "approach"}
        return data


def test_a_reask_names_an_echoed_field_and_samples_hotter_with_another_seed(local_endpoint: Endpoint) -> None:
    """Seen on the 0.5B architect: it filled a required field with its description, validation dropped it,
    and "Field required" sent back at the same temperature and seed got the same reply three times."""
    local_endpoint.contents = [
        json.dumps({"approach": "To build it, two or three sentences."}),
        json.dumps({"approach": "One module keeps the list in a JSON file; main.py parses the commands."}),
    ]
    llm = gateway("local", temperature=0.2, seed=5)
    assert llm.structured(Design, "Design a todo list.").approach.startswith("One module")
    first, second = local_endpoint.bodies
    reask = second["messages"][-1]["content"]
    assert "approach only repeated its description" in reask and "Field required" not in reask
    assert (first["temperature"], first["seed"]) == (0.2, 5)
    assert second["temperature"] >= 0.7 and second["seed"] == 6


def test_a_structured_reply_cut_at_the_output_cap_is_reasked_and_counted(local_endpoint: Endpoint) -> None:
    """Seen in the group chat on the 0.5B: a reply that ran into the 384-token cap stopped the whole story with
    the OpenAI client's LengthFinishReasonError instead of being re-asked like any invalid reply."""
    local_endpoint.contents = [
        ('{"city": "Oslo", "population": 700000, "tags": ["fjord", "fjord", "fjord', "length"),
        json.dumps({"city": "Oslo", "population": 700_000, "tags": ["fjord"]}),
    ]
    llm = gateway("local")
    assert llm.structured(Answer, "Which city?").city == "Oslo"
    assert "cut off at the output limit (7 tokens)" in local_endpoint.bodies[1]["messages"][-1]["content"]
    (record,) = llm.records
    assert (record.attempts, record.ok, record.input_tokens, record.output_tokens) == (2, True, 60, 14)
    local_endpoint.contents = [("{", "length")] * 3
    with pytest.raises(StructuredOutputError, match="after 3 attempts: the reply was cut off"):
        gateway("local").structured(Answer, "Which city?")


def test_local_model_names() -> None:
    assert {provider_of(n) for n in ("local", "local:0.5b", "local:1.5b")} == {"local"}
    with pytest.raises(ModelError, match="local model: unknown local model '7b'"):
        resolve_model("local:7b")


def test_structured_output_is_schema_valid_and_deterministic(scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    first = gateway(name).structured(Answer, "Which city?")
    again = gateway(name).structured(Answer, "Which city?")
    other = gateway(name).structured(Answer, "Which other city?")
    assert isinstance(first, Answer) and first == again and first != other
    assert model.calls == 3


def test_text_reply_is_labelled_scripted(scripted) -> None:  # type: ignore[no-untyped-def]
    name, _ = scripted
    llm = gateway(name)
    reply = llm.text("please summarise the meeting")
    assert "scripted" in reply and "summarise" in reply
    (record,) = llm.records
    assert record.call == "text" and record.input_tokens > 0 and record.output_tokens > 0


def test_invalid_reply_is_reasked_with_the_error(scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.invalid_calls = frozenset({0})
    llm = gateway(name)
    value = llm.structured(Answer, "Which city?")
    assert isinstance(value, Answer)
    (record,) = llm.records
    assert record.attempts == 2 and record.ok
    second = model.requests[1]
    assert "not a valid Answer" in second.last and "city" in second.last
    assert record.input_tokens == sum(len(r.prompt) for r in model.requests) // 4 or record.input_tokens > 0


def test_reask_is_bounded_then_fails_clearly(scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.invalid_calls = frozenset(range(10))
    llm = gateway(name, max_reasks=2)
    with pytest.raises(StructuredOutputError, match="no valid Answer after 3 attempts"):
        llm.structured(Answer, "Which city?")
    assert model.calls == 3
    assert llm.records[-1].ok is False and llm.records[-1].attempts == 3


def test_script_controls_the_reply_and_is_validated(scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    replies = iter(
        [{"city": "X", "population": 5, "tags": ["a"]}, {"city": "Oslo", "population": 700_000, "tags": ["fjord"]}]
    )

    def script(request: ScriptedRequest) -> Any:
        assert request.schema is Answer
        return next(replies)

    model.script = script
    value = gateway(name).structured(Answer, "Capital of Norway?")
    assert value == Answer(city="Oslo", population=700_000, tags=["fjord"])  # "X" broke min_length: re-asked


def test_provider_fault_becomes_model_error(scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.fail_calls = frozenset({0})
    with pytest.raises(ModelError, match="ScriptedFault: scripted fault injected on call 0"):
        gateway(name).text("hi")


def test_scripted_model_works_through_bind_tools_and_with_structured_output() -> None:
    model = ScriptedChatModel(seed=3)
    parsed = model.with_structured_output(Answer).invoke("q")
    assert isinstance(parsed, Answer)
    raw = model.bind_tools([Answer], tool_choice="Answer").invoke("q")
    assert raw.tool_calls and Answer.model_validate(raw.tool_calls[0]["args"])
    assert raw.usage_metadata and raw.usage_metadata["total_tokens"] > 0
    free = model.bind_tools([Answer]).invoke("q")
    assert not free.tool_calls and "scripted" in free.content


def test_per_role_overrides(scripted) -> None:  # type: ignore[no-untyped-def]
    name, critic_model = scripted
    ctx = Context(model="scripted", models={"critic": name})
    graph = build_demo_graph().compile()
    out = graph.invoke(demo_input(max_revisions=0), context=ctx)
    critic_calls = [r for r in out["usage"] if r.role == "critic"]
    writer_calls = [r for r in out["usage"] if r.role == "writer"]
    assert critic_calls and all(r.model == name for r in critic_calls)
    assert writer_calls and all(r.model == "scripted" for r in writer_calls)
    assert critic_model.calls == len(critic_calls)


def _always(verdict: str):  # type: ignore[no-untyped-def]
    def script(request: ScriptedRequest) -> Any:
        if request.schema is Review:
            return Review(verdict=verdict, score=5, comments="more detail")  # type: ignore[arg-type]
        return None

    return script


def test_budget_pauses_the_run_and_resume_continues(scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = _always("revise")
    graph = build_demo_graph().compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "budget"}}
    result = graph.invoke(demo_input(max_revisions=3), config, context=Context(model=name, budget_tokens=400))
    interrupts = result.get("__interrupt__")
    assert interrupts and interrupts[0].value["reason"] == "budget"
    state = graph.get_state(config)
    spent = UsageTotals.of(state.values["usage"]).total_tokens
    assert spent >= 400 and state.next  # stopped cleanly, work kept, more to do
    calls_before = model.calls
    done = graph.invoke(Command(resume=True), config, context=Context(model=name, budget_tokens=100_000))
    assert done["outcome"] == "gave up" and "__interrupt__" not in done
    roles = [r.role for r in done["usage"]]
    assert roles == ["writer", "critic"] * 4  # nothing recorded twice
    assert model.calls == calls_before + (len(roles) - len(state.values["usage"]))


def test_resume_without_more_budget_pauses_again(scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = _always("revise")
    graph = build_demo_graph().compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "still-over"}}
    ctx = Context(model=name, budget_tokens=150)
    graph.invoke(demo_input(max_revisions=3), config, context=ctx)
    calls = model.calls
    again = graph.invoke(Command(resume=True), config, context=ctx)
    assert again["__interrupt__"][0].value["reason"] == "budget"
    assert model.calls == calls


def test_dollar_budget_uses_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    from sopgraph.nodes.llm import cost_of

    assert cost_of("openai:gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cost_of("scripted", 10**6, 10**6) == 0.0
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    assert cost_of("openai:gpt-4o-mini", 10**6, 10**6) == 0.0  # a self-hosted server is not billed
    llm = ModelGateway(Context(model="scripted", budget_usd=0.5), "r")
    assert llm.over_budget() is None


def test_pitch_schema_generated_by_scripted_model_validates(scripted) -> None:  # type: ignore[no-untyped-def]
    name, _ = scripted
    pitch = gateway(name).structured(Pitch, "idea")
    assert 1 <= len(pitch.features) <= 8 and pitch.doc_type == "Pitch"


def test_a_client_closed_by_another_thread_gets_one_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """When one thread restarts the shared local server it closes the old client; a request another thread
    sends on it must be retried on the fresh client, not fail."""
    import sopgraph.nodes.llm as llm

    class Closed(ScriptedChatModel):
        def invoke(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("Cannot send a request, as the client has been closed.")

    models = iter([Closed(), ScriptedChatModel(script=lambda request: "fresh")])
    monkeypatch.setattr(llm, "resolve_model", lambda name, ctx=None: next(models))
    assert gateway("local").text("hi") == "fresh"

    models = iter([Closed(), Closed()])
    with pytest.raises(ModelError, match="client has been closed"):
        gateway("local").text("hi")
