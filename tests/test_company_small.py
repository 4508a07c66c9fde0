"""`make demo` on the scripted model: the Makefile's todo list, built the way the 0.5B went wrong (#12).

The 0.5B designed todo_list.py + main.py, copied the library into main.py (the class, no commands), and QA's
test file defined its own `cli` fixture over ours and imported a `main` function that main.py lacks. Here the
script answers the same way, and the company must still deliver a todo list a person can use.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from company_script import prd, role_of
from langgraph.graph.state import CompiledStateGraph

from sopgraph.graphs import runner
from sopgraph.graphs.company import build_company_graph, company_input
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.nodes.company.reviewer import ReviewReply
from sopgraph.nodes.scripted import ScriptedRequest
from sopgraph.state.company import PRD, Arbitration, CodeFile, Delivery, QAReport, SystemDesign, TaskPlan
from sopgraph.state.context import Context

IDEA = next(
    line.split("?=", 1)[1].strip()
    for line in (Path(__file__).resolve().parent.parent / "Makefile").read_text().splitlines()
    if line.startswith("IDEA ?=")
)
TODO = '''"""A command-line todo list kept in todo.json."""

import json
import sys
from pathlib import Path

STORE = Path("todo.json")


def load():
    return json.loads(STORE.read_text()) if STORE.exists() else []


def run(argv):
    if not argv:
        print("usage: python main.py add TEXT | list | done N | remove N")
        return 0
    command, args = argv[0], argv[1:]
    items = load()
    if command == "add":
        items.append({"text": " ".join(args), "done": False})
    elif command == "list":
        for number, item in enumerate(items, 1):
            print(f"{number}. [{'x' if item['done'] else ' '}] {item['text']}")
        return 0
    elif command == "done":
        items[int(args[0]) - 1]["done"] = True
    elif command == "remove":
        del items[int(args[0]) - 1]
    else:
        print(f"unknown command: {command}")
        return 2
    STORE.write_text(json.dumps(items))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
'''
LIBRARY = '''"""The todo list."""


class TodoList:
    def __init__(self):
        self.items = []

    def add(self, text):
        self.items.append([text, False])

    def list(self):
        return list(self.items)

    def done(self, number):
        self.items[number - 1][1] = True

    def remove(self, number):
        del self.items[number - 1]
'''
TESTS = """def test_add_then_list(cli):
    assert cli("add", "buy milk").returncode == 0
    assert "1. [ ] buy milk" in cli("list").stdout


def test_done_marks_the_item(cli):
    cli("add", "buy milk")
    cli("done", "1")
    assert "1. [x] buy milk" in cli("list").stdout


def test_remove_deletes_the_item(cli):
    cli("add", "a")
    cli("add", "b")
    cli("remove", "1")
    shown = cli("list").stdout
    assert "1. [ ] b" in shown and "] a" not in shown
"""
UNPACKING = """def test_add_then_list(cli):
    code, out, err = cli("add", "buy milk")
    assert code == 0 and err == ""
    cli("list")
    assert cli.returncode == 0 and "1. [ ] buy milk" in cli.stdout
"""
"""The two other ways the models used the fixture: the 1.5B unpacked the run, the 0.5B read the last run's
output from `cli` itself."""
SHADOWING = (  # what the 0.5B's QA wrote: its own cli fixture, and a function main.py does not define
    "import subprocess\n\nimport pytest\nfrom main import main\n\n\n@pytest.fixture\ndef cli():\n"
    "    def run(*args):\n        return subprocess.run(['python', 'main.py', *args], capture_output=True)\n\n"
    "    return run\n\n\n" + TESTS
)


FORGETFUL = (
    LIBRARY.replace('"""The todo list."""', '"""A command-line todo list."""\n\nimport argparse')
    + """

