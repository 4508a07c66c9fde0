"""The checkpointer LangGraph's server uses (graphs/server.py) on the PostgreSQL a deployment names in
DATABASE_URI: a company run through it reads back whole from a fresh saver (every type revived by the allow-list),
a connection the database dropped is replaced, and workers opening it together on a fresh database do not race
on LangGraph's migrations table."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTGRES_URL, _postgres_or_skip
from langchain_core.runnables import RunnableConfig

from sopgraph.graphs import server
from sopgraph.graphs.company import build_company_graph, company_input
from sopgraph.graphs.demo import build_demo_graph, demo_input
from sopgraph.state.company import Delivery, QAReport
from sopgraph.state.context import Context

pytestmark = pytest.mark.postgres
psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> str:
    """The server's environment on a deployment: its own Postgres in DATABASE_URI, no sopgraph setting."""
    url = _postgres_or_skip()
    monkeypatch.delenv("SOPGRAPH_CHECKPOINTER", raising=False)
    monkeypatch.delenv("POSTGRES_URI", raising=False)
    monkeypatch.setenv("DATABASE_URI", url)
    return url


def _thread(prefix: str) -> RunnableConfig:
    return {"configurable": {"thread_id": f"{prefix}-{uuid.uuid4().hex[:8]}"}}


def test_a_company_run_through_the_servers_postgres_checkpointer_reads_back(
    deployed: str, company: tuple[str, Any], tmp_path: Path
) -> None:
    name, script = company
    script.buggy_until_fix = True  # a debug loop: more node kinds, more checkpointed types
    cfg = _thread("server-pg")
    payload = company_input("a command-line calculator", out_dir=tmp_path / "repo", max_debug=2)

    async def run() -> dict[str, Any]:
        async with server.checkpointer() as saver:
            assert type(saver).__name__ == "AsyncPostgresSaver"
            graph = build_company_graph().compile(checkpointer=saver)
            return await graph.ainvoke(payload, cfg, context=Context(model=name))  # type: ignore[call-overload]

    async def read() -> tuple[Any, int]:
        async with server.checkpointer() as saver:  # a fresh saver, as a restarted server would open
            graph = build_company_graph().compile(checkpointer=saver)
            state = await graph.aget_state(cfg)
            history = [s async for s in graph.aget_state_history(cfg)]
            return state, len(history)

    final = asyncio.run(run())
    state, checkpoints = asyncio.run(read())
    assert state.next == () and checkpoints > 10
    assert state.values["outcome"] == final["outcome"] == "tests passed on attempt 2 of 2"
    assert [m.id for m in state.values["pool"]] == [m.id for m in final["pool"]]
    reports = [m.payload for m in state.values["pool"] if isinstance(m.payload, QAReport)]
    assert [(r.attempt, r.all_passed) for r in reports] == [(1, False), (2, True)]
    assert any(isinstance(m.payload, Delivery) for m in state.values["pool"])
    assert len(state.values["usage"]) == len(final["usage"]) > 0


async def _demo_run(saver: Any) -> dict[str, Any]:
    graph = build_demo_graph().compile(checkpointer=saver)
    cfg = _thread("server-demo")
    await graph.ainvoke(demo_input(max_revisions=0), cfg, context=Context(model="scripted"))  # type: ignore[call-overload]
    return dict((await graph.aget_state(cfg)).values)


def test_a_connection_the_database_dropped_is_replaced(deployed: str) -> None:
    """One connection for the server's life would fail every later run after a database restart."""

    async def go() -> list[str]:
        async with server.checkpointer() as saver:
            first = await _demo_run(saver)
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:  # our connections only
                killed = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    (f"sopgraph-server:{os.getpid()}",),
                ).fetchall()
            assert killed and all(row[0] for row in killed)
            second = await _demo_run(saver)
            return [first["outcome"], second["outcome"]]

    first, second = asyncio.run(go())
    assert first and first == second


@pytest.fixture
def fresh_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty database of its own (no checkpoint tables yet), dropped afterwards."""
    _postgres_or_skip()
    db = f"sopgraph_fresh_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {db}")
    except psycopg.Error as exc:
        pytest.skip(f"cannot create a database: {exc}")
    base, _, _ = POSTGRES_URL.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/{db}"
    monkeypatch.setenv("SOPGRAPH_CHECKPOINTER", url)
    yield url
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {db} WITH (FORCE)")


def test_workers_opening_the_checkpointer_together_on_a_fresh_database_all_get_one(fresh_database: str) -> None:
    """LangGraph's setup() run concurrently fails on its migrations table (UniqueViolation); the server opens
    a saver per worker, and replicas start together."""

    async def open_one() -> str:
        async with server.checkpointer() as saver:
            return type(saver).__name__

    async def together() -> list[Any]:
        return await asyncio.gather(*(open_one() for _ in range(4)), return_exceptions=True)

    assert asyncio.run(together()) == ["AsyncPostgresSaver"] * 4


def test_cli_processes_opening_a_fresh_database_together_all_get_one(fresh_database: str) -> None:
    """The same race on the CLI's (sync) checkpointer: runs started together on a fresh database."""
    import threading

    from sopgraph.graphs.runner import open_checkpointer

    results: list[str] = []

    def open_one() -> None:
        try:
            with open_checkpointer(fresh_database) as saver:
                results.append(type(saver).__name__)
        except Exception as exc:  # the assertion below shows it
            results.append(repr(exc))

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["PostgresSaver"] * 4


def test_an_unreachable_database_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from sopgraph.tools.persistence import PersistenceError

    monkeypatch.setenv("SOPGRAPH_CHECKPOINTER", "postgresql://postgres:secret@127.0.0.1:1/nowhere")

    async def go() -> None:
        async with server.checkpointer():
            pass

    with pytest.raises(PersistenceError) as err:
        asyncio.run(go())
    line = str(err.value)
    assert "\n" not in line and "cannot connect to postgresql://postgres:***@127.0.0.1:1/nowhere" in line
    assert "secret" not in line
