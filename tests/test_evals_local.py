"""The HumanEval harness against the embedded model: replies parse into code that the sandbox can judge."""

from __future__ import annotations

from pathlib import Path

import pytest

from sopgraph.evals import humaneval
from sopgraph.evals.codegen import defines_function
from sopgraph.evals.harness import EvalSettings, run_eval

pytestmark = [pytest.mark.local_model, pytest.mark.timeout(1800)]


@pytest.fixture
def local(local_model_name: str) -> str:
    return local_model_name


def test_two_humaneval_problems_end_to_end(local: str, tmp_path: Path) -> None:
    by_id = {p.task_id: p for p in humaneval.load_problems()}
    problems = [by_id["HumanEval/53"], by_id["HumanEval/23"]]  # add(x, y) and strlen(string): the easiest
    settings = EvalSettings(benchmark="humaneval", model=local, attempts=1, system=humaneval.SYSTEM)
    outcome = run_eval(problems, settings, tmp_path)
    s = outcome.summary
    assert s.scored == 2 and s.unscored == 0 and s.tokens_in > 0 and s.tokens_out > 0
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2
    for problem in problems:
        assert defines_function(outcome_code(tmp_path, problem.task_id), problem.entry_point)
    print(f"\nlocal HumanEval/53+23: pass@1 {s.pass1_without_feedback} -> {s.pass1_with_feedback}, {s.item_seconds} s")


def outcome_code(out: Path, task_id: str) -> str:
    import json

    for line in (out / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["task_id"] == task_id:
            return str(record["code_without_feedback"])
    raise AssertionError(task_id)
