"""Real structured requests through the gateway to the embedded model (slow; marked local_model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from sopgraph.graphs import runner
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.nodes.llm import ModelGateway
from sopgraph.state.context import Context
from sopgraph.state.demo import Pitch, Review

pytestmark = [pytest.mark.local_model, pytest.mark.timeout(1800)]


class Arithmetic(BaseModel):
    expression: str = Field(description="The expression exactly as asked")
    result: int = Field(description="Its integer value")


@pytest.fixture
def local(local_model_name: str) -> str:
    return local_model_name


def test_structured_requests_parse_into_schema_objects(local: str) -> None:
    llm = ModelGateway(Context(model=local, max_reasks=2), role="writer")
    pitch = llm.structured(Pitch, "Write a pitch for a command-line todo list app.", system="Use the Pitch tool.")
    assert isinstance(pitch, Pitch) and pitch.title.strip() and pitch.features
    review = llm.structured(
        Review,
        f"Review this pitch: {pitch.title}: {pitch.tagline}",
        system="You are a product critic. Use the Review tool.",
    )
    assert isinstance(review, Review) and review.verdict in {"approve", "revise"} and 1 <= review.score <= 10
    sum_ = llm.structured(Arithmetic, "What is 17 + 25? Give the expression and the integer result.")
    assert isinstance(sum_.result, int)
    for record in llm.records:
        assert record.model == "local" and record.ok
        assert record.input_tokens > 20 and record.output_tokens > 0 and record.latency_s > 0
    print("\nlocal structured calls:", [(r.call, r.input_tokens, r.output_tokens, r.latency_s) for r in llm.records])


def test_text_request(local: str) -> None:
    llm = ModelGateway(Context(model=local, max_output_tokens=32), role="tester")
    reply = llm.text("Say hello in one short sentence.")
    assert reply.strip()
    assert llm.records[0].output_tokens <= 40


def test_output_cap_stops_a_long_reply(local: str) -> None:
    # llama.cpp's server ignores `max_completion_tokens`; without `max_tokens` this runs to the context limit
    llm = ModelGateway(Context(model=local, max_output_tokens=24), role="tester")
    llm.text("Write a 600-word essay on the history of the printing press.")
    assert llm.records[0].output_tokens <= 24


def test_demo_graph_runs_on_the_local_model_with_sqlite(local: str, tmp_path: Path) -> None:
    with open_checkpointer(str(tmp_path / "state.sqlite")) as saver:
        outcome = runner.start_run(
            "demo", {"idea": "a command-line todo list", "max_revisions": 1}, saver, Context(model=local)
        )
        assert outcome.status == "done" and outcome.values["outcome"] in {"approved", "gave up"}
        kinds = [m.kind for m in outcome.values["pool"]]
        assert kinds[:2] == ["pitch", "review"]
        assert all(r.model == "local" for r in outcome.values["usage"])
        assert runner.history(saver, outcome.thread_id)


def test_gateway_restarts_a_server_that_went_away(local: str) -> None:
    from sopgraph.tools import local_model

    llm = ModelGateway(Context(model=local, max_output_tokens=8), role="tester")
    assert llm.text("Say yes.").strip()
    local_model.stop()  # as when the process that started the shared server exits
    assert llm.text("Say yes again.").strip()
    assert local_model.status()["running"]
