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
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from sopgraph.graphs.registry import allowed_types
from sopgraph.tools.persistence import PersistenceError, checkpointer_url, describe

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
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError as exc:
            raise PersistenceError("a PostgreSQL checkpointer needs the postgres extra") from exc
        async with AsyncPostgresSaver.from_conn_string(url, serde=serde) as saver:
            await saver.setup()
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
