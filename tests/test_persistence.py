"""The same graph against SQLite and the real PostgreSQL: checkpoints, crash and resume, bad settings."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from sopgraph.graphs import runner
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.nodes.llm import ModelError
from sopgraph.state import checkpoint_types
from sopgraph.state.context import Context
from sopgraph.state.demo import Pitch
from sopgraph.tools import persistence
from sopgraph.tools.persistence import PersistenceError


def test_crash_then_resume_repeats_no_completed_node(checkpointer, scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.fail_calls = frozenset({1})  # the first critic call fails like a provider outage
    thread = f"crash-{uuid.uuid4().hex[:8]}"
    ctx = Context(model=name)
    with pytest.raises(ModelError, match="scripted fault"):
        runner.start_run("demo", {"idea": "a kettle", "max_revisions": 0}, checkpointer, ctx, thread_id=thread)
    graph = runner.compile_graph("demo", checkpointer)
    snapshot = graph.get_state(runner.run_config(thread))
    assert snapshot.next == ("critic",)
    kept = snapshot.values["pool"]
    assert [m.kind for m in kept] == ["pitch"] and isinstance(kept[0].payload, Pitch)

    writer_requests = sum(1 for r in model.requests if r.schema is Pitch)
    outcome = runner.resume_run(checkpointer, thread)
    assert outcome.status == "done" and outcome.values["outcome"] in {"approved", "gave up"}
    assert sum(1 for r in model.requests if r.schema is Pitch) == writer_requests  # writer not run again
    assert [m.kind for m in outcome.values["pool"]][:2] == ["pitch", "review"]
    assert outcome.values["pool"][0].id == kept[0].id
    assert [r.role for r in outcome.values["usage"]][:2] == ["writer", "critic"]


def test_runs_are_listed_with_their_graph(checkpointer, scripted) -> None:  # type: ignore[no-untyped-def]
    name, _ = scripted
    thread = f"listed-{uuid.uuid4().hex[:8]}"
    runner.start_run("demo", {"idea": "x", "max_revisions": 0}, checkpointer, Context(model=name), thread_id=thread)
    infos = {i.thread_id: i for i in runner.list_runs(checkpointer)}
    assert infos[thread].graph == "demo" and infos[thread].checkpoints >= 4
    graph_name, ctx = runner.run_metadata(checkpointer, thread)
    assert graph_name == "demo" and ctx.model == name


def test_fork_changes_the_continuation(checkpointer, scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    from sopgraph.state.demo import Review

    model.script = lambda r: Review(verdict="revise", score=3, comments="no") if r.schema is Review else None
    thread = f"fork-{uuid.uuid4().hex[:8]}"
    first = runner.start_run(
        "demo", {"idea": "x", "max_revisions": 0}, checkpointer, Context(model=name), thread_id=thread
    )
    assert len(first.values["pool"]) == 2
    snaps = runner.history(checkpointer, thread)
    before_writer = next(s for s in snaps if s.next == ("writer",))
    cp = before_writer.config["configurable"]["checkpoint_id"]
    forked = runner.fork_run(checkpointer, thread, cp, {"max_revisions": 2})
    assert forked.values["max_revisions"] == 2
    assert [m.kind for m in forked.values["pool"]] == ["pitch", "review"] * 3
    with pytest.raises(runner.RunError, match="not in the demo state"):
        runner.fork_run(checkpointer, thread, cp, {"nonsense": 1})


def test_replay_reexecutes_after_the_checkpoint(checkpointer, scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    thread = f"replay-{uuid.uuid4().hex[:8]}"
    runner.start_run("demo", {"idea": "x", "max_revisions": 0}, checkpointer, Context(model=name), thread_id=thread)
    snaps = runner.history(checkpointer, thread)
    before_critic = next(s for s in snaps if s.next == ("critic",))
    calls = model.calls
    replayed = runner.replay_run(checkpointer, thread, before_critic.config["configurable"]["checkpoint_id"])
    assert replayed.status == "done"
    assert model.calls > calls and all(r.schema is not Pitch for r in model.requests[calls:])
    with pytest.raises(runner.RunError, match="no checkpoint"):
        runner.replay_run(checkpointer, thread, "1f000000-0000-6000-8000-000000000000")


def test_unknown_run_is_a_clear_error(checkpointer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(runner.RunError, match="no run 'does-not-exist'"):
        runner.resume_run(checkpointer, "does-not-exist")


def test_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(PersistenceError, match="unsupported checkpointer 'mysql://u:\\*\\*\\*@h/db'"):
        with open_checkpointer("mysql://u:secret@h/db"):
            pass
    with pytest.raises(PersistenceError, match="cannot connect to postgresql://nobody@127.0.0.1:1/x") as info:
        with open_checkpointer("postgresql://nobody@127.0.0.1:1/x"):
            pass
    assert "\n" not in str(info.value)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PersistenceError, match="cannot open SQLite checkpointer"):
        with open_checkpointer(str(blocker / "state.sqlite")):
            pass


def test_memory_checkpointer_and_allowlist() -> None:
    with open_checkpointer("memory") as saver:
        outcome = runner.start_run("demo", {"idea": "x", "max_revisions": 0}, saver, Context(model="scripted"))
        assert outcome.status == "done"
    allowed = checkpoint_types()
    assert ("sopgraph.state.pool", "Message") in allowed and ("sopgraph.state.demo", "Pitch") in allowed
    assert ("sopgraph.state.usage", "UsageRecord") in allowed


def test_no_unregistered_type_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with open_checkpointer(str(tmp_path / "s.sqlite")) as saver:
        outcome = runner.start_run("demo", {"idea": "x", "max_revisions": 0}, saver, Context(model="scripted"))
        runner.history(saver, outcome.thread_id)
    assert not [r for r in caplog.records if "unregistered type" in r.getMessage()]


def test_the_caller_hands_in_what_a_checkpoint_may_revive(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """tools.persistence knows no graph's state: with an allow-list that leaves out the state types, reading the
    same run back blocks them (the runner's checkpointer, above, allows them all)."""
    with pytest.raises(TypeError):
        persistence.open_checkpointer("memory")  # no default list to fall back on
    with open_checkpointer(str(tmp_path / "s.sqlite")) as saver:
        thread = runner.start_run("demo", {"idea": "x", "max_revisions": 0}, saver, Context(model="scripted")).thread_id
    with persistence.open_checkpointer(str(tmp_path / "s.sqlite"), allowed=[]) as saver:
        runner.history(saver, thread)
    blocked = " ".join(r.getMessage() for r in caplog.records if "not in allowed_msgpack_modules" in r.getMessage())
    assert "sopgraph.state.usage.UsageRecord" in blocked
