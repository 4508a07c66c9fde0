"""Getting code out of replies, assembling programs, and the HumanEval / MBPP data, judged in the sandbox."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from sopgraph.evals import humaneval, mbpp
from sopgraph.evals.codegen import (
    Problem,
    assemble_solution,
    defines_function,
    extract_code,
    feedback_summary,
    run_hidden,
    run_visible,
    sanitize,
)
from sopgraph.evals.harness import _valid_visible
from sopgraph.tools.sandbox import SandboxLimits

STUB = '''from typing import List


def total(numbers: List[int]) -> int:
    """Sum of the numbers.
    >>> total([1, 2])
    3
    """
'''

HE = Problem(
    task_id="T/0",
    prompt="complete total",
    entry_point="total",
    hidden_tests="def check(f):\n    assert f([1, 2, 3]) == 6\n    assert f([]) == 0\n\ncheck(total)",
    visible_tests=("assert total([1, 2]) == 3",),
    context=STUB,
    stub=STUB,
)


# ------------------------------------------------------------------------------------------ extraction


def test_extracts_the_fenced_block_that_defines_the_entry_point() -> None:
    reply = (
        "Here is an example call:\n```python\nprint(total([1]))\n```\n"
        "And the function:\n```python\ndef total(numbers):\n    return sum(numbers)\n```\nHope it helps!"
    )
    assert extract_code(reply, "total") == "def total(numbers):\n    return sum(numbers)"


def test_unterminated_fence_and_unfenced_prose() -> None:
    assert extract_code("Sure:\n```python\ndef total(xs):\n    return sum(xs)\n", "total").startswith("def total")
    prose = "The answer is below.\ndef total(xs):\n    return sum(xs)\nThis sums the list."
    assert extract_code(prose, "total") == "def total(xs):\n    return sum(xs)"


def test_without_a_defining_block_the_longest_python_block_wins() -> None:
    reply = "```bash\npip install numpy scipy pandas\n```\n```python\nreturn sum(numbers)\n```"
    assert extract_code(reply, "total") == "return sum(numbers)"
    assert extract_code("no code at all", "total") == "no code at all"


def test_sanitize_keeps_definitions_and_drops_example_code() -> None:
    code = """from __future__ import annotations
import math
LIMIT = 10
CACHE: dict = {}

@staticmethod
def helper(x):
    return x

def total(xs):
    return sum(xs)

result = total([1, 2])
print(result)
assert total([]) == 0
for i in range(3):
    print(i)
if __name__ == "__main__":
    import sys
    sys.exit(total([1]))
