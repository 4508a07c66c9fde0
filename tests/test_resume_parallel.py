"""A run killed inside a parallel (Send) step resumes: it is not called finished, the workers whose writes
were saved are not run again, and it ends in the state of an uninterrupted run. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from company_script import Company
from faults import DyingSaver, Killed, branch_writes
from groupchat_script import Playbook
from test_groupchat import story

from sopgraph.graphs import runner
from sopgraph.graphs.company import company_input
from sopgraph.graphs.groupchat import groupchat_input
from sopgraph.state.company import CodeFile, Delivery
from sopgraph.state.context import Context

pytestmark = pytest.mark.faults

# (graph, fan-out worker, the node its workers join, tasks before the fan-out that continue to that node
# too, workers saved before the kill: mid-step or the whole step)
FAN_OUTS = [
    ("company", "write_code", "engineer", 1, 1),
    ("company", "write_code", "engineer", 1, 2),
    ("company", "write_test", "qa", 1, 1),
    ("company", "write_test", "qa", 1, 2),
    ("groupchat", "speak", "close_subround", 0, 2),
    ("groupchat", "speak", "close_subround", 0, 4),
    ("groupchat", "vote", "tally", 0, 8),
    ("groupchat", "vote", "tally", 0, 16),
]


def _payload(graph: str, out_dir: Path) -> Any:
    if graph == "company":
        return dict(company_input("a command-line calculator", out_dir=out_dir))
    return groupchat_input(story(rounds=1, group_subrounds=1))


def _script(graph: str) -> Any:
    return Company() if graph == "company" else Playbook()


def outcome_of(values: dict[str, Any]) -> Any:
    """What a run produced, independent of the order parallel workers finished in."""
    said = Counter((m.sender, m.kind, m.round, m.sub_round, m.content) for m in values["pool"])
    files = {m.payload.path: m.payload.content for m in values["pool"] if isinstance(m.payload, CodeFile)}
    delivered = [m.payload.outcome for m in values["pool"] if isinstance(m.payload, Delivery)]
    return said, files, delivered, values.get("outcome"), len(values["usage"])


@pytest.mark.parametrize(
    ("graph", "worker", "join", "before", "saved"), FAN_OUTS, ids=[f"{g}-{w}-{n}" for g, w, _, _, n in FAN_OUTS]
)
def test_kill_inside_a_parallel_step_then_resume(  # type: ignore[no-untyped-def]
    checkpointer, scripted, tmp_path, graph, worker, join, before, saved
) -> None:
    name, model = scripted
    model.script = _script(graph)
    clean = runner.start_run(
        graph, _payload(graph, tmp_path / "clean"), checkpointer, Context(model=name), thread_id=f"clean-{uuid.uuid4()}"
    )
    assert clean.status == "done"

    model.script = _script(graph)
    thread = f"killed-{uuid.uuid4().hex[:8]}"
    dying = DyingSaver(checkpointer, matches=branch_writes(join), after=before + saved)
    with pytest.raises(Killed):
        runner.start_run(graph, _payload(graph, tmp_path / "killed"), dying, Context(model=name), thread_id=thread)
    assert dying.seen == before + saved

    stopped = runner.compile_graph(graph, checkpointer).get_state(runner.run_config(thread))
    assert not runner.finished(stopped)
    assert sum(t.name == worker for t in stopped.tasks) >= saved
    kept = len(stopped.values["usage"])  # model calls whose results were saved

    calls = model.calls
    resumed = runner.resume_run(checkpointer, thread)
    assert resumed.status == "done"
    assert outcome_of(resumed.values) == outcome_of(clean.values)
    assert model.calls - calls == len(clean.values["usage"]) - kept  # no saved call was made again
    assert len({m.id for m in resumed.values["pool"]}) == len(resumed.values["pool"])
    with pytest.raises(runner.RunError, match="has finished"):
        runner.resume_run(checkpointer, thread)
