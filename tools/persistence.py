"""Checkpointers from one setting.

`SOPGRAPH_CHECKPOINTER` (or `--db` on the CLI) picks where runs are kept:

- a file path or `sqlite:///path`: a SQLite file (default `.sopgraph/state.sqlite`);
- `postgresql://…`: LangGraph's PostgresSaver (needs the `postgres` extra);
- `memory`: nothing kept after the process ends.

Every saver gets a serializer that may rebuild exactly the types its caller allows (`allowed`: (module, name)
pairs) and nothing else. The caller knows what its checkpoints hold: sopgraph's graphs open their
checkpointers through `sopgraph.graphs.runner.open_checkpointer`, which allows `sopgraph.state.checkpoint_types()`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

DEFAULT_SQLITE = Path(".sopgraph") / "state.sqlite"
SQLITE_BUSY_S = 30.0
"""How long a write waits for another writer of the same SQLite file before it fails."""


class PersistenceError(RuntimeError):
    """The checkpointer setting is wrong or its store is unreachable (one line, for the user)."""


class LeaseHeld(PersistenceError):
    """Another live process executes the run."""


SETUP_LOCK = 0x736F7067726170
"""The PostgreSQL advisory lock held while the tables are created: LangGraph's `setup()` run by two processes
at once on a fresh database fails on its migrations table (CLI runs or server workers starting together).
Taken by polling SETUP_TRY: a session waiting on the lock holds a snapshot, and setup's CREATE INDEX CONCURRENTLY
waits for every snapshot to go, a cycle PostgreSQL does not detect."""
SETUP_TRY = "SELECT pg_try_advisory_lock(%s) AS locked"


def checkpointer_url(setting: str | None = None) -> str:
    return setting or os.environ.get("SOPGRAPH_CHECKPOINTER") or str(DEFAULT_SQLITE)


def serializer(allowed: Iterable[tuple[str, str]]) -> JsonPlusSerializer:
    """A serializer that revives exactly the `allowed` (module, name) types from a checkpoint."""
    return JsonPlusSerializer(allowed_msgpack_modules=tuple(sorted(allowed)))


def describe(url: str) -> str:
    """The setting with any password hidden (in the user part or as a `password=` parameter), for messages."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    rest, sep, query = rest.partition("?")
    if "@" in rest:
        creds, host = rest.rsplit("@", 1)
        user, colon, _ = creds.partition(":")
        rest = f"{user}:***@{host}" if colon else rest
    if sep:
        params = [p.split("=", 1) for p in query.split("&")]
        query = "&".join(f"{p[0]}=***" if p[0].lower() == "password" and len(p) == 2 else "=".join(p) for p in params)
    return f"{scheme}://{rest}{sep}{query}"


@contextmanager
def open_checkpointer(
    setting: str | None = None, *, allowed: Iterable[tuple[str, str]]
) -> Iterator[BaseCheckpointSaver]:
    """Open the checkpointer a setting names, reviving the `allowed` types; PersistenceError with one clear
    line when it can't."""
    url = checkpointer_url(setting)
    serde = serializer(allowed)
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
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=SQLITE_BUSY_S)
        saver = SqliteSaver(conn, serde=serde)
        saver.setup()
        leases = SqliteLeases(path)
        leases.setup()
    except (OSError, sqlite3.Error) as exc:
        raise PersistenceError(f"cannot open SQLite checkpointer at {path}: {exc}") from exc
    _STORES[saver] = leases
    try:
        yield saver
    finally:
        leases.close()
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
        kwargs={
            "autocommit": True,
            "prepare_threshold": 0,
            "row_factory": dict_row,
            "application_name": f"sopgraph:{os.getpid()}",
        },
        check=ConnectionPool.check_connection,  # a connection the server dropped is replaced on checkout
        open=False,
    )
    try:
        pool.open(wait=True, timeout=30)
    except Exception as exc:
        raise PersistenceError(f"cannot open a connection pool to {describe(url)}: {exc}") from exc
    try:
        saver = PostgresSaver(pool, serde=serde)  # type: ignore[arg-type]
        leases = PostgresLeases(pool)
        with pool.connection() as lock:
            while True:
                row: Any = lock.execute(SETUP_TRY, (SETUP_LOCK,)).fetchone()
                if row and row["locked"]:
                    break
                time.sleep(0.1)
            try:
                saver.setup()
                leases.setup()
            finally:
                lock.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
        _STORES[saver] = leases
        yield saver
    finally:
        pool.close()