"""
    clean = sanitize(code)
    tree = ast.parse(clean)
    kinds = [type(n).__name__ for n in tree.body]
    assert kinds == ["Import", "Assign", "AnnAssign", "FunctionDef", "FunctionDef"]
    assert "@staticmethod" in clean and "__future__" not in clean and "print" not in clean
    assert sanitize("def broken(:\n    pass") == "def broken(:\n    pass"  # unparseable: left for the error


def test_full_function_replies_replace_the_stub() -> None:
    repeated = f"```python\n{STUB}    return sum(numbers)\n\nprint(total([1, 2]))\n```"
    solution = assemble_solution(HE, repeated)
    assert defines_function(solution, "total") and "print(" not in solution


@pytest.mark.parametrize(
    "reply",
    [
        "```python\n    return sum(numbers)\n```",  # indented body, as a completion
        "```python\nreturn sum(numbers)\n```",  # body without indentation
        # the first line lost its indentation
        "```python\nresult = 0\n    for n in numbers:\n        result += n\n    return result\n```",
    ],
)
def test_body_only_replies_complete_the_stub(reply: str) -> None:
    solution = assemble_solution(HE, reply)
    assert solution.startswith(STUB)
    ast.parse(solution)
    assert defines_function(solution, "total")


# ---------------------------------------------------------------------------------------- sandbox runs


def test_hidden_tests_pass_fail_and_cannot_be_skipped_by_exiting() -> None:
    good = assemble_solution(HE, "```python\nreturn sum(numbers)\n```")
    assert run_hidden(HE, good).passed
    wrong = run_hidden(HE, assemble_solution(HE, "```python\nreturn len(numbers)\n```"))
    assert not wrong.passed and "AssertionError" in (wrong.failure or "")
    # Calling exit before the tests: exit code 0, but the tests never ran.
    cheat = run_hidden(HE, "import os\nos._exit(0)\n")
    assert not cheat.passed and cheat.limit_hit is None


def test_visible_feedback_says_what_came_back_and_where_it_broke() -> None:
    problem = Problem("T/1", "", "div", "assert div(4, 2) == 2", ("assert div(4, 2) == 2", "assert div(1, 0) is None"))
    code = "def div(a, b):\n    if b == 0:\n        return 0\n    return a // b + 1\n"
    outcome = run_visible(problem, code, problem.visible_tests)
    assert not outcome.passed and outcome.failed_count == 2
    text = feedback_summary(outcome)
    assert "failed 2 of 2 tests" in text and "returned 3, expected 2" in text and "the assertion is false" in text
    raising = run_visible(problem, "def div(a, b):\n    x = a\n    return x / b\n", problem.visible_tests)
    assert "ZeroDivisionError" in feedback_summary(raising) and "line 3 of your code: return x / b" in (
        feedback_summary(raising)
    )
    broken = run_visible(problem, "def div(a, b)\n    return a / b\n", problem.visible_tests)
    assert broken.crash and "SyntaxError" in broken.crash and "line 1 of your code" in broken.crash


def test_an_infinite_loop_is_stopped_and_reported_as_the_wall_limit() -> None:
    problem = Problem("T/2", "", "spin", "assert spin() == 1", ("assert spin() == 1",))
    loop = "def spin():\n    while True:\n        pass\n"
    limits = SandboxLimits(wall_s=1.5, cpu_s=10)
    verdict = run_hidden(problem, loop, limits)
    assert not verdict.passed and verdict.limit_hit == "wall" and "wall-clock" in (verdict.failure or "")
    outcome = run_visible(problem, loop, problem.visible_tests, limits)
    assert outcome.limit_hit == "wall" and "time limit" in feedback_summary(outcome)


# ----------------------------------------------------------------------------------------- HumanEval


@pytest.fixture(scope="module")
def he_problems() -> dict[str, Problem]:
    return {p.task_id: p for p in humaneval.load_problems()}


def test_humaneval_loads_164_problems_from_the_package(he_problems: dict[str, Problem]) -> None:
    assert len(he_problems) == 164
    first = he_problems["HumanEval/0"]
    assert first.entry_point == "has_close_elements" and "def has_close_elements" in first.prompt
    assert first.visible_tests == (
        "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False",
        "assert has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3) == True",
    )
    assert "check(has_close_elements)" in first.hidden_tests and first.reference
    # Arrow-style examples: "fruit_distribution(...) -> 19 - 5 - 6 = 8" becomes "== 8".
    assert 'assert fruit_distribution("5 apples and 6 oranges", 19) == 8' in he_problems["HumanEval/67"].visible_tests


def test_canonical_solutions_pass_including_problems_with_helpers(he_problems: dict[str, Problem]) -> None:
    for task in ("HumanEval/0", "HumanEval/32", "HumanEval/38"):  # 32 and 38 use helpers from the prompt
        problem = he_problems[task]
        assert problem.reference is not None
        solution = assemble_solution(problem, f"```python\n{problem.reference}\n```")
        assert run_hidden(problem, solution).passed, task


def test_docstring_examples_the_reference_fails_are_dropped(he_problems: dict[str, Problem]) -> None:
    limits = SandboxLimits(wall_s=15)
    assert len(_valid_visible(he_problems["HumanEval/0"], limits)) == 2
    # is_happy(a) => False: `a` is no value, so the reference cannot pass it; none of its examples survive.
    assert he_problems["HumanEval/80"].visible_tests and _valid_visible(he_problems["HumanEval/80"], limits) == ()


# ---------------------------------------------------------------------------------------------- MBPP

SHARED_MBPP = mbpp.default_data_path()
needs_shared_mbpp = pytest.mark.skipif(not SHARED_MBPP.is_file(), reason=f"{SHARED_MBPP} not present")


@needs_shared_mbpp
def test_mbpp_test_split_is_task_ids_11_to_510() -> None:
    problems = mbpp.load_problems(SHARED_MBPP, "test")
    assert len(problems) == 500
    assert problems[0].task_id == "MBPP/11" and problems[-1].task_id == "MBPP/510"
    assert len(mbpp.load_problems(SHARED_MBPP, "all")) == 974
    first = problems[0]
    assert first.entry_point == "remove_Occ"
    assert first.visible_tests == ('assert remove_Occ("hello","l") == "heo"',)
    assert 'assert remove_Occ("hello","l") == "heo"' in first.prompt and "PHP" not in first.prompt
    assert first.hidden_tests.count("assert") == 3
    three = mbpp.load_problems(SHARED_MBPP, "test", visible=3)[0]
    assert len(three.visible_tests) == 3 and "PHP" in three.prompt


@needs_shared_mbpp
def test_mbpp_reference_solutions_pass_including_setup_code() -> None:
    by_id = {p.task_id: p for p in mbpp.load_problems(SHARED_MBPP, "all")}
    for task in ("MBPP/11", "MBPP/367"):  # 367's test set-up builds trees from the solution's Node class
        problem = by_id[task]
        assert problem.setup or task == "MBPP/11"
        assert run_hidden(problem, assemble_solution(problem, problem.meta["reference"])).passed, task


def test_mbpp_data_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(mbpp.MbppDataError, match="does not exist"):
        mbpp.resolve_data(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(mbpp.MbppDataError, match="cannot read"):
        mbpp.load_problems(bad)
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"task_id": 700, "text": "t", "code": "", "test_list": ["assert f(1) == 1"]}) + "\n")
    with pytest.raises(mbpp.MbppDataError, match="no MBPP problems in split 'test'"):
        mbpp.load_problems(one, "test")
    with pytest.raises(mbpp.MbppDataError, match="unknown MBPP split"):
        mbpp.load_problems(one, "dev")
    assert mbpp.load_problems(one, "train")[0].entry_point == "f"
