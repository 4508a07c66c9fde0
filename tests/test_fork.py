"""Fork from every checkpoint continues the "what if" to an end; `--set` values are checked against the state
schema before anything is written. SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from company_script import Company
from groupchat_script import Playbook
from rich.console import Console
from test_groupchat import story

from sopgraph.graphs import runner
from sopgraph.graphs.company import company_input
from sopgraph.graphs.groupchat import groupchat_input
from sopgraph.state.company import Delivery
from sopgraph.state.context import Context

pytestmark = pytest.mark.faults

QUIET = Console(file=io.StringIO())


def _ids(snaps: list[Any]) -> list[str]:
    return [s.config["configurable"]["checkpoint_id"] for s in snaps]


def _deliveries(values: dict[str, Any]) -> list[str]:
    return [m.payload.outcome for m in values["pool"] if isinstance(m.payload, Delivery)]


def test_fork_at_every_step_of_a_company_run_delivers(checkpointer, scripted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = Company()
    thread = f"fork-co-{uuid.uuid4().hex[:8]}"
    payload = dict(company_input("a command-line calculator", out_dir=tmp_path / "repo", max_debug=3))
    first = runner.start_run("company", payload, checkpointer, Context(model=name), thread_id=thread, console=QUIET)
    assert first.status == "done" and _deliveries(first.values) == ["passed"]
    snaps = runner.history(checkpointer, thread)
    assert len(snaps) > 15 and any(len(s.next) > 1 for s in snaps)  # Send fan-outs among them
    for snap in snaps:
        forked = runner.fork_run(
            checkpointer, thread, snap.config["configurable"]["checkpoint_id"], {"max_debug": 2}, console=QUIET
        )
        step = snap.metadata["step"]
        assert forked.status == "done", (step, snap.next)
        assert forked.values["max_debug"] == 2, step
        assert _deliveries(forked.values)[-1:] == ["passed"], (step, snap.next)  # ran on to a delivery


def test_fork_at_every_step_of_a_group_chat_round_settles(checkpointer, scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = Playbook()
    thread = f"fork-gc-{uuid.uuid4().hex[:8]}"
    payload = groupchat_input(story(rounds=1, group_subrounds=1), ablate=["meeting"])  # a shorter round
    first = runner.start_run("groupchat", payload, checkpointer, Context(model=name), thread_id=thread, console=QUIET)
    assert first.status == "done" and first.values["outcome"] is not None
    kinds = Counter(m.kind for m in first.values["pool"])
    snaps = runner.history(checkpointer, thread)
    assert any(len(s.next) > 1 for s in snaps)
    for snap in snaps[1:]:  # the head has nothing left to run
        edit = {"personas": {"ann": {"plan": "ask everyone about the river"}}}
        forked = runner.fork_run(
            checkpointer, thread, snap.config["configurable"]["checkpoint_id"], edit, console=QUIET
        )
        step = snap.metadata["step"]
        assert forked.status == "done" and forked.values["outcome"] is not None, (step, snap.next)
        assert Counter(m.kind for m in forked.values["pool"]) == kinds, (step, snap.next)
        assert len({m.id for m in forked.values["pool"]}) == len(forked.values["pool"])


def test_a_fork_without_running_keeps_the_pending_parallel_tasks(checkpointer, scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = Playbook()
    thread = f"fork-norun-{uuid.uuid4().hex[:8]}"
    payload = groupchat_input(story(rounds=1, group_subrounds=1))
    runner.start_run("groupchat", payload, checkpointer, Context(model=name), thread_id=thread, console=QUIET)
    votes = next(s for s in runner.history(checkpointer, thread) if s.next and set(s.next) == {"vote"})
    cp = votes.config["configurable"]["checkpoint_id"]
    made = runner.fork_run(checkpointer, thread, cp, {"personas": {"ben": {"plan": "vote for cal"}}}, run=False)
    assert made.status == "paused" and made.values["personas"]["ben"].plan == "vote for cal"
    head = runner.compile_graph("groupchat", checkpointer).get_state(runner.run_config(thread))
    assert head.next == votes.next  # sixteen votes still to cast
    done = runner.resume_run(checkpointer, thread, console=QUIET)
    assert done.status == "done" and len(done.values["ballots"]) == len(votes.next)


@pytest.mark.parametrize(
    ("graph", "edit", "message"),
    [
        ("company", {"max_debug": "abc"}, "cannot set max_debug: .*valid integer"),
        ("company", {"pool": [1, 2, 3]}, "cannot set pool"),
        ("company", {"review": "prd"}, "cannot set review: .*valid list"),
        (
            "groupchat",
            {"personas": {"ann": {"beliefs": {"Trust the mayor": "very"}}}},
            "cannot set personas: .*integer",
        ),
        ("groupchat", {"personas": {"zed": {"plan": 3}}}, "cannot set personas"),
        ("groupchat", {"round": [1]}, "cannot set round"),
        ("groupchat", {"nonsense": 1}, "cannot set nonsense: not in the groupchat state"),
    ],
)
def test_set_values_are_checked_before_anything_is_written(
    checkpointer, scripted, tmp_path, graph, edit, message
) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = Company() if graph == "company" else Playbook()
    payload: Any = (
        dict(company_input("a calculator", out_dir=tmp_path / "repo", max_debug=0, max_review_rounds=0))
        if graph == "company"
        else groupchat_input(story(rounds=1, group_subrounds=1))
    )
    thread = f"set-{uuid.uuid4().hex[:8]}"
    runner.start_run(graph, payload, checkpointer, Context(model=name), thread_id=thread, console=QUIET)
    before = _ids(runner.history(checkpointer, thread))
    with pytest.raises(runner.RunError, match=message) as info:
        runner.fork_run(checkpointer, thread, before[len(before) // 2], edit, console=QUIET)
    assert "\n" not in str(info.value)
    assert _ids(runner.history(checkpointer, thread)) == before  # nothing written


def test_cli_fork_with_a_wrong_type_is_one_line(tmp_path: Path, cli) -> None:
    db = str(tmp_path / "s.sqlite")
    code, _, err = cli("demo", "a kettle", "--model", "scripted", "--db", db)
    thread = re.search(r"run (demo-[0-9a-f]+)", err).group(1)  # type: ignore[union-attr]
    code, out, _ = cli("history", thread, "--db", db)
    cp = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out)[1]
    code, _, err = cli("fork", thread, "--checkpoint", cp, "--set", "max_revisions=abc", "--db", db)
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 1 and len(errors) == 1 and "cannot set max_revisions" in errors[0], err
