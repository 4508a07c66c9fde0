"""The HumanEval harness against the embedded model: replies parse into code that the sandbox can judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sopgraph.evals import humaneval
from sopgraph.evals.codegen import defines_function
from sopgraph.evals.harness import EvalSettings, run_eval

pytestmark = [pytest.mark.local_model, pytest.mark.timeout(1800)]


def test_two_humaneval_problems_end_to_end(local_model_name: str, tmp_path: Path) -> None:
    by_id = {p.task_id: p for p in humaneval.load_problems()}
    problems = [by_id["HumanEval/53"], by_id["HumanEval/23"]]  # add(x, y) and strlen(string): the easiest
    settings = EvalSettings(benchmark="humaneval", model=local_model_name, attempts=1, system=humaneval.SYSTEM)
    s = run_eval(problems, settings, tmp_path).summary
    assert s.scored == 2 and s.unscored == 0 and s.tokens_in > 0 and s.tokens_out > 0
    records = {r["task_id"]: r for r in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())}
    for problem in problems:
        assert defines_function(records[problem.task_id]["code_without_feedback"], problem.entry_point)
    print(f"\nlocal HumanEval/53+23: pass@1 {s.pass1_without_feedback} -> {s.pass1_with_feedback}, {s.item_seconds} s")


def test_the_qwen_prompt_style_completes_a_prefilled_fence(local_model_name: str, tmp_path: Path) -> None:
    from sopgraph.evals import prefill

    problem = humaneval.load_problems(style="qwen")[53]  # add(x, y)
    settings = EvalSettings(
        benchmark="humaneval", model=local_model_name, feedback=False, prompt_style="qwen", system=prefill.SYSTEM
    )
    s = run_eval([problem], settings, tmp_path).summary
    [record] = map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())
    assert s.scored == 1 and s.tokens_in > 50 and s.tokens_out > 0  # usage from the completions endpoint
    assert record["replies"][0].startswith("```python\n") and defines_function(record["code_without_feedback"], "add")
