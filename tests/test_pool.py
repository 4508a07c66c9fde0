"""Visibility, subscription and storage of the message pool."""

from __future__ import annotations

import operator
import sqlite3
from pathlib import Path
from typing import Annotated, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from sopgraph.graphs.runner import open_checkpointer
from sopgraph.state.pool import (
    EVERYONE,
    Document,
    Message,
    Pool,
    PoolChannel,
    Subscription,
    Visibility,
    append_messages,
    close_subround,
    view,
)

ALL = Subscription(all_kinds=True, own=True)


class Note(Document):
    text: str
    score: int = 0


def names(messages: list[Message]) -> list[str]:
    return [m.content for m in messages]


def test_public_message_is_seen_by_everyone() -> None:
    m = Message(sender="alice", kind="speech", content="hello all")
    for who in ("alice", "bob", "carol"):
        assert names(view([m], who, ALL)) == ["hello all"]


def test_participants_only_message_is_invisible_to_others() -> None:
    m = Message(
        sender="alice", kind="private_chat", content="secret", send_to=["bob"], visibility=Visibility.PARTICIPANTS
    )
    assert names(view([m], "alice", ALL)) == ["secret"]
    assert names(view([m], "bob", ALL)) == ["secret"]
    assert view([m], "carol", ALL) == []


def test_existence_public_shows_the_fact_but_not_the_content() -> None:
    m = Message(
        sender="alice",
        kind="meeting",
        content="we split the money",
        send_to=["bob"],
        payload=Note(text="plan"),
        visibility=Visibility.EXISTENCE_PUBLIC,
    )
    assert view([m], "bob", ALL)[0].content == "we split the money"
    seen = view([m], "carol", ALL)
    assert len(seen) == 1
    outsider = seen[0]
    assert outsider.redacted and outsider.payload is None
    assert "we split the money" not in outsider.content
    assert "alice" in outsider.content and "bob" in outsider.content
    assert not view([m], "bob", ALL)[0].redacted


def test_after_subround_speech_appears_only_when_its_subround_closes() -> None:
    speech = Message(
        sender="alice",
        kind="group_speech",
        content="I accuse bob",
        round=1,
        stage="group_chat",
        sub_round=2,
        visibility=Visibility.AFTER_SUBROUND,
    )
    pool = [speech]
    assert names(view(pool, "alice", ALL)) == ["I accuse bob"]  # the speaker knows what she said
    assert view(pool, "bob", ALL) == []
    pool.append(close_subround(1, "group_chat", 1))  # another sub-round closing reveals nothing
    assert view(pool, "bob", ALL) == []
    pool.append(close_subround(1, "group_chat", 2))
    assert names(view(pool, "bob", ALL)) == ["I accuse bob"]
    assert all(m.kind != "subround_closed" for m in view(pool, "bob", ALL))


def test_after_subround_addressed_speech_stays_with_its_addressees() -> None:
    m = Message(
        sender="alice",
        kind="speech",
        content="psst",
        send_to=["bob"],
        round=0,
        stage="s",
        sub_round=0,
        visibility=Visibility.AFTER_SUBROUND,
    )
    pool = [m, close_subround(0, "s", 0)]
    assert names(view(pool, "bob", ALL)) == ["psst"]
    assert view(pool, "carol", ALL) == []


def test_subscription_by_kind_and_addressee() -> None:
    prd = Message(sender="pm", kind="prd", content="prd")
    design = Message(sender="architect", kind="design", content="design")
    to_eng = Message(sender="qa", kind="bug_report", content="fix it", send_to=["engineer"])
    mine = Message(sender="engineer", kind="code", content="code")
    pool = [prd, design, to_eng, mine]
    watches_design = Subscription(kinds=frozenset({"design"}))
    assert names(view(pool, "engineer", watches_design)) == ["design", "fix it"]
    only_kind = Subscription(kinds=frozenset({"design"}), addressed=False)
    assert names(view(pool, "engineer", only_kind)) == ["design"]
    own = Subscription(kinds=frozenset({"code"}), own=True, addressed=False)
    assert names(view(pool, "engineer", own)) == ["code"]
    assert names(view(pool, "engineer", Subscription(kinds=frozenset({"code"}), addressed=False))) == []
    assert names(view(pool, "engineer", Subscription(kinds=frozenset({"prd"}), own=True))) == ["prd", "fix it"]


