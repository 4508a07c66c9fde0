"""The pass@1 harness end to end on the scripted model: feedback, hostile code, resuming, the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from sopgraph.evals import humaneval
from sopgraph.evals.codegen import Problem
from sopgraph.evals.harness import (
    EvalAborted,
    EvalSettings,
    ItemResult,
    ResultsFile,
    SettingsMismatch,
    run_eval,
    select_problems,
)
from sopgraph.nodes.scripted import ScriptedChatModel, ScriptedFault, ScriptedRequest, count_tokens
from sopgraph.tools.sandbox import SandboxLimits

Scripted = tuple[str, ScriptedChatModel]
LIMITS = SandboxLimits(wall_s=10, cpu_s=10)


def task_of(request: ScriptedRequest) -> str:
    """The task name in the first user message ("TASK name: ...")."""
    first = next(str(m.content) for m in request.messages if isinstance(m, HumanMessage))
    return first.split("TASK ", 1)[1].split(":", 1)[0]


def is_fix_request(request: ScriptedRequest) -> bool:
    return request.last.startswith("Your code failed")


def fenced(code: str) -> str:
    return f"Here you go:\n```python\n{code}```\n"


def problem(name: str, visible: str, hidden: str) -> Problem:
    return Problem(
        task_id=f"toy/{name}",
        prompt=f"TASK {name}: write the function {name}.",
        entry_point=name,
        hidden_tests=hidden,
        visible_tests=(visible,),
    )


ADD = problem("add", "assert add(1, 2) == 3", "assert add(1, 2) == 3\nassert add(-1, 1) == 0")
DOUBLE = problem("double", "assert double(3) == 6", "assert double(3) == 6\nassert double(0) == 0")
NEG = problem("neg", "assert neg(2) == -2", "assert neg(2) == -2\nassert neg(0) == 0")

ANSWERS = {
    "add": ("def add(a, b):\n    return a + b\n", None),  # right at once
    "double": ("def double(x):\n    return x + 2\n", "def double(x):\n    return 2 * x\n"),  # wrong, then fixed
    "neg": ("def neg(x):\n    return x\n", "def neg(x):\n    return abs(x) + {n}\n"),  # a new wrong fix each time
}


def toy_script(request: ScriptedRequest) -> str:
    first, fix = ANSWERS[task_of(request)]
    if not (is_fix_request(request) and fix):
        return fenced(first)
    return fenced(fix.format(n=len(request.messages[-2].content)))  # differs from the answer being fixed


def settings_for(model: str, **kwargs: object) -> EvalSettings:
    base: dict[str, object] = {"benchmark": "toy", "model": model, "limits": LIMITS, "system": "Write Python."}
    return EvalSettings(**{**base, **kwargs})  # type: ignore[arg-type]


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_feedback_fixes_what_it_can_and_both_pass_rates_come_from_one_run(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    model.script = toy_script
    outcome = run_eval([ADD, DOUBLE, NEG], settings_for(name, attempts=3, strategy="greedy-repair"), tmp_path)
    s = outcome.summary
    assert (s.scored, s.passed_without_feedback, s.passed_with_feedback) == (3, 1, 2)
    assert s.pass1_without_feedback == pytest.approx(1 / 3) and s.pass1_with_feedback == pytest.approx(2 / 3)
    assert (s.fixed_by_feedback, s.broken_by_feedback, s.fix_requests) == (1, 0, 3)
    by_task = {r["task_id"]: r for r in lines(tmp_path / "results.jsonl")}
    assert by_task["toy/add"]["attempts_used"] == 0 and by_task["toy/add"]["passed_with_feedback"] is True
    assert by_task["toy/add"]["attempt_passed"] == 0 and by_task["toy/add"]["strategy"] == "greedy-repair"
    assert by_task["toy/double"]["attempts_used"] == 1 and by_task["toy/double"]["generations"] == 2
    assert by_task["toy/double"]["passed_without_feedback"] is False
    assert by_task["toy/double"]["passed_with_feedback"] is True and by_task["toy/double"]["attempt_passed"] == 1
    # neg: the fix passes no more visible tests than the first answer, so the first stays the incumbent; the
    # next greedy request is then the same conversation, returns the same fix, and the loop stops.
    neg = by_task["toy/neg"]
    assert neg["attempts_used"] == 2 and neg["fix_repeated"] is True and neg["passed_with_feedback"] is False
    assert neg["attempt_passed"] is None and neg["code_with_feedback"] == neg["code_without_feedback"]
    for record in by_task.values():
        assert record["scored"] and record["error"] is None
        assert record["tokens_in"] > 0 and record["tokens_out"] > 0 and record["seconds"] > 0
    # 1 + 2 + 3 generations; every fix request carries the concrete failure, and the system prompt is kept.
    assert model.calls == 6
    fixes = [r for r in model.requests if is_fix_request(r)]
    assert len(fixes) == 3 and all(r.system == "Write Python." for r in model.requests)
    assert "double(3) == 6" in fixes[0].last and "returned 5, expected 6" in fixes[0].last
    assert "```python" in fixes[0].messages[-2].content  # the model sees its own previous answer
    report = (tmp_path / "summary.md").read_text()
    assert "| without feedback | 33.3% | 1 / 3 |" in report and "66.7% | 2 / 3 |" in report
    assert json.loads((tmp_path / "summary.json").read_text())["passed_with_feedback"] == 2


def test_a_fix_that_repeats_the_answer_ends_the_loop_at_temperature_0(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    model.script = lambda r: fenced("def neg(x):\n    return x\n")
    run_eval([NEG], settings_for(name, attempts=3, strategy="greedy-repair"), tmp_path)
    [record] = lines(tmp_path / "results.jsonl")
    # The second request would be the very conversation of the first: greedy decoding cannot change its answer.
    assert model.calls == 2 and record["attempts_used"] == 1 and record["fix_repeated"] is True
    assert record["generations"] == 2 and len(record["replies"]) == 2


def test_fixes_may_be_sampled_at_their_own_temperature(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    model.script = toy_script
    run_eval([DOUBLE], settings_for(name, fix_temperature=0.7, strategy="mixed"), tmp_path)
    [record] = lines(tmp_path / "results.jsonl")
    # One round of 4: two fix requests (the fix passes), two fresh samples (the same wrong first answer again:
    # repeats, not judged). Every call is counted.
    assert record["passed_with_feedback"] is True and record["model_calls"] == 5 and record["attempt_passed"] == 1
    drawn = record["by_strategy"]["mixed"]["drawn"]
    assert [(d["fresh"], d["repeat"]) for d in drawn] == [(False, False), (False, True), (True, True), (True, True)]
    assert json.loads((tmp_path / "run.json").read_text())["strategies"][0]["temperature"] == 0.7


def test_a_reply_that_only_repeats_the_stub_is_told_so(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    stub = 'def neg(x):\n    """Return -x."""\n'
    model.script = lambda r: fenced(stub if not is_fix_request(r) else stub + "    return -x\n")
    s = run_eval([NEG], settings_for(name, attempts=1, strategy="repair-sample", k=1), tmp_path).summary
    assert "`neg` has no body" in model.requests[1].last
    assert (s.passed_without_feedback, s.passed_with_feedback) == (0, 1)


def test_the_default_strategy_resamples_the_original_prompt(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    model.script = toy_script
    run_eval([DOUBLE], settings_for(name), tmp_path)
    [record] = lines(tmp_path / "results.jsonl")
    # The default (resample) never shows the failure: 4 fresh samples per round, identical to the wrong first
    # answer here, so they are repeats, are not judged, and do not end the loop: both rounds are drawn.
    assert record["strategy"] == "resample" and record["passed_with_feedback"] is False
    assert record["attempts_used"] == 2 and model.calls == 1 + 8 and not any(is_fix_request(r) for r in model.requests)
    assert all(d["repeat"] and d["fresh"] for d in record["by_strategy"]["resample"]["drawn"])


def test_without_feedback_one_generation_each(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    model.script = toy_script
    s = run_eval([ADD, DOUBLE, NEG], settings_for(name, feedback=False), tmp_path).summary
    assert model.calls == 3 and s.pass1_without_feedback == pytest.approx(1 / 3) and s.pass1_with_feedback is None
    assert all(r["passed_with_feedback"] is None for r in lines(tmp_path / "results.jsonl"))


def test_an_infinite_loop_is_contained_and_scored_as_a_fail_with_its_limit(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    spin = problem("spin", "assert spin(1) == 1", "assert spin(1) == 1")
    model.script = lambda r: fenced("def spin(x):\n    while True:\n        pass\n")
    settings = settings_for(name, attempts=1, strategy="mixed", limits=SandboxLimits(wall_s=1.5, cpu_s=10))
    s = run_eval([spin], settings, tmp_path).summary
    assert s.scored == 1 and s.passed_without_feedback == 0 and s.passed_with_feedback == 0
    [record] = lines(tmp_path / "results.jsonl")
    assert record["limit_without_feedback"] == "wall" and record["limit_with_feedback"] == "wall"
    assert "wall-clock limit" in str(record["failure_without_feedback"])
    assert any("time limit" in r.last for r in model.requests if is_fix_request(r))  # the fix request said why
    assert s.limits_hit == {"wall": 1} and "wall ×1" in (tmp_path / "summary.md").read_text()


def numbered(n: int) -> list[Problem]:
    return [problem(f"f{i}", f"assert f{i}() == {i}", f"assert f{i}() == {i}") for i in range(n)]


def right_answer(request: ScriptedRequest) -> str:
    task = task_of(request)
    return fenced(f"def {task}():\n    return {task[1:]}\n")


def test_an_interrupted_run_resumes_without_regenerating_scored_problems(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    problems = numbered(5)
    armed = {"on": True}

    def interrupt_on_third(request: ScriptedRequest) -> str:
        if armed["on"] and task_of(request) == "f2":
            raise KeyboardInterrupt  # as if Ctrl-C arrived during the third model call
        return right_answer(request)

    model.script = interrupt_on_third
    settings = settings_for(name, feedback=False)
    with pytest.raises(KeyboardInterrupt):
        run_eval(problems, settings, tmp_path)
    assert [r["task_id"] for r in lines(tmp_path / "results.jsonl")] == ["toy/f0", "toy/f1"]
    assert json.loads((tmp_path / "summary.json").read_text())["scored"] == 2  # the summary so far
    calls_before = model.calls
    assert calls_before == 3

    armed["on"] = False
    outcome = run_eval(problems, settings, tmp_path)
    assert model.calls - calls_before == 3  # only f2, f3, f4
    assert {task_of(r) for r in model.requests[calls_before:]} == {"f2", "f3", "f4"}
    assert outcome.newly_scored == 3 and outcome.summary.scored == 5 and outcome.summary.passed_without_feedback == 5
    run_eval(problems, settings, tmp_path)  # nothing left to do
    assert model.calls - calls_before == 3


def test_failed_model_calls_are_recorded_unscored_and_retried(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    problems = numbered(3)
    fail = {"f1"}

    def flaky(request: ScriptedRequest) -> str:
        if task_of(request) in fail:
            raise ScriptedFault("server hiccup")
        return right_answer(request)

    model.script = flaky
    settings = settings_for(name, feedback=False, concurrency=2)
    s = run_eval(problems, settings, tmp_path).summary
    assert (s.scored, s.unscored) == (2, 1)
    errors = [r for r in lines(tmp_path / "results.jsonl") if not r["scored"]]
    assert len(errors) == 1 and errors[0]["task_id"] == "toy/f1" and "server hiccup" in str(errors[0]["error"])
    fail.clear()
    before = model.calls
    s = run_eval(problems, settings, tmp_path).summary
    assert model.calls - before == 1 and (s.scored, s.unscored) == (3, 0)


def test_a_run_aborts_after_consecutive_failures(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    model.script = lambda r: (_ for _ in ()).throw(ScriptedFault("down"))
    with pytest.raises(EvalAborted, match="3 problems in a row"):
        run_eval(numbered(6), settings_for(name, feedback=False), tmp_path)
    assert model.calls == 3 and len(lines(tmp_path / "results.jsonl")) == 3


def test_results_from_other_settings_are_not_mixed(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    model.script = right_answer
    run_eval(numbered(1), settings_for(name, feedback=False), tmp_path)
    with pytest.raises(SettingsMismatch, match="feedback"):
        run_eval(numbered(1), settings_for(name, feedback=True), tmp_path)


def test_a_torn_last_line_is_dropped_on_load(tmp_path: Path) -> None:
    store = ResultsFile(tmp_path / "results.jsonl")
    store.append(ItemResult("a", "toy", "m", scored=True, passed_without_feedback=True))
    with open(store.path, "a") as fh:
        fh.write('{"task_id": "b", "sco')  # a crash in the middle of a write
    assert list(store.scored()) == ["a"]
    store.append(ItemResult("c", "toy", "m", scored=True))
    assert list(store.scored()) == ["a", "c"]


def test_limit_samples_with_the_seed_and_nests(tmp_path: Path) -> None:
    problems = numbered(20)
    ten = select_problems(problems, 10, seed=1)
    assert ten == select_problems(problems, 10, seed=1) and ten != select_problems(problems, 10, seed=2)
    assert [problems.index(p) for p in ten] == sorted(problems.index(p) for p in ten)  # benchmark order
    assert set(p.task_id for p in ten) <= set(p.task_id for p in select_problems(problems, 15, seed=1))
    assert select_problems(problems, 3, first=True) == problems[:3]
    assert select_problems(problems, None) == problems


# ------------------------------------------------------------------------------------------------ CLI


TINY_MBPP: list[dict[str, Any]] = [
    {
        "task_id": 11,
        "text": "Write a function to add two numbers.",
        "code": "def add_two(a, b):\r\n    return a + b",
        "test_setup_code": "",
        "test_list": ["assert add_two(1, 2) == 3", "assert add_two(0, 0) == 0", "assert add_two(-1, 1) == 0"],
        "challenge_test_list": [],
    },
    {
        "task_id": 12,
        "text": "Write a function to find the largest item of a list.",
        "code": "def biggest(xs):\r\n    return max(xs)",
        "test_setup_code": "",
        "test_list": ["assert biggest([1, 3, 2]) == 3", "assert biggest([5]) == 5", "assert biggest([-1, -2]) == -1"],
        "challenge_test_list": [],
    },
    {
        "task_id": 13,
        "text": "Write a function to reverse a string.",
        "code": "def rev(s):\r\n    return s[::-1]",
        "test_setup_code": "",
        "test_list": ['assert rev("ab") == "ba"', 'assert rev("") == ""', 'assert rev("x") == "x"'],
        "challenge_test_list": [],
    },
]


def reference_script(references: dict[str, str]) -> Callable[[ScriptedRequest], str]:
    def script(request: ScriptedRequest) -> str:
        first = next(str(m.content) for m in request.messages if isinstance(m, HumanMessage))
        return fenced(next(code for key, code in references.items() if key in first))

    return script


def test_cli_mbpp_scores_a_data_file_and_writes_the_report(scripted: Scripted, tmp_path: Path, cli) -> None:
    name, model = scripted
    data = tmp_path / "mbpp.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in TINY_MBPP))
    model.script = reference_script({r["text"]: r["code"].replace("\r\n", "\n") for r in TINY_MBPP})
    out = tmp_path / "out"
    code, stdout, err = cli(
        "eval", "mbpp", "--data", str(data), "--model", name, "--limit", "2", "--out", str(out), "--seed", "3"
    )
    assert code == 0, err
    assert "pass@1" in stdout and "100.0%" in stdout and "2 / 2" in stdout
    assert "mbpp: 2 problems" in err and "wrote" in err
    assert len(lines(out / "results.jsonl")) == 2 and (out / "summary.md").is_file()
    assert json.loads((out / "run.json").read_text())["visible_tests"] == 1
    # Extending the run to all three problems generates only the new one.
    before = model.calls
    code, _, err = cli("eval", "mbpp", "--data", str(data), "--model", name, "--out", str(out))
    assert code == 2 and "other settings" in err and "seed" in err  # the sample's seed is part of the results
    code, _, err = cli("eval", "mbpp", "--data", str(data), "--model", name, "--out", str(out), "--seed", "3")
    assert code == 0, err
    assert model.calls - before == 1 and len(lines(out / "results.jsonl")) == 3


def test_cli_json_summary_and_exit_codes(scripted: Scripted, tmp_path: Path, cli) -> None:
    """`sopgraph eval ... --json`: stdout is one JSON document (the report goes to stderr), exit code 0 when
    every problem is scored and 1 ("incomplete") when some are left for a rerun."""
    name, model = scripted
    data = tmp_path / "mbpp.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in TINY_MBPP))
    model.script = reference_script({r["text"]: r["code"].replace("\r\n", "\n") for r in TINY_MBPP})
    model.fail_calls = frozenset({1})  # the second problem's only request fails: it stays unscored
    out = tmp_path / "out"
    args = ("eval", "mbpp", "--data", str(data), "--model", name, "--limit", "2", "--first", "--out", str(out))
    code, stdout, err = cli(*args, "--no-feedback", "--json")
    summary = json.loads(stdout)
    assert code == summary["exit_code"] == 1 and summary["result"] == "incomplete", err
    assert summary["eval"] == "mbpp" and summary["unscored"] == 1 and summary["newly_scored"] == 1
    assert summary["summary"]["scored"] == 1 and summary["summary"]["passed_without_feedback"] == 1
    assert "pass@1" in err and "could not be scored" in err  # the human report and the error, on stderr

    code, stdout, err = cli(*args, "--no-feedback", "--json")
    summary = json.loads(stdout)
    assert code == summary["exit_code"] == 0 and summary["result"] == "done", err
    assert summary["newly_scored"] == 1 and summary["summary"]["pass1_without_feedback"] == 1.0
    assert Path(summary["report"]).is_file()
    assert len({r["task_id"] for r in lines(Path(summary["results"])) if r["scored"]}) == 2
    assert summary["out_dir"] == str(out) and summary["summary"]["settings"]["benchmark"] == "mbpp"


def test_cli_humaneval_on_canonical_solutions(scripted: Scripted, tmp_path: Path, cli) -> None:
    name, model = scripted
    problems = humaneval.load_problems()[:2]
    bodies = {p.entry_point: p.reference[len(p.context) :] for p in problems if p.reference}  # body only
    model.script = lambda r: fenced(next(b for entry, b in bodies.items() if f"def {entry}(" in r.prompt))
    out = tmp_path / "he"
    code, stdout, err = cli("eval", "humaneval", "--limit", "2", "--first", "--model", name, "--out", str(out))
    assert code == 0, err
    records = lines(out / "results.jsonl")
    assert [r["task_id"] for r in records] == ["HumanEval/0", "HumanEval/1"]
    assert all(r["passed_without_feedback"] and r["passed_with_feedback"] for r in records)
    assert all(r["visible_tests"] >= 1 and r["attempts_used"] == 0 for r in records)
    assert "100.0%" in stdout and model.calls == 2
    assert json.loads((out / "run.json").read_text())["prompt_style"] == "chat"  # not the embedded model


def test_the_default_prompt_style_is_the_qwen_protocol_only_for_the_embedded_model() -> None:
    from sopgraph.evals.harness import default_prompt_style

    assert default_prompt_style("local") == default_prompt_style("local:1.5b") == "qwen"
    assert default_prompt_style("openai:gpt-4o-mini") == default_prompt_style("scripted") == "chat"


def test_cli_errors_are_one_line(scripted: Scripted, tmp_path: Path, cli) -> None:
    name, _ = scripted
    code, _, err = cli("eval", "mbpp", "--data", str(tmp_path / "none.jsonl"), "--model", name)
    assert code == 1 and "does not exist" in err and "Traceback" not in err
    code, _, err = cli("eval", "humaneval", "--model", "nonsense-model", "--limit", "1")
    assert code == 1 and "unknown model name" in err
    code, out, _ = cli("eval", "--help")
    assert code == 0 and "humaneval" in out and "mbpp" in out


def test_cli_interrupt_keeps_results_and_says_how_to_resume(scripted: Scripted, tmp_path: Path, cli) -> None:
    name, model = scripted
    data = tmp_path / "mbpp.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in TINY_MBPP))

    def interrupt(request: ScriptedRequest) -> str:
        raise KeyboardInterrupt

    model.script = interrupt
    out = tmp_path / "out"
    code, _, err = cli("eval", "mbpp", "--data", str(data), "--model", name, "--out", str(out))
    assert code == 130 and "interrupted" in err and "run the same command to resume" in err
    assert (out / "summary.md").is_file() and not (out / "results.jsonl").exists()


def test_the_qwen_prompt_style_prefills_the_fence_and_stops_where_their_harness_does(
    scripted: Scripted, tmp_path: Path
) -> None:
    from sopgraph.evals import prefill

    name, model = scripted
    model.script = lambda r: "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n```\nThat adds."
    record = humaneval.to_problem(
        {
            "task_id": "HumanEval/x",
            "prompt": 'def add(a, b):\n    """Add.\n    >>> add(1, 2)\n    3\n    """\n',
            "entry_point": "add",
            "test": "def check(c):\n    assert c(2, 2) == 4\n",
            "canonical_solution": "    return a + b\n",
        },
        style="qwen",
    )
    settings = settings_for(name, prompt_style="qwen", system=prefill.SYSTEM, feedback=False)
    run_eval([record], settings, tmp_path)
    [line] = lines(tmp_path / "results.jsonl")
    [request] = model.requests
    [message] = request.messages  # the whole ChatML conversation as one raw prompt
    text = str(message.content)
    assert text.startswith(f"<|im_start|>system\n{prefill.SYSTEM}<|im_end|>\n<|im_start|>user\nCan you complete")
    assert text.endswith("<|im_start|>assistant\n```python\n") and "def add(a, b):" in text
    assert line["passed_without_feedback"] is True and "print(" not in line["code_without_feedback"]
    assert line["replies"][0] == "```python\ndef add(a, b):\n    return a + b\n```\n"
    assert prefill.cut_at_stop("x = 1\n# note\ny = 2") == "x = 1"


def test_strategies_compared_on_one_first_answer_share_identical_requests(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    model.script = toy_script
    settings = settings_for(name, strategy="mixed", compare=("resample", "repair-sample"), attempts=1)
    s = run_eval([DOUBLE], settings, tmp_path).summary
    [record] = lines(tmp_path / "results.jsonl")
    runs = record["by_strategy"]
    assert list(runs) == ["mixed", "resample", "repair-sample"]
    assert [runs[n]["passed_with_feedback"] for n in runs] == [True, False, True]  # resampling never sees the fix
    assert all(runs[n]["requests"] == 4 for n in runs)
    # mixed sent 4; resample's fresh slots 2-3 and repair-sample's fix slots 0-1 were mixed's very requests.
    assert model.calls == 1 + 4 + 2 + 2
    # ...but each strategy is charged for all 4 of its requests, as if it ran alone.
    assert runs["resample"]["tokens_out"] == 4 * count_tokens(fenced(ANSWERS["double"][0]))
    assert record["model_calls"] == 5 and record["strategy"] == "mixed"
    rows = {row["strategy"]: row for row in s.strategies}
    assert (rows["mixed"]["passed"], rows["resample"]["passed"], rows["repair-sample"]["passed"]) == (1, 0, 1)
    assert rows["resample"]["repeats"] == 4 and rows["mixed"]["fixed"] == 1
    assert "| resample | 1 × 4 |" in (tmp_path / "summary.md").read_text()
