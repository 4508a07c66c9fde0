"""A checkpoint store that fails mid-run: the run stops at that step with one line naming the last stored
checkpoint; PostgreSQL connections the server dropped are replaced on checkout, so the run goes on."""

from __future__ import annotations

import io
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from company_script import Company
from conftest import POSTGRES_URL
from rich.console import Console

from sopgraph.graphs import runner
from sopgraph.graphs.company import company_input
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.nodes.scripted import ScriptedRequest
from sopgraph.state.company import SystemDesign
from sopgraph.state.context import Context

pytestmark = pytest.mark.faults

QUIET = Console(file=io.StringIO())


class OnDesign(Company):
    """The scripted company, doing `fault()` when the architect is asked for the design."""

    def __init__(self, fault: Any) -> None:
        super().__init__()
        self.fault = fault

    def __call__(self, request: ScriptedRequest) -> Any:
        if request.schema is SystemDesign and self.fault is not None:
            fault, self.fault = self.fault, None
            fault()
        return super().__call__(request)


def _payload(tmp_path: Path) -> dict[str, Any]:
    return dict(company_input("a command-line calculator", out_dir=tmp_path / f"repo-{uuid.uuid4().hex[:6]}"))


def test_a_full_sqlite_file_stops_the_run_at_that_step(tmp_path: Path, scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    with open_checkpointer(str(tmp_path / "s.sqlite")) as saver:

        def disk_full() -> None:
            with saver.lock:  # type: ignore[attr-defined]
                pages = saver.conn.execute("PRAGMA page_count").fetchone()[0]  # type: ignore[attr-defined]
                saver.conn.execute(f"PRAGMA max_page_count = {pages}")  # type: ignore[attr-defined]

        model.script = script = OnDesign(disk_full)
        thread = f"full-{uuid.uuid4().hex[:8]}"
        with pytest.raises(runner.RunError) as info:
            runner.start_run("company", _payload(tmp_path), saver, Context(model=name), thread_id=thread, console=QUIET)
        message = str(info.value)
        assert "\n" not in message and "storing its checkpoint failed" in message and "full" in message
        head = saver.get_tuple(runner.run_config(thread))
        assert head is not None and f"last stored checkpoint {head.config['configurable']['checkpoint_id']}" in message
        assert f"sopgraph resume {thread}" in message
        assert [role for role, _ in script.calls][-1] == "architect"  # nothing ran after the failed step


def test_a_locked_sqlite_file_is_one_line_at_the_cli(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sopgraph.tools import persistence

    monkeypatch.setattr(persistence, "SQLITE_BUSY_S", 0.2)
    db = tmp_path / "locked.sqlite"
    with open_checkpointer(str(db)):
        pass
    blocker = sqlite3.connect(str(db))
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the file
    try:
        code, _, err = cli("demo", "a kettle", "--model", "scripted", "--db", str(db))
    finally:
        blocker.rollback()
        blocker.close()
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 1 and len(errors) == 1 and "database is locked" in errors[0], err
    assert "Traceback" not in err


def test_a_garbled_database_is_one_line_at_the_cli(tmp_path: Path, cli) -> None:
    db = tmp_path / "garbled.sqlite"
    db.write_bytes(os.urandom(8192))
    for args in (("runs",), ("history", "some-run"), ("demo", "a kettle", "--model", "scripted")):
        code, _, err = cli(*args, "--db", str(db))
        errors = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(errors) == 1 and "not a database" in errors[0], (args, err)


@pytest.mark.postgres
def test_postgres_backends_terminated_mid_run_are_replaced(tmp_path: Path, scripted) -> None:  # type: ignore[no-untyped-def]
    psycopg = pytest.importorskip("psycopg")
    from conftest import _postgres_or_skip

    url = _postgres_or_skip()
    name, model = scripted
    killed: list[int] = []

    def terminate() -> None:  # our pool's connections only: other test processes share the server
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (f"sopgraph:{os.getpid()}",),
            ).fetchall()
        killed.extend(1 for r in rows if r[0])

    with open_checkpointer(url) as saver:
        model.script = Company()
        clean = runner.start_run(
            "company", _payload(tmp_path), saver, Context(model=name), thread_id=f"pg-{uuid.uuid4()}", console=QUIET
        )
        clean_calls = model.calls
        model.script = OnDesign(terminate)
        thread = f"pg-cut-{uuid.uuid4().hex[:8]}"
        ctx = Context(model=name)
        outcome = runner.start_run("company", _payload(tmp_path), saver, ctx, thread_id=thread, console=QUIET)
    assert killed  # the pool's connections were cut mid-run
    assert outcome.status == "done"
    assert model.calls - clean_calls == clean_calls  # no call made twice
    assert len(outcome.values["usage"]) == len(clean.values["usage"])