def test_subscription_never_bypasses_visibility() -> None:
    private = Message(
        sender="alice", kind="private_chat", content="x", send_to=["bob"], visibility=Visibility.PARTICIPANTS
    )
    assert view([private], "carol", Subscription(kinds=frozenset({"private_chat"}))) == []


def test_reducer_appends_dedupes_and_is_batching_invariant() -> None:
    a, b, c = (Message(sender="s", kind="k", content=x) for x in "abc")
    once = append_messages([], [[a, b], [c]])
    split = append_messages(append_messages([], [[a, b]]), [[c]])
    assert once == split == [a, b, c]
    assert append_messages(once, [a, [b]]) == [a, b, c]
    assert append_messages([], [a.model_dump()]) == [a]


def test_send_to_normalisation_and_payload_revival() -> None:
    m = Message(sender="a", kind="k", send_to="b", payload=Note(text="t", score=3))
    assert m.send_to == ("b",) and not m.to_everyone
    assert Message(sender="a", kind="k", send_to=[]).send_to == (EVERYONE,)
    back = Message.model_validate_json(m.model_dump_json())
    assert isinstance(back.payload, Note) and back.payload.score == 3


def test_pool_latest() -> None:
    pool = Pool([Message(sender="a", kind="k", content="1"), Message(sender="b", kind="k", content="2")])
    assert pool.latest("k") is not None and pool.latest("k").content == "2"  # type: ignore[union-attr]
    assert pool.latest("other") is None


class _PoolState(TypedDict, total=False):
    pool: PoolChannel
    n: int
    target: int


class _ListState(TypedDict, total=False):
    pool: Annotated[list[Message], operator.add]
    n: int
    target: int


def _writer(state: dict) -> dict:
    i = state.get("n", 0)
    text = f"message {i}: " + "lorem ipsum dolor sit amet " * 8
    return {"pool": [Message(sender="w", kind="note", content=text, payload=Note(text=text[:40], score=i))], "n": i + 1}


def _stored_bytes(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        cps = conn.execute("select coalesce(sum(length(checkpoint)) + sum(length(metadata)), 0) from checkpoints")
        writes = conn.execute("select coalesce(sum(length(value)), 0) from writes")
        return int(cps.fetchone()[0]) + int(writes.fetchone()[0])
    finally:
        conn.close()


def _write_messages(state_type: type, count: int, path: Path) -> int:
    builder = StateGraph(state_type)
    builder.add_node("write", _writer)
    builder.add_edge(START, "write")
    builder.add_conditional_edges("write", lambda s: "write" if s["n"] < s["target"] else END, ["write", END])
    with open_checkpointer(str(path)) as saver:
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "t"}, "recursion_limit": 10 * count}
        final = graph.invoke({"n": 0, "target": count}, config)
        assert len(final["pool"]) == count
        restored = graph.get_state(config).values["pool"]
        assert [m.id for m in restored] == [m.id for m in final["pool"]]
        assert isinstance(restored[-1].payload, Note) and restored[-1].payload.score == count - 1
    return _stored_bytes(path)


def test_checkpoint_storage_grows_linearly(tmp_path: Path) -> None:
    sizes = {n: _write_messages(_PoolState, n, tmp_path / f"pool{n}.sqlite") for n in (50, 100, 200)}
    assert sizes[50] < sizes[100] < sizes[200]
    assert sizes[200] / sizes[100] < 2.5, sizes
    # The plain list channel that DeltaChannel replaces stores the whole pool at every step.
    plain = {n: _write_messages(_ListState, n, tmp_path / f"list{n}.sqlite") for n in (100, 200)}
    assert plain[200] / plain[100] > 3.0, plain
    assert sizes[200] * 5 < plain[200]


@pytest.mark.parametrize("count", [3])
def test_pool_round_trips_through_checkpointer(checkpointer, count: int) -> None:  # type: ignore[no-untyped-def]
    builder = StateGraph(_PoolState)
    builder.add_node("write", _writer)
    builder.add_edge(START, "write")
    builder.add_conditional_edges("write", lambda s: "write" if s["n"] < s["target"] else END, ["write", END])
    graph = builder.compile(checkpointer=checkpointer)
    config = {"configurable": {"thread_id": f"roundtrip-{id(graph)}"}}
    graph.invoke({"n": 0, "target": count}, config)
    pool = graph.get_state(config).values["pool"]
    assert [m.payload.score for m in pool] == list(range(count))
    assert all(isinstance(m, Message) and isinstance(m.payload, Note) for m in pool)
