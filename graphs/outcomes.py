"""How a run ended, for people and for scripts: one word, a distinct exit code, and a JSON summary.

| result     | exit code | meaning                                                                    |
|------------|-----------|----------------------------------------------------------------------------|
| done       | 0         | the run finished (company: tests pass, or there were none to run)          |
| error      | 1         | the command failed (bad setting, unreachable model or database...)         |
| usage      | 2         | bad command-line usage or option                                           |
| gave up    | 3         | the run finished without success (company: tests still failing)            |
| paused     | 4         | the run waits: for an answer (human review) or a larger budget             |
| interrupted| 130       | Ctrl-C stopped it; the closing line names the `sopgraph resume` command    |
| incomplete | 1         | (evals only) some items could not be scored: the same command retries them |
| running    | -         | (in `runs` only) a live process executes it (it holds the run's lease)     |
| stopped    | -         | (in `runs` only) not finished, not waiting, nobody running it: resume it   |
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel

from sopgraph.graphs import runner
from sopgraph.graphs.registry import GRAPHS
from sopgraph.state.usage import UsageTotals
from sopgraph.tools.persistence import lease_store

DONE, GAVE_UP, PAUSED, STOPPED, RUNNING = "done", "gave up", "paused", "stopped", "running"
INCOMPLETE = "incomplete"
EXIT_CODES = {DONE: 0, GAVE_UP: 3, PAUSED: 4, STOPPED: 1, RUNNING: 1, INCOMPLETE: 1}
ERROR_EXIT, USAGE_EXIT = 1, 2
INTERRUPTED_EXIT = 130
"""Ctrl-C (128 + SIGINT, as shells report it): runs and evals alike."""


def result_of(status: str, values: dict[str, Any]) -> str:
    """`status` is the runner's (done / paused); a finished run whose outcome says it gave up gave up."""
    if status != "done":
        return PAUSED
    outcome = values.get("outcome")
    return GAVE_UP if isinstance(outcome, str) and outcome.startswith("gave up") else DONE


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def usage_of(values: dict[str, Any]) -> dict[str, Any]:
    totals = UsageTotals.of(values.get("usage") or [])
    return {
        "calls": totals.calls,
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
        "cost_usd": round(totals.cost_usd, 6),
    }


def summary(graph: str, outcome: runner.RunOutcome, **extra: Any) -> dict[str, Any]:
    """What a script needs to know of a run that just ran (or paused)."""
    result = result_of(outcome.status, outcome.values)
    return {
        "run": outcome.thread_id,
        "graph": graph,
        "result": result,
        "exit_code": EXIT_CODES[result],
        "outcome": jsonable(outcome.values.get("outcome")),
        "seconds": round(outcome.seconds, 3),
        "usage": usage_of(outcome.values),
        "interrupts": jsonable(outcome.interrupts),
        "checkpoint": outcome.checkpoint_id,
        **{k: jsonable(v) for k, v in extra.items()},
    }


def dumps(data: Any) -> str:
    return json.dumps(jsonable(data), indent=2, ensure_ascii=False)


@dataclass
class RunStatus:
    """A row of `sopgraph runs`."""

    run: str
    graph: str
    result: str
    outcome: str
    started: str
    updated: str
    checkpoints: int
    step: int
    tokens: int


def _outcome_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    text = getattr(value, "explanation", None)  # a group chat's settlement
    return str(text if text is not None else jsonable(value))


def statuses(saver: BaseCheckpointSaver) -> list[RunStatus]:
    """Every run with where it stands (read from its head checkpoint), newest first."""
    graphs: dict[str, Any] = {}
    rows: list[RunStatus] = []
    for info in runner.list_runs(saver):
        result, outcome, tokens = "?", "", 0
        if info.graph in GRAPHS:
            graph = graphs.get(info.graph) or graphs.setdefault(info.graph, runner.compile_graph(info.graph, saver))
            snapshot = graph.get_state(runner.run_config(info.thread_id))
            values = dict(snapshot.values)
            if runner.finished(snapshot):
                result = result_of("done", values)
            elif any(t.interrupts for t in snapshot.tasks):
                result = PAUSED
            else:  # not finished, not waiting: live if a process holds its lease, else crashed or killed
                holder = lease_store(saver).holder(info.thread_id)
                result = RUNNING if holder is not None and not holder.gone(time.time()) else STOPPED
            outcome = _outcome_text(values.get("outcome"))
            tokens = UsageTotals.of(values.get("usage") or []).total_tokens
        rows.append(
            RunStatus(
                run=info.thread_id,
                graph=info.graph,
                result=result,
                outcome=" ".join(outcome.split())[:80],
                started=info.started,
                updated=info.updated,
                checkpoints=info.checkpoints,
                step=info.last_step,
                tokens=tokens,
            )
        )
    return rows
