"""Checkpointers from one setting.

`SOPGRAPH_CHECKPOINTER` (or `--db` on the CLI) picks where runs are kept:

- a file path or `sqlite:///path`: a SQLite file (default `.sopgraph/state.sqlite`);
- `postgresql://…`: LangGraph's PostgresSaver (needs the `postgres` extra);
- `memory`: nothing kept after the process ends.

Every saver gets a serializer that may rebuild exactly the types sopgraph keeps in state (everything the
modules of `sopgraph.state` define) and nothing else.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import pkgutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel

DEFAULT_SQLITE = Path(".sopgraph") / "state.sqlite"


class PersistenceError(RuntimeError):
    """The checkpointer setting is wrong or its store is unreachable (one line, for the user)."""


def checkpointer_url(setting: str | None = None) -> str:
    return setting or os.environ.get("SOPGRAPH_CHECKPOINTER") or str(DEFAULT_SQLITE)


def state_types() -> set[tuple[str, str]]:
    """(module, name) of every pydantic model, dataclass and enum defined in sopgraph.state.*."""
    import sopgraph.state as state_pkg

    allowed: set[tuple[str, str]] = set()
    for info in pkgutil.iter_modules(state_pkg.__path__, "sopgraph.state."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ != module.__name__:
                continue
            if issubclass(obj, (BaseModel, Enum)) or dataclasses.is_dataclass(obj):
                allowed.add((obj.__module__, obj.__name__))
    from sopgraph.state.pool import Document

    allowed |= {(cls.__module__, cls.__name__) for cls in Document.registry.values()}
    return allowed


def serializer() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=tuple(sorted(state_types())))


def describe(url: str) -> str:
    """The setting with any password hidden, for messages."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


@contextmanager
def open_checkpointer(setting: str | None = None) -> Iterator[BaseCheckpointSaver]:
    """Open the checkpointer a setting names; PersistenceError with one clear line when it can't."""
    url = checkpointer_url(setting)
    serde = serializer()
    if url == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver(serde=serde)
        return
    if url.startswith(("postgresql://", "postgres://")):
        with _postgres(url, serde) as saver:
            yield saver
        return
    if "://" in url and not url.startswith("sqlite:///"):
        raise PersistenceError(
            f"unsupported checkpointer {describe(url)!r}: use a SQLite path, sqlite:///PATH, postgresql://... or memory"
        )
    with _sqlite(Path(url.removeprefix("sqlite:///")), serde) as saver:
        yield saver


@contextmanager
def _sqlite(path: Path, serde: JsonPlusSerializer) -> Iterator[BaseCheckpointSaver]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False)
        saver = SqliteSaver(conn, serde=serde)
        saver.setup()
    except (OSError, sqlite3.Error) as exc:
        raise PersistenceError(f"cannot open SQLite checkpointer at {path}: {exc}") from exc
    try:
        yield saver
    finally:
        conn.close()


@contextmanager
def _postgres(url: str, serde: JsonPlusSerializer) -> Iterator[BaseCheckpointSaver]:
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool
    except ImportError as exc:
        raise PersistenceError(
            "PostgreSQL checkpointer needs the postgres extra: pip install 'sopgraph[postgres]'"
        ) from exc
    try:  # one direct attempt first: a bad URL fails at once with the server's own reason
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        raise PersistenceError(f"cannot connect to {describe(url)}: {' '.join(str(exc).split())[:200]}") from exc
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=8,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
    )
    try:
        pool.open(wait=True, timeout=30)
    except Exception as exc:
        raise PersistenceError(f"cannot open a connection pool to {describe(url)}: {exc}") from exc
    try:
        saver = PostgresSaver(pool, serde=serde)  # type: ignore[arg-type]
        saver.setup()
        yield saver
    finally:
        pool.close()