# -- one live executor per run: a lease in the checkpointer's database ----------------------------------------

LEASE_TTL_S = 30.0
"""A holder renews its lease every third of this; a holder that stops renewing (killed, frozen, cut off)
loses it after this long. A holder on this host whose process is gone loses it at once."""
_HOST = socket.gethostname()


@dataclasses.dataclass(frozen=True)
class Holder:
    owner: str
    pid: int
    host: str
    since: float
    expires: float

    def describe(self) -> str:
        since = time.strftime("%H:%M:%S", time.gmtime(self.since))
        return f"pid {self.pid} on {self.host} (since {since} UTC)"

    def gone(self, now: float) -> bool:
        """Expired, or a process of this host that no longer exists."""
        if self.expires < now:
            return True
        if self.host != _HOST:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


class LeaseStore:
    """Leases as rows of one table (SQLite and PostgreSQL share the SQL; `param` is their placeholder)."""

    param = "?"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text.replace("?", self.param)

    def setup(self) -> None:
        with self._cursor() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS sopgraph_leases (thread_id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                "pid INTEGER NOT NULL, host TEXT NOT NULL, since DOUBLE PRECISION NOT NULL, "
                "expires DOUBLE PRECISION NOT NULL)"
            )

    def holder(self, thread_id: str) -> Holder | None:
        with self._cursor() as cur:
            cur.execute(
                self._sql("SELECT owner, pid, host, since, expires FROM sopgraph_leases WHERE thread_id = ?"),
                (thread_id,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        values = tuple(row.values()) if isinstance(row, dict) else tuple(row)
        return Holder(str(values[0]), int(values[1]), str(values[2]), float(values[3]), float(values[4]))

    def try_acquire(self, thread_id: str, me: Holder) -> Holder | None:
        """Take the lease; None on success, else the live holder. A row is only replaced by compare-and-set on
        its owner, so two takers of an expired lease cannot both win."""
        for _ in range(5):
            current = self.holder(thread_id)
            with self._cursor() as cur:
                if current is None:
                    cur.execute(
                        self._sql(
                            "INSERT INTO sopgraph_leases (thread_id, owner, pid, host, since, expires) "
                            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (thread_id) DO NOTHING"
                        ),
                        (thread_id, me.owner, me.pid, me.host, me.since, me.expires),
                    )
                elif current.owner == me.owner or current.gone(time.time()):
                    cur.execute(
                        self._sql(
                            "UPDATE sopgraph_leases SET owner = ?, pid = ?, host = ?, since = ?, expires = ? "
                            "WHERE thread_id = ? AND owner = ?"
                        ),
                        (me.owner, me.pid, me.host, me.since, me.expires, thread_id, current.owner),
                    )
                else:
                    return current
                if cur.rowcount == 1:
                    return None
        current = self.holder(thread_id)
        return current if current is not None and current.owner != me.owner else None

    def renew(self, thread_id: str, owner: str, expires: float) -> bool:
        with self._cursor() as cur:
            cur.execute(
                self._sql("UPDATE sopgraph_leases SET expires = ? WHERE thread_id = ? AND owner = ?"),
                (expires, thread_id, owner),
            )
            return bool(cur.rowcount == 1)

    def release(self, thread_id: str, owner: str) -> None:
        with self._cursor() as cur:
            cur.execute(self._sql("DELETE FROM sopgraph_leases WHERE thread_id = ? AND owner = ?"), (thread_id, owner))


class SqliteLeases(LeaseStore):
    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=SQLITE_BUSY_S)

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                yield cur
            finally:
                cur.close()

    def close(self) -> None:
        self._conn.close()


class PostgresLeases(LeaseStore):
    param = "%s"

    def __init__(self, pool: Any) -> None:
        super().__init__()
        self._pool = pool

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self._pool.connection() as conn, conn.cursor() as cur:
            yield cur


class MemoryLeases(SqliteLeases):
    """For the memory checkpointer (and savers handed in by a caller): leases within this process."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.setup()


_STORES: weakref.WeakKeyDictionary[Any, LeaseStore] = weakref.WeakKeyDictionary()
_PROCESS_LEASES = MemoryLeases()


def lease_store(saver: Any) -> LeaseStore:
    """The lease table beside a saver's checkpoints (savers opened elsewhere share one in this process)."""
    return _STORES.get(saver) or _PROCESS_LEASES


@dataclasses.dataclass
class Lease:
    thread_id: str
    holder: Holder
    lost: threading.Event = dataclasses.field(default_factory=threading.Event)
    """Set when a renewal found the lease taken by another process (this one stalled past the TTL)."""


@contextmanager
def run_lease(
    saver: Any,
    thread_id: str,
    *,
    wait: bool = False,
    ttl: float = LEASE_TTL_S,
    poll_s: float = 1.0,
    on_wait: Callable[[Holder], None] | None = None,
) -> Iterator[Lease]:
    """Hold the run's lease while the block runs: LeaseHeld (one line, naming the holder) when another live
    process holds it, unless `wait`, which polls until it is free."""
    store = lease_store(saver)
    now = time.time()
    me = Holder(uuid.uuid4().hex, os.getpid(), _HOST, now, now + ttl)
    told = False
    while (current := _acquire(store, thread_id, me)) is not None:
        if not wait:
            raise LeaseHeld(
                f"run {thread_id!r} is being executed by {current.describe()}; wait for it with --wait, "
                f"or stop that process (a stopped holder's lease lapses within {round(ttl)}s)"
            )
        if on_wait is not None and not told:
            on_wait(current)
            told = True
        time.sleep(poll_s)
        now = time.time()
        me = dataclasses.replace(me, since=now, expires=now + ttl)
    lease = Lease(thread_id, me)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(store, lease, ttl, stop), name="sopgraph-lease", daemon=True)
    renewer.start()
    try:
        yield lease
    finally:
        stop.set()
        renewer.join()
        try:
            store.release(thread_id, me.owner)
        except Exception:  # the store is gone (e.g. the database died): the lease expires on its own
            pass


