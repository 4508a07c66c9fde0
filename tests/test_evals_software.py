"""Software tasks: the executability score on constructed repositories (one per level and the edge cases
that decide between them), task-file validation, resuming, and the CLI end to end on the scripted company.
Every generated program here really runs, in the sandbox."""

from __future__ import annotations

import io
import json
import re
import shutil
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from company_script import MAIN, Company, _asked_file
from rich.console import Console

from sopgraph.evals import software
from sopgraph.evals.harness import SettingsMismatch
from sopgraph.evals.software import (
    SoftwareSettings,
    SoftwareTask,
    TaskFileError,
    choose_tasks,
    load_tasks,
    run_software,
    score_repository,
)
from sopgraph.nodes.scripted import ScriptedChatModel, ScriptedFault, ScriptedRequest
from sopgraph.state.company import PRD

Scripted = tuple[str, ScriptedChatModel]
FAST = {"start_timeout": 2.0, "test_timeout": 30.0}


def repo(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def guarded(body: str, imports: str = "") -> str:
    """A main.py whose main() runs `body`, behind a __main__ guard."""
    lines = "\n".join("    " + line for line in body.splitlines())
    return f"{imports}\n\ndef main():\n{lines}\n\n\nif __name__ == '__main__':\n    main()\n"


ADD = "def add(a, b):\n    return a + b\n"
PASSING = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
FAILING = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 6\n"
SERVER = guarded(
    "server = http.server.HTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\nserver.serve_forever()",
    "import http.server",
)


# -- the score on constructed repositories ---------------------------------------------------------------


def test_no_code_at_all_scores_1(tmp_path: Path) -> None:
    verdict = score_repository(repo(tmp_path, {"README.md": "# nothing", "tests/test_x.py": PASSING}), **FAST)
    assert verdict.score == 1 and not verdict.installs and "no code" in verdict.reason
    assert score_repository(tmp_path / "missing", **FAST).score == 1


def test_a_syntax_error_scores_1_and_names_the_file_and_line(tmp_path: Path) -> None:
    root = repo(tmp_path, {"calc.py": "def add(a, b):\n    return a +\n", "main.py": guarded("print('hi')")})
    verdict = score_repository(root, **FAST)
    assert (
        verdict.score == 1
        and verdict.checks["install"] == "calc.py does not compile: SyntaxError: invalid syntax (line 2)"
    )
    assert verdict.starts  # main.py alone is fine: the levels are cumulative, the lowest failing check decides


def test_a_third_party_import_scores_1_even_when_this_environment_has_the_package(tmp_path: Path) -> None:
    import yaml  # noqa: F401 - installed here, as our own dependency; the generated program may not use it

    root = repo(tmp_path, {"store.py": "import yaml\n", "main.py": guarded("print('ok')", "import store")})
    verdict = score_repository(root, **FAST)
    assert verdict.score == 1
    assert "store.py does not import: ModuleNotFoundError: No module named 'yaml' (store.py:1)" in verdict.reason
    assert "main.py does not import" in verdict.reason  # it imports store


def test_a_module_that_raises_on_import_scores_1(tmp_path: Path) -> None:
    root = repo(tmp_path, {"calc.py": ADD + "TOTAL = add(1, undefined)\n", "main.py": guarded("print(1)")})
    verdict = score_repository(root, **FAST)
    assert (
        verdict.score == 1
        and "calc.py does not import: NameError" in verdict.reason
        and "(calc.py:3)" in verdict.reason
    )


def test_an_entry_point_that_raises_scores_2_even_when_its_tests_pass(tmp_path: Path) -> None:
    root = repo(
        tmp_path,
        {"calc.py": ADD, "main.py": guarded("raise RuntimeError('boom')"), "tests/test_calc.py": PASSING},
    )
    verdict = score_repository(root, **FAST)
    assert verdict.installs and not verdict.starts and verdict.tests_pass
    assert verdict.score == 2 and verdict.entry == "python -S main.py"
    assert "python -S main.py --help: exit 1: RuntimeError: boom; python -S main.py: exit 1" in verdict.reason


def test_without_an_entry_point_it_does_not_start(tmp_path: Path) -> None:
    verdict = score_repository(repo(tmp_path, {"calc.py": ADD, "fmt.py": "def show(x):\n    return str(x)\n"}), **FAST)
    assert verdict.score == 2 and verdict.entry is None and "no entry point" in verdict.reason


def test_a_server_that_keeps_running_starts_and_failing_tests_keep_it_at_3(tmp_path: Path) -> None:
    root = repo(tmp_path, {"calc.py": ADD, "main.py": SERVER, "tests/test_calc.py": FAILING})
    verdict = score_repository(root, **FAST)
    assert verdict.installs and verdict.starts and not verdict.tests_pass
    assert verdict.score == 3 and "still running after 2s, no traceback" in verdict.checks["start"]
    assert verdict.checks["tests"] == "0 passed, 1 failed, 0 errors"
    assert (verdict.tests_passed, verdict.tests_failed) == (0, 1)


PASSING_THREE = (
    PASSING
    + "\n\ndef test_add_zero():\n    assert add(0, 3) == 3\n\n\ndef test_add_negative():\n    assert add(-1, 1) == 0\n"
)


@pytest.mark.parametrize(("test", "score"), [(PASSING_THREE, 4), (PASSING, 3), (FAILING, 3)])
def test_passing_tests_make_4_failing_ones_3(tmp_path: Path, test: str, score: int) -> None:
    main = guarded("print(add(2, 3))", "from calc import add")
    root = repo(tmp_path, {"calc.py": ADD, "main.py": main, "tests/test_calc.py": test})
    verdict = score_repository(root, **FAST)
    assert verdict.score == score and verdict.checks["start"] == "python -S main.py --help: exit 0"
    assert verdict.code_files == ["calc.py", "main.py"] and verdict.test_files == ["tests/test_calc.py"]
    assert verdict.code_lines == 2 + len(main.splitlines()) and verdict.test_lines == len(test.splitlines())


def test_no_tests_means_at_most_3(tmp_path: Path) -> None:
    verdict = score_repository(repo(tmp_path, {"main.py": guarded("print('hi')")}), **FAST)
    assert verdict.score == 3 and verdict.checks["tests"] == "no tests"


def test_a_game_waiting_for_input_starts(tmp_path: Path) -> None:
    # No guard: the script is its program. Importing it reads the closed stdin (EOFError, let through);
    # started, it asks for a guess and finds stdin closed: a program waiting for its player.
    game = "secret = 42\nguess = int(input('guess: '))\nprint('higher' if guess < secret else 'lower')\n"
    verdict = score_repository(repo(tmp_path, {"game.py": game}), **FAST)
    assert verdict.installs and verdict.score == 3
    assert verdict.checks["start"] == "python -S game.py --help: waited for input: EOFError on the closed stdin"


def test_a_script_that_crashes_on_its_arguments_is_not_an_install_failure(tmp_path: Path) -> None:
    # Unguarded entry script: its own exceptions at import are the start check's business; a bad import is not.
    script = "import sys\nprint(int(sys.argv[1]) * 2)\n"
    verdict = score_repository(repo(tmp_path, {"main.py": script}), **FAST)
    assert verdict.installs and verdict.score == 2 and "ValueError" in verdict.checks["start"]
    verdict = score_repository(repo(tmp_path / "b", {"main.py": "import requests_of_nowhere\n"}), **FAST)
    assert verdict.score == 1 and "ModuleNotFoundError" in verdict.reason


def test_a_module_named_like_the_standard_library_does_not_confuse_the_probe(tmp_path: Path) -> None:
    root = repo(tmp_path, {"json.py": "VALUE = 1\n", "main.py": guarded("print(json.VALUE)", "import json")})
    verdict = score_repository(root, **FAST)
    assert verdict.installs and verdict.starts and verdict.score == 3, verdict.reason


def test_no_arguments_are_tried_when_help_fails(tmp_path: Path) -> None:
    main = guarded(
        "args = sys.argv[1:]\nif args:\n    raise SystemExit(f'unknown option {args[0]}')\nprint('ready')", "import sys"
    )
    verdict = score_repository(repo(tmp_path, {"main.py": main}), **FAST)
    assert verdict.starts and verdict.entry == "python -S main.py"
    assert verdict.checks["start"] == "python -S main.py: exit 0"


def test_still_running_after_a_traceback_is_not_started(tmp_path: Path) -> None:
    body = "threading.Thread(target=lambda: 1 / 0).start()\ntime.sleep(60)"
    verdict = score_repository(repo(tmp_path, {"main.py": guarded(body, "import threading\nimport time")}), **FAST)
    assert verdict.installs and not verdict.starts and verdict.score == 2
    assert "killed at the wall limit" in verdict.checks["start"]


def test_the_entry_point_is_found_by_name_then_guard_then_readme_then_alone(tmp_path: Path) -> None:
    def entry(files: dict[str, str], name: str) -> tuple[list[str], str] | None:
        return software.find_entry(software.survey(repo(tmp_path / name, files)))

    assert entry({"app.py": "", "main.py": "", "game.py": guarded("pass")}, "named") == (["main.py"], "main.py")
    assert entry({"lib.py": "", "game.py": guarded("pass")}, "guard") == (["game.py"], "game.py")
    readme = "## Run\n\n```\npython -m dash\n```\n"
    files = {"README.md": readme, "lib.py": "", "dash/__init__.py": "", "dash/__main__.py": ""}
    assert entry(files, "readme") == (["-m", "dash"], "dash/__main__.py")  # __main__ is an entry name too
    assert entry({"README.md": "python tool.py FILE", "tool.py": "", "lib.py": ""}, "readme2") == (
        ["tool.py"],
        "tool.py",
    )
    assert entry({"only.py": ""}, "alone") == (["only.py"], "only.py")
    assert entry({"a.py": "", "b.py": ""}, "none") is None


# -- the task file -------------------------------------------------------------------------------------------


def test_the_packaged_tasks_are_valid_and_installed_as_package_data() -> None:
    tasks = load_tasks()
    assert len(tasks) >= 10 and len({t.id for t in tasks}) == len(tasks)
    assert {t.category for t in tasks} == {"game", "cli", "data", "web"}
    assert all("Python standard library" in t.prompt and "nothing can be installed" in t.prompt for t in tasks)
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["sopgraph.evals"]
    assert software.DEFAULT_TASKS.parent == Path(software.__file__).parent


GOOD_TASK = {"id": "adder", "category": "cli", "prompt": "A command-line adder of two integers."}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"tasks": [GOOD_TASK, {**GOOD_TASK, "id": "tic", "category": "puzzle"}]},
            r"tasks\[tic\]\.category: Input should be",
        ),
        ({"tasks": [{"id": "tic", "category": "game"}]}, r"tasks\[tic\]\.prompt: Field required"),
        ({"tasks": [{**GOOD_TASK, "colour": "red"}]}, r"tasks\[adder\]\.colour: Extra inputs are not permitted"),
        ({"tasks": [{**GOOD_TASK, "id": "Bad Id"}]}, r"tasks\[Bad Id\]\.id: String should match pattern"),
        ({"tasks": [GOOD_TASK, GOOD_TASK]}, r"tasks: duplicate task id 'adder'"),
        ({"tasks": []}, r"tasks: List should have at least 1 item"),
        ({"suffix": "x"}, r": tasks: Field required"),
        (["a list"], r"expected a mapping with suffix and tasks"),
        ("tasks: [unclosed", r"not valid YAML at line \d"),
    ],
)
def test_a_malformed_task_file_names_file_task_and_field(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(TaskFileError, match=rf"^{re.escape(str(path))}.*{message}"):
        load_tasks(path)


def test_a_missing_task_file_and_unknown_ids_are_clear(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match="no such file"):
        load_tasks(tmp_path / "none.yaml")
    with pytest.raises(TaskFileError, match="unknown task id nope; the tasks are: number_guess, tic_tac_toe"):
        choose_tasks(load_tasks(), ["tic_tac_toe", "nope"])


def test_tasks_are_chosen_by_id_and_sampled_with_the_seed() -> None:
    tasks = load_tasks()
    assert [t.id for t in choose_tasks(tasks, ["todo_list", "tic_tac_toe"])] == ["tic_tac_toe", "todo_list"]
    four = choose_tasks(tasks, limit=4, seed=1)
    assert len(four) == 4 and four == choose_tasks(tasks, limit=4, seed=1)
    assert set(four) <= set(choose_tasks(tasks, limit=6, seed=1))
    assert choose_tasks(tasks, limit=2, first=True) == tasks[:2]


# -- running tasks through the scripted company -------------------------------------------------------------

NEEDS_ARGS = MAIN.replace('    if len(args) != 2:\n        print("usage: python main.py A B")\n        return\n', "")
GOOD_MAIN = MAIN.replace(
    "    print(show(add(int(args[0]), int(args[1]))))", "    print(show(add(*map(int, args))) if args else 'usage')"
)


@dataclass
class PerTask(Company):
    """The scripted company, told apart per task ("Task NAME: ..."): tasks run one at a time, and the PM is
    asked first in each."""

    current: str = ""
    starts: set[str] = field(default_factory=set)
    """Tasks whose main.py runs without arguments (the others' need two, and no fix changes that)."""
    buggy: set[str] = field(default_factory=set)
    crash: dict[str, type[BaseException]] = field(default_factory=dict)
    """Tasks whose first main.py request raises this (then works)."""
    invalid_prd: set[str] = field(default_factory=set)

    def __call__(self, request: ScriptedRequest) -> Any:
        if request.schema is PRD:
            match = re.search(r"Task (\w+):", request.prompt)
            self.current = match.group(1) if match else "?"
            if self.current in self.invalid_prd:
                return {"project_name": self.current}  # never a valid PRD
            self.buggy_until_fix = self.current in self.buggy
        if self.current in self.crash and request.schema is None and _asked_file(request.prompt) == "main.py":
            raise self.crash.pop(self.current)("provider outage while writing main.py")
        return super().__call__(request)

    def code(self, asked: str, prompt: str) -> str:
        if asked == "main.py":
            return f"```python\n{GOOD_MAIN if self.current in self.starts else NEEDS_ARGS}```"
        return super().code(asked, prompt)


def toy_tasks(*names: str) -> list[SoftwareTask]:
    return [SoftwareTask(n, "cli", f"Task {n}: a command-line calculator that adds two integers.") for n in names]


def settings_for(model: str, **kwargs: Any) -> SoftwareSettings:
    return SoftwareSettings(**{"model": model, "start_timeout": 2.0, "test_timeout": 30.0, **kwargs})


def quiet() -> Console:
    return Console(file=io.StringIO())


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_task_is_run_scored_and_measured(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    model.script = script = PerTask(starts={"good"}, buggy={"good"})
    out = tmp_path / "out"
    outcome = run_software(toy_tasks("good", "bare"), settings_for(name), out, console=quiet())
    good, bare = outcome.results
    assert (good.score, bare.score) == (4, 2)
    assert good.outcome == "passed" and good.test_runs == 2 and good.debug_attempts == 1  # fixed once
    # The company's own start check sent bare to debug, whose fixes never made it start.
    assert bare.debug_attempts == 3 and "IndexError" in bare.reason
    repo_dir = out / "repos" / "good"
    code_lines = sum(len((repo_dir / f).read_text().splitlines()) for f in ("calc.py", "fmt.py", "main.py"))
    assert good.code_lines == code_lines and good.test_lines > 0 and good.repo == str(repo_dir)
    assert good.tokens_out > 0 and good.tokens_per_line == round(good.tokens_out / code_lines, 2)
    calls = Counter(role for role, _ in script.calls)
    assert good.model_calls + bare.model_calls == sum(calls.values())
    assert outcome.summary.histogram == {"1": 0, "2": 1, "3": 0, "4": 1} and outcome.summary.mean_score == 3.0
    assert lines(out / "results.jsonl")[0]["task_id"] == "good"


def test_an_interrupted_or_failed_task_resumes_from_its_checkpoint(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    model.script = script = PerTask(starts={"a", "b", "c"}, crash={"b": ScriptedFault, "c": KeyboardInterrupt})
    out, settings, tasks = tmp_path / "out", settings_for(name), toy_tasks("a", "b", "c")
    with pytest.raises(KeyboardInterrupt):
        run_software(tasks, settings, out, console=quiet())
    first = lines(out / "results.jsonl")
    assert [(r["task_id"], r["scored"]) for r in first] == [("a", True), ("b", False)]  # c: interrupted, no line
    assert "provider outage while writing main.py" in first[1]["error"]
    assert (out / "summary.md").is_file() and (out / software.CHECKPOINTS).is_file()

    before = Counter(script.calls)
    outcome = run_software(tasks, settings, out, console=quiet())
    again = Counter(script.calls) - before
    assert again[("product_manager", "PRD")] == 0  # b and c continue where they stopped; a is not run again
    assert again[("engineer", "main.py")] == 2 and again[("engineer", "calc.py")] == 0
    assert [(r.task_id, r.score, r.resumed) for r in outcome.results] == [
        ("a", 4, False),
        ("b", 4, True),
        ("c", 4, True),
    ]
    assert outcome.newly_scored == 2 and outcome.results[1].seconds >= first[1]["seconds"]
    assert len(lines(out / "results.jsonl")) == 4

    calls = len(script.calls)
    assert run_software(tasks, settings, out, console=quiet()).newly_scored == 0 and len(script.calls) == calls


def test_other_settings_are_refused_and_a_changed_prompt_runs_again(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    model.script = script = PerTask(starts={"a", "b"})
    out, tasks = tmp_path / "out", toy_tasks("a", "b")
    run_software(tasks, settings_for(name), out, console=quiet())
    with pytest.raises(SettingsMismatch, match="max_debug"):
        run_software(tasks, settings_for(name, max_debug=1), out, console=quiet())
    assert len(lines(out / "results.jsonl")) == 2

    reworded = [tasks[0], SoftwareTask("b", "cli", tasks[1].prompt + " Print the sum in green.")]
    before = Counter(script.calls)
    outcome = run_software(reworded, settings_for(name), out, console=quiet())
    # Only b, from scratch: its PRD, and a second one, since the scripted PRD never mentions 'green' or 'print'.
    assert (Counter(script.calls) - before)[("product_manager", "PRD")] == 2
    assert outcome.newly_scored == 1 and outcome.results[1].prompt_sha == reworded[1].sha != tasks[1].sha
    assert outcome.results[1].thread_id != lines(out / "results.jsonl")[1]["thread_id"]


def test_a_run_the_model_cannot_carry_on_is_scored_as_it_stands(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    model.script = PerTask(invalid_prd={"a"})
    outcome = run_software(toy_tasks("a"), settings_for(name), tmp_path / "out", console=quiet())
    (result,) = outcome.results
    assert result.scored and result.score == 1 and result.outcome == "stopped"
    assert "gave no valid PRD" in (result.stop_reason or "") and "no code" in result.reason
    # every request is in the ledger, the three that failed validation included, though none reached a checkpoint
    assert result.model_calls == model.calls == 3
    assert result.tokens_in > 0 and result.tokens_out > 0


# -- the command line ----------------------------------------------------------------------------------------


def test_cli_runs_the_tasks_and_writes_results_and_report(scripted: Scripted, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = script = PerTask(starts={"adder"})
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "suffix: Use only the Python standard library.\n"
        "tasks:\n"
        "  - {id: adder, category: cli, prompt: 'Task adder: a command-line adder of two integers.'}\n"
        "  - {id: summer, category: data, prompt: 'Task summer: sums the numbers of a column of a CSV file.'}\n"
        "  - {id: skipped, category: game, prompt: 'Task skipped: a number-guessing game on the terminal.'}\n"
    )
    out = tmp_path / "out"
    args = ("eval", "software", "--tasks", str(tasks), "--only", "adder,summer", "--model", name, "--out", str(out))
    code, stdout, err = cli(*args)
    assert code == 0, err
    records = lines(out / "results.jsonl")
    assert [(r["task_id"], r["score"]) for r in records] == [("adder", 4), ("summer", 2)]
    assert all(r["prompt_sha"] and r["thread_id"].startswith(f"software-{r['task_id']}-") for r in records)
    assert "[1/2] adder (cli)" in err and "adder: score 4" in err and "summer: score 2" in err
    assert "✓ product_manager" in err  # the company's own progress, per node
    summary = (out / "summary.md").read_text()
    assert (
        f"| 4 | {software.LEVELS[4]} | 1 | 50.0% |" in summary
        and f"| 2 | {software.LEVELS[2]} | 1 | 50.0% |" in summary
    )
    assert "| adder | cli | 4 |" in summary and "mean score: 3.00" in summary and "![scores](scores.png)" in summary
    assert (out / "scores.png").stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["histogram"] == {"1": 0, "2": 1, "3": 0, "4": 1}
    assert "Software tasks" in stdout and "mean score" in stdout

    calls = len(script.calls)
    code, _, err = cli(*args)
    assert code == 0 and len(script.calls) == calls, err  # everything already scored
    code, _, err = cli(*args, "--max-debug", "1")
    assert code == 2 and "other settings" in err and "max_debug" in err


def test_cli_errors_are_one_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  - {id: x1, category: puzzle, prompt: 'Task x1: something small to build.'}\n")
    code, _, err = cli("eval", "software", "--tasks", str(bad), "--model", "scripted", "--out", str(tmp_path / "o"))
    assert code == 1 and "tasks[x1].category" in err and "Traceback" not in err
    code, _, err = cli("eval", "software", "--only", "nope", "--model", "scripted", "--out", str(tmp_path / "o"))
    assert code == 1 and "unknown task id nope" in err
    code, _, err = cli("eval", "software", "--limit", "1", "--model", "nonsense-model", "--out", str(tmp_path / "o"))
    assert code == 1 and "unknown model name" in err
    assert not (tmp_path / "o").exists()


# -- acceptance checks and the stricter levels ----------------------------------------------------------------

REFERENCE = Path(__file__).parent / "reference"


def task_checks(task_id: str) -> tuple[Any, ...]:
    (task,) = [t for t in load_tasks() if t.id == task_id]
    return task.checks


@pytest.mark.parametrize("task_id", sorted(p.name for p in REFERENCE.iterdir() if p.is_dir()))
def test_a_reference_solution_passes_every_acceptance_check_and_scores_4(tmp_path: Path, task_id: str) -> None:
    shutil.copytree(REFERENCE / task_id, tmp_path / task_id)
    verdict = score_repository(tmp_path / task_id, start_timeout=3.0, checks=task_checks(task_id))
    assert verdict.acceptance_total >= 4 and verdict.acceptance_passed == verdict.acceptance_total, verdict.acceptance
    assert verdict.score == 4, verdict.reason
    assert verdict.asserting_tests == 3 and verdict.tests_notice_gutting is True


def test_a_program_that_only_prints_a_file_does_not_score_3(tmp_path: Path) -> None:
    cat = "import sys\n\nif __name__ == '__main__' and len(sys.argv) > 1:\n    print(open(sys.argv[1]).read())\n"
    verdict = score_repository(repo(tmp_path, {"main.py": cat}), start_timeout=3.0, checks=task_checks("todo_list"))
    assert verdict.starts and verdict.acceptance_passed <= 1 and verdict.score == 2, verdict.reason


def test_empty_or_toothless_tests_never_make_4(tmp_path: Path) -> None:
    shutil.copytree(REFERENCE / "todo_list", tmp_path / "a")
    (tmp_path / "a/tests/test_main.py").write_text("")
    verdict = score_repository(tmp_path / "a", start_timeout=3.0, checks=task_checks("todo_list"))
    assert verdict.acceptance_passed == verdict.acceptance_total and verdict.score == 3, verdict.reason
    shutil.copytree(REFERENCE / "todo_list", tmp_path / "b")
    toothless = "from main import run\n\n\ndef test_a():\n    assert run\n\n\ndef test_b():\n    assert 1\n\n\n"
    (tmp_path / "b/tests/test_main.py").write_text(toothless + "def test_c():\n    assert True\n")
    verdict = score_repository(tmp_path / "b", start_timeout=3.0, checks=task_checks("todo_list"))
    assert verdict.tests_pass and verdict.tests_notice_gutting is False and verdict.score == 3, verdict.reason


def test_every_packaged_task_has_four_to_eight_checks_and_a_reference_solution() -> None:
    tasks = load_tasks()
    assert all(4 <= len(t.checks) <= 8 for t in tasks), [(t.id, len(t.checks)) for t in tasks]
    assert {p.name for p in REFERENCE.iterdir() if p.is_dir()} == {t.id for t in tasks}
    assert not any(c.name in t.prompt for t in tasks for c in t.checks if len(c.name) > 12)  # checks stay hidden
