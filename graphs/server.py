"""The checkpointer LangGraph's server uses for sopgraph's graphs (langgraph.json's `checkpointer.path`).

Why our own: langgraph-api (0.16.x) reads `checkpointer.serde.allowed_msgpack_modules` from langgraph.json
but does not hand it to the serializer of its built-in checkpointer, so every sopgraph type it reads back is
"unregistered" (a warning each, and blocked under LANGGRAPH_STRICT_MSGPACK). The server takes a custom
checkpointer instead and uses that saver's own serializer, so the saver built here carries the allow-list
(registry.allowed_types(), the list langgraph.json holds).

Where runs are kept follows the one setting the CLI uses, `SOPGRAPH_CHECKPOINTER`: a SQLite file (default
`.sopgraph/state.sqlite`, relative to where the server runs), `postgresql://…`, or `memory`. Unset, a
deployed server's own database (`DATABASE_URI` or `POSTGRES_URI`, which `langgraph up` and the platform set)
(when it is a postgresql:// URL) comes before the SQLite default, so a deployment keeps its runs in its
Postgres as before.

Postgres here is a connection pool that replaces a connection the database dropped (a single connection would
fail every later run after a restart of the database or a terminated backend), and the tables are created
under an advisory lock: the server opens a saver per worker, and replicas start together, on a fresh database
(LangGraph's `setup()` run concurrently fails on its migrations table).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from sopgraph.graphs.registry import allowed_types
from sopgraph.tools.persistence import SETUP_LOCK, SETUP_TRY, PersistenceError, checkpointer_url, describe

POSTGRES = ("postgresql://", "postgres://")


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver]:
    """An async saver for the server (it calls this once per worker thread and keeps the saver open)."""
    deployed = [os.environ.get("DATABASE_URI") or "", os.environ.get("POSTGRES_URI") or ""]
    postgres = next((u for u in deployed if u.startswith(POSTGRES)), None)  # `langgraph dev` sets ":memory:"
    url = checkpointer_url(os.environ.get("SOPGRAPH_CHECKPOINTER") or postgres)
    serde = JsonPlusSerializer(allowed_msgpack_modules=allowed_types())
    if url == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver(serde=serde)
    elif url.startswith(POSTGRES):
        async with _postgres(url, serde) as saver:
            yield saver
    elif "://" in url and not url.startswith("sqlite:///"):
        raise PersistenceError(f"unsupported checkpointer {describe(url)!r} for the server")
    else:
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(str(path)) as conn:
            sqlite = AsyncSqliteSaver(conn, serde=serde)
            await sqlite.setup()
            yield sqlite


@asynccontextmanager
async def _postgres(url: str, serde: JsonPlusSerializer) -> AsyncIterator[BaseCheckpointSaver]:
    try:
        import psycopg
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool
    except ImportError as exc:
        raise PersistenceError("a PostgreSQL checkpointer needs the postgres extra") from exc
    try:  # one direct attempt first: a bad URL fails at once with the server's own reason
        await (await psycopg.AsyncConnection.connect(url, connect_timeout=5)).close()
    except psycopg.Error as exc:
        raise PersistenceError(f"cannot connect to {describe(url)}: {' '.join(str(exc).split())[:200]}") from exc
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=8,
        kwargs={
            "autocommit": True,
            "prepare_threshold": 0,
            "row_factory": dict_row,
            "application_name": f"sopgraph-server:{os.getpid()}",
        },
        check=AsyncConnectionPool.check_connection,  # a connection the database dropped is replaced on checkout
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=30)
    except Exception as exc:
        raise PersistenceError(f"cannot open a connection pool to {describe(url)}: {exc}") from exc
    try:
        saver = AsyncPostgresSaver(pool, serde=serde)  # type: ignore[arg-type]
        async with pool.connection() as lock:
            # Polled, not waited for (see SETUP_LOCK).
            while True:
                row: Any = await (await lock.execute(SETUP_TRY, (SETUP_LOCK,))).fetchone()
                if row and row["locked"]:
                    break
                await asyncio.sleep(0.1)
            try:
                await saver.setup()
            finally:
                await lock.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
        yield saver
    finally:
        await pool.close()
