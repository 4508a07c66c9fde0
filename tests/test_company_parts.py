"""The company graph's parts: workspace paths, lenient schemas, plan reconciliation, code replies, test-failure
triage, human answers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sopgraph.nodes.company.architect import one_file, runnable_files
from sopgraph.nodes.company.common import complete_imports, extract_code, generate_file, syntax_problem
from sopgraph.nodes.company.diagrams import call_flow, class_diagram, is_empty
from sopgraph.nodes.company.human import parse_answer
from sopgraph.nodes.company.project_manager import reconcile
from sopgraph.nodes.company.qa import modules_to_test, path_of_tests, suspects
from sopgraph.nodes.company.reviewer import ReviewReply
from sopgraph.nodes.llm import ModelGateway
from sopgraph.state.company import PRD, SystemDesign, TaskPlan
from sopgraph.state.context import Context
from sopgraph.tools import sandbox
from sopgraph.tools.workspace import Workspace, WorkspaceError, module_name, validate_path

# -- workspace ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["main.py", "todo/store.py", "pkg/sub/mod_2.py", "data-file.txt", "a+b.py"])
def test_valid_relative_paths(good: str) -> None:
    assert validate_path(good) == good


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "empty"),
        ("/etc/passwd", "not absolute"),
        ("~/x.py", "not absolute"),
        ("C:/x.py", "drive letter"),
        ("c:x.py", "drive letter"),
        ("../x.py", "'..'"),
        ("a/../../x.py", "'..'"),
        ("a/./x.py", "'.'"),
        (".git/config", "hidden"),
        ("a/.ssh/id", "hidden"),
        ("a\\b.py", "backslash"),
        ("a\x00.py", "control characters"),
        ("a\n.py", "control characters"),
        ("a//b.py", "empty path component"),
        ("a/", "empty path component"),
        ("a b.py", "only letters"),
        ("con.py", "reserved device"),
        ("x" * 200 + ".py", "longer than"),
    ],
)
def test_invalid_paths_are_rejected_with_a_reason(bad: str, reason: str) -> None:
    with pytest.raises(WorkspaceError, match=reason):
        validate_path(bad)


def test_workspace_writes_idempotently_and_never_outside(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "repo").ensure()
    assert ws.write("pkg/mod.py", "x = 1\n") is True
    stamp = (ws.root / "pkg/mod.py").stat().st_mtime_ns
    assert ws.write("pkg/mod.py", "x = 1\n") is False  # unchanged: not touched
    assert (ws.root / "pkg/mod.py").stat().st_mtime_ns == stamp
    assert ws.read("pkg/mod.py") == "x = 1\n" and ws.read("missing.py") is None and ws.read("../x") is None
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, ws.root / "link")
    with pytest.raises(WorkspaceError, match="symlink"):
        ws.write("link/evil.py", "boom")
    assert not (outside / "evil.py").exists()
    (ws.root / ".hidden").write_text("h")
    assert list(ws.files()) == ["pkg/mod.py"]
    assert module_name("pkg/mod.py") == "pkg.mod" and path_of_tests("pkg/mod.py") == "tests/test_pkg_mod.py"


# -- lenient schemas ----------------------------------------------------------------------------------------


def test_prd_repairs_the_usual_slips() -> None:
    prd = PRD.model_validate(
        {
            "project_name": "Todo List!",
            "product_goals": "- add items\n- list items",
            "user_stories": [{"story": "As a user I add"}],
            "requirements": ["P0: add", "low: colors", {"requirement": "list", "priority": "high"}, ["P2", "sort"]],
            "ui_notes": ["cli", "colors"],
            "unexpected": "ignored",
        }
    )
    assert prd.project_name == "todo_list" and prd.product_goals == ["add items", "list items"]
    assert [(r.priority.value, r.text) for r in prd.requirements] == [
        ("P0", "add"),
        ("P2", "colors"),
        ("P0", "list"),
        ("P2", "sort"),
    ]
    assert prd.user_stories == ["As a user I add"] and prd.ui_notes == "cli\ncolors"
    with pytest.raises(ValidationError):
        PRD.model_validate({"project_name": "x", "product_goals": [], "user_stories": ["s"], "requirements": ["r"]})


def test_design_keeps_usable_file_names_and_diagram_headers() -> None:
    d = SystemDesign.model_validate(
        {
            "implementation_approach": "simple",
            "file_list": "`todo.py`\n- ./main\n../x.py\nmy-mod.py\ntodo.py",
            "data_structures": "```mermaid\nclass Todo\n```",
            "call_flow": "main->>Todo: add",
        }
    )
    assert d.file_list == ["todo.py", "main.py", "my_mod.py"]
    assert len(d.rejected) == 1 and "'..'" in d.rejected[0]
    assert d.data_structures == "classDiagram\nclass Todo" and d.call_flow.startswith("sequenceDiagram\n")
    with pytest.raises(ValidationError, match="no usable file name"):
        SystemDesign.model_validate({**d.model_dump(), "file_list": ["/abs.py", "docs/x.md"]})


def test_the_design_builds_python_modules_with_an_entry_point() -> None:
    """Seen on the 0.5B architect (make demo): a design of todo_list.py and todo_list.json, no main.py."""
    design = SystemDesign(implementation_approach="json file", file_list=["todo_list.py", "todo_list.json"])
    fixed, notes = runnable_files(design)
    assert fixed.file_list == ["main.py", "todo_list.py"]
    assert any("todo_list.json" in n for n in notes) and any("added main.py" in n for n in notes)
    kept = SystemDesign(implementation_approach="x", file_list=["calc.py", "cli.py"])
    assert runnable_files(kept) == (kept, [])  # an entry module of another name, order untouched


def test_a_small_idea_is_one_file_unless_the_run_says_otherwise() -> None:
    """The one-file rule: the 0.5B engineer, given todo_list.py as context for main.py, copied it (make demo)."""
    small = "a todo list: python main.py add TEXT adds an item, list prints them"
    assert one_file(small, None) == "main.py"
    assert one_file(small.replace("main.py", "app.py"), None) == "app.py"  # the entry module the request names
    assert one_file(small, False) is None  # --split-files, or --set one_file=false on a fork
    assert one_file("a todo list library", None) is None  # no command line spelled: the design's files
    assert one_file("a todo list library", True) == "main.py"  # --one-file
    assert one_file(small + " and more" * 60, None) is None  # over 120 words is not small
    several = SystemDesign(implementation_approach="x", file_list=["todo.py", "main.py"])
    assert one_file(small, None, several) is None  # a change to a project of several files keeps them
    assert one_file(small, None, several.model_copy(update={"file_list": ["main.py"]})) == "main.py"

    design = SystemDesign(implementation_approach="x", file_list=["todo_list.py", "todo.json", "main.py"])
    fixed, notes = runnable_files(design, "main.py")
    assert fixed.file_list == ["main.py"] and fixed.implementation_approach == "x"
    assert notes == [
        "design: one file, main.py, holds the whole program (a small idea; the design named "
        "todo_list.py, todo.json, main.py)"
    ]
    assert runnable_files(fixed, "main.py") == (fixed, [])


def test_review_verdict_and_task_plan_accept_loose_shapes() -> None:
    assert ReviewReply.model_validate({"verdict": "looks good", "comments": "ok"}).verdict == "LGTM"
    assert ReviewReply.model_validate({"verdict": "not good"}).verdict == "LBTM"
    assert ReviewReply.model_validate({"verdict": "lgtm.", "comments": "fine"}).comments == ["fine"]
    assert ReviewReply.model_validate({"verdict": "Bad: bug"}).verdict == "LBTM"
    plan = TaskPlan.model_validate(
        {
            "logic_analysis": [
                ["todo.py", "Todo class"],
                "main: cli",
                {"path": "store", "logic": "save", "deps": "todo"},
            ],
            "task_list": ["todo.py", "main"],
        }
    )
    assert [(t.file, t.description, t.depends_on) for t in plan.logic_analysis] == [
        ("todo.py", "Todo class", []),
        ("main.py", "cli", []),
        ("store.py", "save", ["todo.py"]),
    ]
    assert plan.task_list == ["todo.py", "main.py"]


def test_reconcile_orders_by_dependencies_and_fills_gaps() -> None:
    plan = TaskPlan.model_validate(
        {
            "logic_analysis": [
                ["main.py", "the command line"],
                ["store.py", "saves Todo items; uses todo"],
                ["extra.py", "not in the design"],
            ],
            "task_list": ["main.py", "store.py", "todo.py", "ghost.py"],
        }
    )
    fixed, warnings = reconcile(plan, ["todo.py", "store.py", "main.py"])
    assert fixed.task_list == ["todo.py", "store.py", "main.py"]
    deps = {t.file: t.depends_on for t in fixed.logic_analysis}
    assert deps == {"todo.py": [], "store.py": ["todo.py"], "main.py": ["todo.py", "store.py"]}
    assert any("extra.py" in w for w in warnings) and any("ghost.py" in w for w in warnings)
    cyclic = TaskPlan.model_validate(
        {
            "logic_analysis": [{"file": "a.py", "depends_on": ["b.py"]}, {"file": "b.py", "depends_on": ["a.py"]}],
            "task_list": ["a.py", "b.py"],
        }
    )
    fixed, _ = reconcile(cyclic, ["a.py", "b.py"])
    assert fixed.task_list == ["a.py", "b.py"] and fixed.task_for("a.py").depends_on == []  # type: ignore[union-attr]


def test_missing_imports_of_a_generated_test_are_completed() -> None:
    module = "class TodoList:\n    pass\n\n\ndef add(x):\n    return x\n\n\n_private = 1\n"
    test = '"""Tests."""\n\n\ndef test_a():\n    assert add(TodoList()) is not None\n    pytest.fail\n'
    fixed, added = complete_imports(test, "todo", module)
    assert added == ["import pytest", "from todo import TodoList, add"]
    assert fixed.startswith('"""Tests."""\n\n\nimport pytest\nfrom todo import TodoList, add\ndef test_a')
    ok = "from todo import add\n\n\ndef test_a():\n    assert add(1) == 1\n"
    assert complete_imports(ok, "todo", module) == (ok, [])
    assert complete_imports("def f(:", "todo", module) == ("def f(:", [])


def test_echoed_field_descriptions_are_dropped() -> None:
    d = SystemDesign.model_validate(
        {
            "implementation_approach": "x",
            "file_list": ["a.py"],
            "data_structures": "Mermaid classDiagram of the classes and their methods.",
            "call_flow": "Mermaid sequenceDiagram of the main call flow.",
        }
    )
    assert d.data_structures == "classDiagram" and d.call_flow == "sequenceDiagram"
    prd = PRD.model_validate(
        {
            "project_name": "x",
            "product_goals": ["g"],
            "user_stories": ["s"],
            "requirements": ["P0: r"],
            "open_questions": ["What is still unclear.", "Which storage?"],
        }
    )
    assert prd.open_questions == ["Which storage?"]


def test_diagrams_are_read_off_the_code() -> None:
    code = {
        "calc.py": "def add(a, b):\n    return a + b\n\n\nclass Acc(Base):\n    def push(self, x):\n        pass\n",
        "main.py": "import calc\nfrom calc import add as plus\n\n\nprint(plus(1, 2), calc.Acc().push(3))\n",
        "broken.py": "def (:",
    }
    classes = class_diagram(code)
    assert "class calc {\n    <<module>>\n    +add(a, b)\n  }" in classes
    assert "class Acc {\n    +push(x)\n  }" in classes and "Base <|-- Acc" in classes
    flow = call_flow(code, "main.py")
    assert flow.splitlines() == ["sequenceDiagram", "  main->>calc: plus()", "  main->>calc: Acc()"]
    assert call_flow(code, None) == "sequenceDiagram" and is_empty("classDiagram\n")


# -- code replies -------------------------------------------------------------------------------------------


def test_extract_code_from_fences_and_prose() -> None:
    assert extract_code("Sure:\n```python\nx = 1\n```\nthen\n```\ny\n```") == "x = 1\n"
    assert extract_code("```py\nimport os\n") == "import os\n"  # unclosed fence
    assert extract_code("plain = True") == "plain = True\n"
    assert syntax_problem("a.py", "def f(:\n").startswith("SyntaxError")  # type: ignore[union-attr]
    assert syntax_problem("notes.txt", "def f(:") is None and syntax_problem("a.py", "") == "the reply held no code"


def test_unparsable_code_is_reasked_once_then_kept_with_a_warning(scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    replies = ["Here it is:\ndef broken(:\n    pass\n", "```python\ndef fixed():\n    return 1\n```"]
    model.script = lambda request: replies.pop(0)
    llm = ModelGateway(Context(model=name), "engineer")
    code, warnings = generate_file(llm, "Write `a.py`", "a.py", "system")
    assert code == "def fixed():\n    return 1\n" and warnings == []
    assert "does not parse" in model.requests[1].last
    model.script = lambda request: "def still(:\n"
    code, warnings = generate_file(llm, "Write `b.py`", "b.py", "system")
    assert code == "def still(:\n" and "kept code that does not parse" in warnings[0]
    calls = model.calls
    stingy = ModelGateway(Context(model=name, budget_tokens=5), "engineer")
    code, warnings = generate_file(stingy, "Write `c.py`", "c.py", "s")  # budget spent by the first call
    assert model.calls == calls + 1 and warnings


# -- test failures --------------------------------------------------------------------------------------------


def _report(cases: list[sandbox.TestCase], stdout: str = "") -> sandbox.TestReport:
    result = sandbox.SandboxResult(
        exit_code=1,
        stdout=stdout,
        stderr="",
        duration_s=0.1,
        timed_out=False,
        limit_hit=None,
        isolation="none",
        network_isolated=False,
        truncated=False,
        stdout_bytes=0,
        stderr_bytes=0,
        uid_dropped=False,
        sandbox_uid=None,
    )
    counts = {o: sum(c.outcome == o for c in cases) for o in ("passed", "failed", "error", "skipped")}
    return sandbox.TestReport(
        counts["passed"], counts["failed"], counts["error"], counts["skipped"], cases, result, report_found=True
    )


def test_suspects_follow_the_failure() -> None:
    code, tests = ["todo.py", "store.py", "main.py"], ["tests/test_todo.py", "tests/test_store.py"]
    named = _report(
        [
            sandbox.TestCase(
                "tests.test_todo::test_add",
                "failed",
                "assert 1 == 2",
                "tests/test_todo.py:5: in test_add\n    assert store.load() == 2\nE   assert 1 == 2",
            )
        ]
    )
    assert suspects(named, code, tests) == ["store.py"]
    unnamed = _report([sandbox.TestCase("tests.test_todo::test_x", "failed", "assert False", "E   assert False")])
    assert suspects(unnamed, code, tests) == ["todo.py"]
    syntax = _report(
        [
            sandbox.TestCase(
                "tests.test_store",
                "error",
                "collection failure",
                'E     File "/tmp/run/ws/tests/test_store.py", line 3\n'
                "E       from store import (\nE   SyntaxError: bad",
            )
        ]
    )
    assert suspects(syntax, code, tests) == ["tests/test_store.py"]
    in_module = _report(
        [
            sandbox.TestCase(
                "tests.test_store",
                "error",
                "collection failure",
                "tests/test_store.py:1: in <module>\n"
                'E     File "/tmp/run/ws/store.py", line 9\nE   IndentationError: x',
            )
        ]
    )
    assert suspects(in_module, code, tests) == ["store.py"]
    wrong_module = _report(
        [
            sandbox.TestCase(
                "tests.test_store",
                "error",
                "collection failure",
                "tests/test_store.py:1: in <module>\n    from storage import load\nE   ModuleNotFoundError: "
                "No module named 'storage'",
                file="tests/test_store.py",
            )
        ]
    )
    assert suspects(wrong_module, code, tests) == ["tests/test_store.py"]
    assert modules_to_test(["main.py", "todo.py", "pkg/__init__.py"]) == ["todo.py"]
    assert modules_to_test(["main.py"]) == ["main.py"]


# -- human answers -----------------------------------------------------------------------------------------


def test_human_answers() -> None:
    prd = PRD.model_validate(
        {"project_name": "x", "product_goals": ["g"], "user_stories": ["s"], "requirements": ["P0: r"]}
    )
    for approve in (True, None, "approve", "", '{"action": "approve"}', {"action": "approve"}):
        assert parse_answer(approve, prd) == ("approve", None, [])
    action, edited, changed = parse_answer({"action": "edit", "document": {"product_goals": ["new"]}}, prd)  # type: ignore[misc]
    assert action == "edit" and edited.product_goals == ["new"] and changed == ["product_goals"]  # type: ignore[union-attr]
    full: Any = parse_answer({"document": {**prd.model_dump(mode="json"), "ui_notes": "tui"}}, prd)
    assert full[0] == "edit" and full[1].ui_notes == "tui"
    assert "unknown field" in str(parse_answer({"action": "edit", "document": {"goals": []}}, prd))
    assert "invalid" in str(parse_answer({"action": "edit", "document": {"product_goals": []}}, prd))
    assert "unknown action" in str(parse_answer({"action": "reject"}, prd))
    assert "not understood" in str(parse_answer("maybe later", prd))
    assert "non-empty 'document'" in str(parse_answer({"action": "edit"}, prd))