def main(argv=None):
    parser = argparse.ArgumentParser(description="A todo list.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("add").add_argument("text")
    sub.add_parser("list")
    sub.add_parser("done").add_argument("number", type=int)
    sub.add_parser("remove").add_argument("number", type=int)
    args = parser.parse_args(argv)
    todos = TodoList()
    if args.command == "add":
        todos.add(args.text)
    elif args.command == "list":
        for number, (text, done) in enumerate(todos.items, 1):
            print(f"{number} [{'x' if done else ' '}] {text}")
    elif args.command == "done":
        todos.done(args.number)
    else:
        todos.remove(args.number)


if __name__ == "__main__":
    main()
"""
)
"""What the 1.5B wrote for make demo: the commands, the idea's listing, and nothing kept in todo.json."""
MISNAMED = TODO.replace("    STORE.write_text(", '    Path("todos.json").write_text(')
"""Reads todo.json and writes todos.json: it names the file and reads and writes, yet keeps nothing."""
UNDOTTED = TODO.replace("{number}. [", "{number} [")
"""The 1.5B's listing, `1 [x] buy milk`: what the idea asks (it gives no dot)."""
OFF_BY_ONE = UNDOTTED.replace('items[int(args[0]) - 1]["done"] = True', 'items[int(args[0])]["done"] = True')
"""`done N` marks the item after N (an IndexError for the last one): a fault only the tests see."""
LOOSE = TESTS.replace('"1. [', '"[')
"""QA's tests once they assert only what the idea says."""


@dataclass
class TodoCompany:
    """The script: the 0.5B's design, and its mistakes, switched on by attributes."""

    copy_until_fix: bool = False
    """main.py is the library's class (no commands) until the engineer is asked to fix it."""
    shadow_tests: int = 0
    tests: str = TESTS
    """QA's good tests."""
    """How many of QA's replies for tests/test_main.py are SHADOWING before the good tests."""
    fixed_tests: str | None = None
    """What QA answers when asked to fix its test file (else `tests`)."""
    main: str = TODO
    """main.py as the engineer writes it (also in a fresh rewrite during debug)."""
    fixed_main: str = TODO
    """What the engineer answers when asked to fix main.py."""
    ruling: str = "code"
    """The arbiter's answer."""
    prompts: dict[str, list[str]] = field(default_factory=dict)

    def __call__(self, request: ScriptedRequest) -> Any:
        role, prompt = role_of(request), request.prompt
        self.prompts.setdefault(role, []).append(prompt)
        if request.schema is PRD:
            return prd("todo list").model_copy(
                update={"user_stories": ["As a user, I want to add, list, finish and remove todos"]}
            )
        if request.schema is SystemDesign:  # the 0.5B's design of make demo
            return {
                "implementation_approach": "A TodoList class kept in todo.json, and a command line.",
                "file_list": ["todo_list.py", "main.py"],
                "data_structures": "classDiagram\n  class TodoList {\n    +add(text)\n    +done(n)\n  }",
                "call_flow": "sequenceDiagram\n  main->>TodoList: add(text)",
            }
        if request.schema is TaskPlan:
            return {
                "logic_analysis": [
                    ["todo_list.py", "the TodoList class"],
                    {"file": "main.py", "description": "the commands", "depends_on": ["todo_list.py"]},
                ],
                "task_list": ["todo_list.py", "main.py"],
            }
        if request.schema is ReviewReply:
            return {"verdict": "LGTM", "comments": []}
        if request.schema is Arbitration:
            return {"wrong": self.ruling, "reason": "the request says so"}
        if role == "qa":
            if self.shadow_tests and "itself is broken" not in prompt:
                self.shadow_tests -= 1
                return f"```python\n{SHADOWING}```"
            fixing = "itself is broken" in prompt and self.fixed_tests is not None
            return f"```python\n{self.fixed_tests if fixing else self.tests}```"
        if "Write `todo_list.py`" in prompt:
            return f"```python\n{LIBRARY}```"
        if "main.py" in prompt:
            if "Fix main.py" in prompt:
                return f"```python\n{self.fixed_main}```"
            return f"```python\n{LIBRARY if self.copy_until_fix else self.main}```"
        return "```python\npass\n```"


@pytest.fixture
def todo(scripted) -> tuple[str, TodoCompany]:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = script = TodoCompany()
    return name, script


def run(name: str, out_dir: Path, **settings: Any) -> dict[str, Any]:
    graph: CompiledStateGraph
    with open_checkpointer("memory") as saver:
        graph = build_company_graph().compile(checkpointer=saver)
        payload = company_input(IDEA, out_dir=out_dir, max_review_rounds=0, **settings)
        config = {"configurable": {"thread_id": f"todo-{uuid.uuid4().hex[:8]}"}}
        return graph.invoke(payload, config, context=Context(model=name))


def docs(values: dict[str, Any], cls: type[Any]) -> list[Any]:
    return [m.payload for m in values["pool"] if isinstance(m.payload, cls)]


def use(repo: Path, *args: str) -> str:
    """Run the delivered program as its user would, in the repository (it keeps todo.json there)."""
    done = subprocess.run([sys.executable, "main.py", *args], cwd=repo, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_demo_builds_one_main_py_with_the_commands_and_a_person_can_use_it(todo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = todo
    repo = tmp_path / "repo"
    values = run(name, repo)
    (design,) = docs(values, SystemDesign)
    assert design.file_list == ["main.py"]  # the architect named todo_list.py too: one file for a small idea
    assert any("one file, main.py, holds the whole program" in w for w in values["warnings"])
    assert "as one Python file, main.py" in script.prompts["architect"][0]
    engineer = script.prompts["engineer"]
    assert len(engineer) == 1 and "Write `main.py`" in engineer[0]  # never a sibling module to copy
    assert "Files it imports" not in engineer[0] and "class TodoList:" not in engineer[0]  # no library code
    assert "main.py is the program's only file" in engineer[0]
    assert "handles the commands itself" in engineer[0] and "add, list, done, remove" in engineer[0]
    (report,) = docs(values, QAReport)
    assert report.all_passed and report.passed == 3 and not report.problems
    assert docs(values, Delivery)[0].outcome == "passed"
    code = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*.py") if "__pycache__" not in p.parts)
    assert code == ["main.py", "tests/conftest.py", "tests/test_main.py"]
    # A person can use it: add, list, complete, remove.
    use(repo, "add", "buy milk")
    use(repo, "add", "call mum")
    use(repo, "done", "1")
    assert use(repo, "list").splitlines() == ["1. [x] buy milk", "2. [ ] call mum"]
    use(repo, "remove", "1")
    assert use(repo, "list").splitlines() == ["1. [ ] call mum"]


def test_the_cli_fixture_also_unpacks_a_run_and_keeps_the_last_one(todo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = todo
    script.tests = UNPACKING
    (report,) = docs(run(name, tmp_path / "repo"), QAReport)
    assert report.all_passed and report.passed == 1, report.summary


def test_split_files_keep_the_design_and_give_main_py_the_library(todo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = todo
    values = run(name, tmp_path / "repo", one_file=False)
    (design,) = docs(values, SystemDesign)
    assert design.file_list == ["todo_list.py", "main.py"]
    (main_prompt,) = [p for p in script.prompts["engineer"] if "Write `main.py`" in p]
    assert "class TodoList:" in main_prompt and "only file" not in main_prompt  # what the 0.5B copied
    assert "handles the commands itself" in main_prompt  # the commands are asked for in both plans


def test_an_entry_module_without_the_commands_goes_to_debug(todo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = todo
    script.copy_until_fix = True
    values = run(name, tmp_path / "repo", max_debug=2)
    first, second = docs(values, QAReport)
    expected = "main.py handles none of the request's commands (add, list, done, remove)"
    assert any(p.startswith(expected) and "sys.argv[1]" in p for p in first.problems), first.problems
    assert first.suspects[0] == "main.py" and not first.program_ok and expected in first.summary
    fixes = [p for p in script.prompts["engineer"] if "Fix main.py" in p]
    assert fixes and all(expected in p for p in fixes)  # the message reaches the fix
    assert second.all_passed and not second.problems
    assert (tmp_path / "repo/main.py").read_text() == TODO


def test_qa_tests_that_shadow_the_cli_fixture_or_import_what_main_lacks_are_fixed_by_qa(todo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = todo
    script.shadow_tests = 1
    values = run(name, tmp_path / "repo")
    versions = [d for d in docs(values, CodeFile) if d.path == "tests/test_main.py"]
    assert [d.version for d in versions] == [1, 2, 3]  # QA's reply, without its cli fixture, then the re-ask
    assert "def cli" in versions[0].content and "def cli" not in versions[1].content
    assert "from main import main" in versions[1].content and versions[2].content == TESTS
    assert any("removed its own cli, which hid the fixture of tests/conftest.py" in w for w in values["warnings"])
    (reask,) = [p for p in script.prompts["qa"] if "It was refused" in p]
    assert "tests/test_main.py imports main from main.py (line 4), which main.py does not define" in reask
    (report,) = docs(values, QAReport)  # caught before the test run: one run, and it passes
    assert report.all_passed and not report.test_problems
    assert not [p for p in script.prompts["engineer"] if "Fix" in p]


def test_a_test_file_still_wrong_after_the_reask_goes_back_to_qa_not_to_the_engineer(todo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = todo
    script.shadow_tests = 2
    values = run(name, tmp_path / "repo", max_debug=2)
    first, second = docs(values, QAReport)
    problem = "tests/test_main.py imports main from main.py (line 4), which main.py does not define"
    assert first.test_problems == [problem] and first.program_ok and problem in first.summary
    assert first.suspects == ["tests/test_main.py"]  # the ImportError names main.py: it is not blamed
    assert not docs(values, Arbitration)
    (fix,) = [p for p in script.prompts["qa"] if "itself is broken" in p]  # QA's role fixes it
    assert problem in fix and "Interface of main.py" in fix and "def run(argv)" in fix
    assert not [p for p in script.prompts["engineer"] if "Fix" in p or "itself is broken" in p]
    assert second.all_passed and (tmp_path / "repo/tests/test_main.py").read_text() == TESTS
    tests = [m for m in values["pool"] if isinstance(m.payload, CodeFile) and m.payload.path == "tests/test_main.py"]
    assert {m.sender for m in tests} == {"qa"} and tests[-1].payload.note.startswith("debug fix")


def test_one_file_can_be_set_on_a_fork() -> None:
    graph = runner.compile_graph("company", None)
    assert runner.validated_edits(graph, {}, {"one_file": False}) == {"one_file": False}
    with pytest.raises(runner.RunError, match="one_file"):
        runner.validated_edits(graph, {}, {"one_file": "sometimes"})


# -- a program that keeps nothing, and tests that expect what the idea does not ask (make demo on the 1.5B) --

NEVER_OPENS = (
    "main.py never opens todo.json, so nothing the user adds is kept between two commands: load it at start, "
    "save it after every change"
)
FORGETS = "main.py does not keep what a command is given for the next run: in one folder, "


def test_a_main_py_that_keeps_nothing_in_todo_json_goes_to_debug_with_what_it_lacks(todo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = todo
    script.main = FORGETFUL
    values = run(name, tmp_path / "repo", max_debug=2)
    write = script.prompts["engineer"][0]
    assert "The request keeps its data in todo.json: main.py loads it at start from the current folder" in write
    first, second = docs(values, QAReport)
    assert NEVER_OPENS in first.problems, first.problems
    (forgot,) = [p for p in first.problems if p.startswith(FORGETS)]
    # the facts: both commands as typed, what each printed, and the text that should have shown
    assert "`python main.py add 'water the plants'` (exit 0, printed nothing)" in forgot
    assert "then `python main.py list` (exit 0, printed nothing); the last does not show 'water the plants'" in forgot
    assert first.starts and not first.program_ok and first.suspects[0] == "main.py"
    # The arbiter is asked even though the program fails its checks (its tests might expect what the idea does
    # not ask); it blames the code, so only the engineer fixes, and QA's tests stay as they were.
    assert [r.wrong for r in docs(values, Arbitration)] == ["code"]
    assert not [d for d in docs(values, CodeFile) if d.path.startswith("tests/") and d.version > 1]
    fixes = [p for p in script.prompts["engineer"] if "Fix main.py" in p]
    assert fixes and all(NEVER_OPENS in p and FORGETS in p for p in fixes)
    assert second.all_passed and not second.problems
    repo = tmp_path / "repo"
    use(repo, "add", "buy milk")
    assert use(repo, "list").splitlines() == ["1. [ ] buy milk"]


def test_a_program_that_names_and_saves_its_file_but_forgets_fails_the_start_check(todo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = todo
    script.main = MISNAMED
    values = run(name, tmp_path / "repo", max_debug=1)
    first, second = docs(values, QAReport)
    assert not [p for p in first.problems if "todo.json" in p]  # it names todo.json, reads and writes
    (forgot,) = [p for p in first.problems if p.startswith(FORGETS)]
    assert "`python main.py list` (exit 0, printed nothing)" in forgot
    assert second.all_passed and not second.problems


def test_arbitration_can_blame_both_and_fixes_the_test_and_the_code_in_one_round(todo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = todo
    # The 1.5B's listing without the dot and a wrong `done`; QA's tests expect "1. [ ] buy milk".
    script.main, script.fixed_main, script.fixed_tests, script.ruling = OFF_BY_ONE, UNDOTTED, LOOSE, "both"
    values = run(name, tmp_path / "repo", max_debug=2)
    first, second = docs(values, QAReport)
    assert first.program_ok and first.passed == 0 and first.failing_tests == ["tests/test_main.py"]
    (ruling,) = docs(values, Arbitration)
    assert ruling.wrong == "both"
    (prompt,) = script.prompts["qa_lead"]
    assert IDEA in prompt  # the request word for word, and what it leaves unsaid is the test's fault
    assert "an exact output format beyond what the request says" in prompt and "wrong='both'" in prompt
    assert "Assert only what the request states" in script.prompts["qa"][0]  # QA is told so too
    fixes = [(d.path, d.version) for d in docs(values, CodeFile) if d.note.startswith("debug fix after test run 1")]
    assert sorted(fixes) == [("main.py", 2), ("tests/test_main.py", 2)]  # one round, both sides
    # The code's fix was judged on QA's new tests: on the old ones it passed no more than the current code.
    assert not any("no fix candidate beat the current code" in w for w in values["warnings"])
    assert second.all_passed and second.passed == 3
    repo = tmp_path / "repo"
    assert (repo / "main.py").read_text() == UNDOTTED and (repo / "tests/test_main.py").read_text() == LOOSE
    use(repo, "add", "buy milk")
    use(repo, "done", "1")
    assert use(repo, "list").splitlines() == ["1 [x] buy milk"]


# -- make demo on the 0.5B after the data-file check: a main.py whose list needs an argument and whose done is
# -- called mark, and QA's tests expecting the item echoed after add and remove, which the idea never asks

DEMO_MAIN = """import argparse
import json
import os


def load_todo():
    path = os.path.join(os.getcwd(), "todo.json")
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return json.load(file)


def save_todo(todo):
    with open(os.path.join(os.getcwd(), "todo.json"), "w") as file:
        json.dump(todo, file)


def main():
    parser = argparse.ArgumentParser(description="Add, list, mark, remove items.")
    parser.add_argument("command", choices=["add", "list", "mark", "remove"])
    parser.add_argument("item")
    args = parser.parse_args()
    todo = load_todo()
    if args.command == "add":
        todo.append(args.item)
        save_todo(todo)
    elif args.command == "list":
        for number, item in enumerate(todo, start=1):
            print(f"[{number}] {item}")
    elif args.command == "mark":
        todo[int(args.item) - 1] = "done"
        save_todo(todo)
    elif args.command == "remove":
        del todo[int(args.item) - 1]
        save_todo(todo)


if __name__ == "__main__":
    main()
"""
"""The shape of the 0.5B's main.py: it keeps todo.json, but `item` is required for every command (so `list`
fails) and the command the idea calls done is mark."""
LISTS = DEMO_MAIN.replace('parser.add_argument("item")', 'parser.add_argument("item", nargs="?")')
"""A fix of half of it: list works, done is still mark."""
ECHOING = """from main import main


def test_add(cli):
    cli("add", "buy milk")
    assert cli.returncode == 0
    assert "buy milk" in cli.stdout


def test_remove(cli):
    cli("add", "buy milk")
    cli("remove", "1")
    assert cli.returncode == 0
    assert "buy milk" in cli.stdout
"""
"""QA's tests of that run: the item echoed after add and after remove, which the idea never asks."""
NEEDS_ARGUMENT = "then `python main.py list` (exit 2, printed 'usage: main.py"
NO_DONE = "main.py does not handle the request's command done"


def test_a_fix_of_the_start_check_problems_lands_though_tests_expecting_more_fail_on_it(todo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = todo
    script.main, script.tests, script.fixed_main, script.ruling = DEMO_MAIN, ECHOING, LISTS, "code"
    values = run(name, tmp_path / "repo", max_debug=1)
    first, second = docs(values, QAReport)
    assert first.passed == 0 and first.starts and len(first.problems) == 2, first.problems
    assert any(p.startswith(FORGETS) and NEEDS_ARGUMENT in p for p in first.problems)
    assert any(p.startswith(NO_DONE) for p in first.problems)  # "done" is only a value in it: choices say mark
    # LISTS passes no more of the echoing tests, but has one problem fewer: it replaces the current code.
    assert (tmp_path / "repo/main.py").read_text() == LISTS
    assert second.passed == 0 and [p for p in second.problems if p.startswith(NO_DONE)] == second.problems


def test_make_demo_on_the_05b_converges_in_one_round_tests_to_qa_main_py_to_the_engineer(todo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = todo
    # The arbiter blames the tests (they expect an echo the idea never asks); the program fails its checks
    # too, so main.py goes to the engineer in the same round, judged on QA's new tests.
    script.main, script.tests, script.ruling = DEMO_MAIN, ECHOING, "test"
    script.fixed_main, script.fixed_tests = TODO, LOOSE
    values = run(name, tmp_path / "repo", max_debug=1)
    first, second = docs(values, QAReport)
    assert not first.program_ok and first.starts and first.failing_tests == ["tests/test_main.py"]
    assert [r.wrong for r in docs(values, Arbitration)] == ["test"]
    fixes = [(d.path, d.version) for d in docs(values, CodeFile) if d.note.startswith("debug fix after test run 1")]
    assert sorted(fixes) == [("main.py", 2), ("tests/test_main.py", 2)]
    assert second.all_passed and second.passed == 3 and not second.problems
    assert docs(values, Delivery)[0].outcome == "passed"
    repo = tmp_path / "repo"
    use(repo, "add", "buy milk")
    assert use(repo, "list").splitlines() == ["1. [ ] buy milk"]