def _acquire(store: LeaseStore, thread_id: str, me: Holder) -> Holder | None:
    try:
        return store.try_acquire(thread_id, me)
    except (sqlite3.Error, OSError) as exc:
        raise PersistenceError(f"cannot take the lease of run {thread_id!r}: {' '.join(str(exc).split())}") from exc
    except Exception as exc:
        if type(exc).__module__.startswith(("psycopg", "psycopg_pool")):
            raise PersistenceError(f"cannot take the lease of run {thread_id!r}: {' '.join(str(exc).split())}") from exc
        raise


def _renew(store: LeaseStore, lease: Lease, ttl: float, stop: threading.Event) -> None:
    while not stop.wait(ttl / 3):
        try:
            if not store.renew(lease.thread_id, lease.holder.owner, time.time() + ttl):
                lease.lost.set()
                return
        except Exception:  # a passing failure (locked file, reconnect): the next renewal tries again
            continue


# -- failures of the store itself ---------------------------------------------------------------------------


def store_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the checkpoint store failed (locked, full, garbled, connection lost)."""
    errors: list[type[BaseException]] = [sqlite3.Error]
    try:
        import psycopg
        import psycopg_pool

        errors += [psycopg.Error, psycopg_pool.PoolTimeout]
    except ImportError:
        pass
    return tuple(errors)


def store_error_line(exc: BaseException) -> str:
    """The store's own reason, on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
