"""The demo graph: the smallest SOP that exercises the whole framework.

writer → critic → (approved or out of revisions) → publish, else back to writer. Both roles talk only
through the message pool, with typed documents, structured model output and a conditional loop edge.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from sopgraph.graphs.sop import SOPStateGraph, labelled, validate_input
from sopgraph.nodes.llm import ModelGateway
from sopgraph.state.context import Context
from sopgraph.state.demo import DemoInput, DemoState, Pitch, Review
from sopgraph.state.limits import checked_text
from sopgraph.state.pool import Message, Pool, Subscription

WRITER_SYSTEM = (
    "You are a product writer. You write short, concrete product pitches. Reply only through the Pitch tool."
)
CRITIC_SYSTEM = (
    "You are a demanding product critic. Judge a pitch on clarity and concreteness. Reply only through the Review tool."
)
WRITER_WATCHES = Subscription(kinds=frozenset({"review"}))
CRITIC_WATCHES = Subscription(kinds=frozenset({"pitch"}))


def writer(state: DemoState, runtime: Runtime[Context]) -> dict:
    llm = ModelGateway.for_node(state, runtime, "writer")
    seen = Pool(state.get("pool")).view("writer", WRITER_WATCHES)
    prompt = f"Write a pitch for this idea: {state['idea']}"
    if seen:
        last = seen[-1].payload
        assert isinstance(last, Review)
        prompt += f"\nThe critic asked for a revision (score {last.score}/10): {last.comments}"
    pitch = llm.structured(Pitch, prompt, system=WRITER_SYSTEM)
    message = Message(sender="writer", kind="pitch", content=pitch.tagline, payload=pitch)
    return {"pool": [message], **llm.usage_update()}


def critic(state: DemoState, runtime: Runtime[Context]) -> dict:
    llm = ModelGateway.for_node(state, runtime, "critic")
    pitch = Pool(state.get("pool")).view("critic", CRITIC_WATCHES)[-1].payload
    assert isinstance(pitch, Pitch)
    features = "\n".join(f"- {f}" for f in pitch.features)
    review = llm.structured(
        Review,
        f"Review this pitch.\nTitle: {pitch.title}\nTagline: {pitch.tagline}\nFeatures:\n{features}",
        system=CRITIC_SYSTEM,
    )
    message = Message(sender="critic", kind="review", content=review.comments, payload=review, send_to=("writer",))
    update: dict = {"pool": [message], **llm.usage_update()}
    if review.verdict == "revise":
        update["revisions"] = state.get("revisions", 0) + 1
    return update


def after_review(state: DemoState) -> str:
    last = Pool(state.get("pool")).latest("review")
    assert last is not None and isinstance(last.payload, Review)
    if last.payload.verdict == "approve":
        return "publish"
    return "writer" if state.get("revisions", 0) <= state.get("max_revisions", 1) else "publish"


def publish(state: DemoState) -> dict:
    pool = Pool(state.get("pool"))
    review = pool.latest("review")
    approved = review is not None and isinstance(review.payload, Review) and review.payload.verdict == "approve"
    return {"outcome": "approved" if approved else "gave up"}


def build_demo_graph() -> StateGraph[DemoState, Context, DemoInput]:
    builder = SOPStateGraph(DemoState, input_schema=DemoInput, context_schema=Context)
    builder.add_node("writer", writer)
    builder.add_node("critic", critic)
    builder.add_node("publish", publish)
    builder.add_edge(START, "writer")
    builder.add_edge("writer", "critic")
    builder.add_conditional_edges(
        "critic", *labelled(after_review, {"writer": "revise", "publish": "approved or out of revisions"})
    )
    builder.add_edge("publish", END)
    return builder


def demo_input(idea: str = "a command-line todo list", max_revisions: int = 1) -> DemoState:
    """The graph input; ValueError (one line) for an empty, undecodable or over-long idea or negative revisions."""
    if max_revisions < 0:
        raise ValueError(f"max_revisions must be >= 0, got {max_revisions}")
    values = {"idea": checked_text("the idea", idea), "max_revisions": max_revisions}
    return validate_input(DemoInput, values, "demo")  # type: ignore[return-value]


graph = build_demo_graph().compile(name="demo")
