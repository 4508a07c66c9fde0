"""Fault injection (marked `faults`; part of `make test`): the demo, the company and the group chat, on
SQLite and PostgreSQL, killed after every checkpoint (each node boundary) and resumed, end in the state of
an uninterrupted run without making any saved model call again; a real SIGKILL'd process resumes too.

The other faults of issue #15 have modules of their own, also marked: kills inside each parallel step
(test_resume_parallel), two resumes at once (test_lease), forks from every checkpoint (test_fork), store
failures and lost connections (test_store_failures).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from company_script import Company
from faults import DyingSaver, Killed
from groupchat_script import Playbook
from rich.console import Console
from test_groupchat import story
from test_resume_parallel import outcome_of

from sopgraph.graphs import runner
from sopgraph.graphs.company import company_input
from sopgraph.graphs.demo import demo_input
from sopgraph.graphs.groupchat import groupchat_input
from sopgraph.state.context import Context

pytestmark = pytest.mark.faults
QUIET = Console(file=io.StringIO())
GRAPHS = ["demo", "company", "groupchat"]


def _payload(graph: str, out_dir: Path) -> Any:
    if graph == "company":
        return dict(company_input("a command-line calculator", out_dir=out_dir))
    if graph == "groupchat":
        return groupchat_input(story(rounds=1, group_subrounds=1), ablate=["meeting"])
    return dict(demo_input("a kettle", max_revisions=1))


def _script(graph: str) -> Any:
    return {"company": Company, "groupchat": Playbook}.get(graph, lambda: None)()


def _repository(values: dict[str, Any]) -> dict[str, str]:
    root = Path(values["out_dir"])
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.py"))}


@pytest.mark.parametrize("graph", GRAPHS)
def test_kill_at_every_node_boundary_then_resume(checkpointer, scripted, tmp_path: Path, graph: str) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = _script(graph)
    clean_thread = f"clean-{uuid.uuid4().hex[:8]}"
    clean = runner.start_run(
        graph,
        _payload(graph, tmp_path / "clean"),
        checkpointer,
        Context(model=name),
        thread_id=clean_thread,
        console=QUIET,
    )
    assert clean.status == "done"
    checkpoints = len(runner.history(checkpointer, clean_thread))
    expected = outcome_of(clean.values)

    for stored in range(1, checkpoints):
        model.script = _script(graph)
        thread = f"kill-{stored}-{uuid.uuid4().hex[:6]}"
        dying = DyingSaver(checkpointer, after_puts=stored)
        with pytest.raises(Killed):
            runner.start_run(
                graph, _payload(graph, tmp_path / thread), dying, Context(model=name), thread_id=thread, console=QUIET
            )
        stopped = runner.compile_graph(graph, checkpointer).get_state(runner.run_config(thread))
        assert not runner.finished(stopped), stored
        kept = len(stopped.values.get("usage") or [])
        calls = model.calls
        resumed = runner.resume_run(checkpointer, thread, console=QUIET)
        assert resumed.status == "done", stored
        assert outcome_of(resumed.values) == expected, stored
        assert model.calls - calls == len(clean.values["usage"]) - kept, stored  # no saved call made again
        if graph == "company":
            assert _repository(resumed.values) == _repository(clean.values), stored


CHILD = textwrap.dedent(
    """
    import os, sys, threading
    sys.path.insert(0, {tests!r})
    from test_groupchat import story
    from sopgraph.graphs import runner
    from sopgraph.graphs.groupchat import groupchat_input
    from groupchat_script import Playbook
    from sopgraph.nodes.llm import register_model
    from sopgraph.nodes.scripted import ScriptedChatModel
    from sopgraph.state.context import Context
    from sopgraph.graphs.runner import open_checkpointer

    votes = []
    lock = threading.Lock()
    playbook = Playbook()
    cast = playbook._handlers["Vote"]

    def vote(request, character):
        with lock:
            votes.append(character)
            last = len(votes) == 16
        if last:  # the other fifteen votes have been cast; die without a word, as SIGKILL does
            threading.Timer(0.5, lambda: os.kill(os.getpid(), 9)).start()
            threading.Event().wait()
        return cast(request, character)

    playbook.on("Vote", vote)
    model = ScriptedChatModel()
    model.script = playbook
    register_model("scripted:child", model)
    with open_checkpointer({db!r}) as saver:
        payload = groupchat_input(story(rounds=1, group_subrounds=1), ablate=["meeting"])
        runner.start_run("groupchat", payload, saver, Context(model="scripted:child"), thread_id={thread!r})
    """
)


def test_a_process_killed_during_the_vote_resumes(checkpointer_url, scripted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A real SIGKILL while the sixteen parallel votes run: `sopgraph resume` casts only the missing one."""
    name, model = scripted
    thread = f"sigkill-{uuid.uuid4().hex[:8]}"
    code = CHILD.format(tests=str(Path(__file__).parent), db=checkpointer_url, thread=thread)
    env = {**os.environ, "SOPGRAPH_MODEL": "scripted"}
    child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr[-2000:]

    from sopgraph.graphs.runner import open_checkpointer

    with open_checkpointer(checkpointer_url) as saver:
        stopped = runner.compile_graph("groupchat", saver).get_state(runner.run_config(thread))
        assert not runner.finished(stopped) and {t.name for t in stopped.tasks} == {"vote"}
        saved = sum(1 for t in stopped.tasks if t.result)
        assert saved >= 1
        model.script = Playbook()
        resumed = runner.resume_run(saver, thread, overrides={"model": name}, console=QUIET)
    assert resumed.status == "done" and resumed.values["outcome"] is not None
    assert len(resumed.values["ballots"]) == 16
    assert len(model.script.of("Vote")) == 16 - saved  # only the votes that were not saved
