"""Files on disk are a function of the checkpoint: delivering, resuming, replaying and forking a company run
materialise exactly the repository of the checkpoint the run stands on, a replay or fork in its own folder."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import pytest
from company_script import GOOD_CALC, MAIN
from rich.console import Console

from sopgraph.graphs import runner
from sopgraph.graphs.company import company_input
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.nodes.llm import ModelError
from sopgraph.state.company import EXISTING_CODE, EXISTING_PRD, Delivery
from sopgraph.state.context import Context
from sopgraph.tools.workspace import Workspace

IDEA = "a command-line calculator"
QUIET = Console(file=io.StringIO())
DOCS = ["docs/design.md", "docs/prd.md", "docs/tasks.md"]
DELIVERED = sorted(
    [
        "README.md",
        "calc.py",
        "fmt.py",
        "main.py",
        *DOCS,
        "docs/sopgraph.json",
        "docs/test_report.md",
        "tests/test_calc.py",
        "tests/test_fmt.py",
    ]
)


def files(root: Path) -> dict[str, bytes]:
    """The repository's files and bytes, without sopgraph's hidden bookkeeping (.sopgraph/)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".sopgraph" not in p.parts and "__pycache__" not in p.parts
    }


def start(name: str, saver: Any, out_dir: Path) -> tuple[str, runner.RunOutcome]:
    thread = f"files-{uuid.uuid4().hex[:8]}"
    payload = dict(company_input(IDEA, out_dir=out_dir))
    outcome = runner.start_run("company", payload, saver, Context(model=name), thread_id=thread, console=QUIET)
    return thread, outcome


def checkpoint_before(saver: Any, thread: str, node: str) -> str:
    """The first checkpoint at which `node` is next."""
    snapshots = runner.history(saver, thread)  # newest first
    found = [s for s in snapshots if s.next == (node,)][-1]
    return str(found.config["configurable"]["checkpoint_id"])


def test_a_fork_before_the_engineer_gets_its_own_folder_with_exactly_that_checkpoints_files(
    company, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    original = tmp_path / "repo"
    with open_checkpointer(str(tmp_path / "state.sqlite")) as saver:
        thread, first = start(name, saver, original)
        assert sorted(files(original)) == DELIVERED
        before = files(original)
        checkpoint = checkpoint_before(saver, thread, "engineer")

        forked = runner.fork_run(saver, thread, checkpoint, {"max_debug": 1}, run=False, console=QUIET)
        (made,) = [p for p in tmp_path.iterdir() if p.name.startswith("repo-fork-")]
        assert sorted(files(made)) == DOCS  # no code, tests, README or manifest: the engineer has not run
        assert files(made)["docs/prd.md"] == before["docs/prd.md"]
        assert files(original) == before  # the original run's repository is untouched
        assert forked.status == "paused"

        script.always_buggy = True  # the fork's continuation writes other code than the original run
        outcome = runner.fork_run(saver, thread, checkpoint, {"max_debug": 1}, console=QUIET)
    (delivered,) = [m.payload for m in outcome.values["pool"] if isinstance(m.payload, Delivery)]
    assert delivered.outcome == "gave_up" and Path(delivered.out_dir).name.startswith("repo-fork-")
    assert Path(delivered.out_dir) != made  # each fork has a folder of its own
    assert sorted(files(Path(delivered.out_dir))) == DELIVERED
    assert files(Path(delivered.out_dir))["calc.py"] != GOOD_CALC.encode()
    assert files(original) == before


def test_a_replay_from_the_start_does_not_read_the_original_runs_manifest(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, _ = company
    original = tmp_path / "repo"
    with open_checkpointer(str(tmp_path / "state.sqlite")) as saver:
        thread, first = start(name, saver, original)
        before = files(original)
        checkpoint = checkpoint_before(saver, thread, "intake")
        replayed = runner.replay_run(saver, thread, checkpoint, console=QUIET)
    kinds = [m.kind for m in replayed.values["pool"]]
    assert EXISTING_PRD not in kinds and EXISTING_CODE not in kinds  # a new project again, not an update
    assert len(kinds) == len(first.values["pool"])
    (delivered,) = [m.payload for m in replayed.values["pool"] if isinstance(m.payload, Delivery)]
    assert not delivered.incremental and Path(delivered.out_dir).name.startswith("repo-replay-")
    timing = "docs/test_report.md"  # shows the test run's seconds
    replay_files = files(Path(delivered.out_dir))
    assert replay_files.pop(timing) and {k: v for k, v in before.items() if k != timing} == replay_files
    assert files(original) == before


def test_resume_restores_the_checkpoints_files_and_backs_up_a_users_edits(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.crash_on = "main.py"
    out_dir = tmp_path / "repo"
    with open_checkpointer(str(tmp_path / "state.sqlite")) as saver:
        with pytest.raises(ModelError):
            start(name, saver, out_dir)
        (thread,) = [r.thread_id for r in runner.list_runs(saver)]
        (out_dir / "stray.py").write_text("left by something else\n")
        (out_dir / "docs/prd.md").write_text("my own notes\n")
        outcome = runner.resume_run(saver, thread, console=QUIET)
    assert outcome.status == "done"
    assert sorted(files(out_dir)) == DELIVERED  # the stray file is gone from the repository...
    assert (out_dir / "main.py").read_text() == MAIN
    backups = {p.name: p.read_text() for p in (out_dir / ".sopgraph/backup").rglob("*") if p.is_file()}
    assert backups == {"stray.py": "left by something else\n", "prd.md": "my own notes\n"}  # ...but kept aside


def test_sync_writes_removes_and_keeps_what_it_did_not_write(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    first = ws.sync({"a.py": "A\n", "pkg/b.py": "B\n"})
    assert sorted(first.written) == ["a.py", "pkg/b.py"] and not first.removed
    again = ws.sync({"a.py": "A\n", "pkg/b.py": "B\n"})
    assert not again.written and not again.removed and not again.backed_up  # idempotent
    third = ws.sync({"a.py": "A2\n"})
    assert third.removed == ["pkg/b.py"] and not third.backed_up and not (tmp_path / "pkg").exists()
    (tmp_path / "a.py").write_text("edited by hand\n")
    fourth = ws.sync({"c.py": "C\n"})
    assert fourth.removed == ["a.py"] and len(fourth.backed_up) == 1
    assert (tmp_path / fourth.backed_up[0]).read_text() == "edited by hand\n"
    assert sorted(ws.files()) == ["c.py"]
