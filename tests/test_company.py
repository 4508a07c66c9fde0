"""The software company graph on the scripted model: SOP order, subscriptions, the sandboxed debug loop,
review send-back, budget and crash resume, human review, incremental updates."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from company_script import BUGGY_CALC, FORMAT, GOOD_CALC, MAIN, TEST_CALC, Company, design, plan, prd
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, Send

from sopgraph.graphs import runner
from sopgraph.graphs.company import build_company_graph, company_input
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.nodes.company import architect, engineer, product_manager, project_manager, qa, reviewer
from sopgraph.nodes.llm import ModelError
from sopgraph.state.company import (
    DELIVER,
    EXISTING_CODE,
    EXISTING_DESIGN,
    EXISTING_PRD,
    EXISTING_TASKS,
    HUMAN_REVIEW,
    PRD,
    REVIEW_CODE,
    RUN_TESTS,
    USER_REQUIREMENT,
    WRITE_CODE,
    WRITE_DESIGN,
    WRITE_PRD,
    WRITE_TASKS,
    WRITE_TEST,
    Arbitration,
    CodeFile,
    CodeReview,
    Delivery,
    HumanDecision,
    QAReport,
    SystemDesign,
    TaskPlan,
    UserRequirement,
)
from sopgraph.state.context import Context
from sopgraph.state.pool import Message

IDEA = "a command-line calculator"


def compiled(saver: Any = None) -> CompiledStateGraph:
    if saver is None:
        with open_checkpointer("memory") as memory:
            saver = memory
    return build_company_graph().compile(checkpointer=saver)


def config(thread: str | None = None) -> Any:
    return {"configurable": {"thread_id": thread or f"co-{uuid.uuid4().hex[:8]}"}}


def invoke(graph: CompiledStateGraph, payload: Any, cfg: Any, model: str, **ctx: Any) -> dict[str, Any]:
    return graph.invoke(payload, cfg, context=Context(model=model, **ctx))


def kinds(values: dict[str, Any]) -> list[str]:
    return [m.kind for m in values["pool"]]


def docs(values: dict[str, Any], cls: type[Any]) -> list[Any]:
    return [m.payload for m in values["pool"] if isinstance(m.payload, cls)]


def repo_files(root: Path) -> list[str]:
    """The repository's files, without sopgraph's own hidden bookkeeping (.sopgraph/)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".sopgraph" not in p.parts)


def delivery(values: dict[str, Any]) -> Delivery:
    (found,) = docs(values, Delivery)
    return found


# -- the whole SOP -------------------------------------------------------------------------------------------


def test_full_sop_runs_in_order_and_delivers_a_tested_repository(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    out_dir = tmp_path / "repo"
    graph = compiled()
    cfg = config()
    values = invoke(graph, company_input(IDEA, out_dir=out_dir), cfg, name)

    order = [USER_REQUIREMENT, WRITE_PRD, WRITE_DESIGN, WRITE_TASKS, WRITE_CODE, REVIEW_CODE, WRITE_TEST, RUN_TESTS]
    seen = kinds(values)
    firsts = [seen.index(k) for k in [*order, DELIVER]]
    assert firsts == sorted(firsts), seen
    assert seen[-1] == DELIVER
    first_call = {role: i for i, (role, _) in reversed(list(enumerate(script.calls)))}
    roles = ["product_manager", "architect", "project_manager", "engineer", "reviewer", "qa"]
    assert sorted(roles, key=first_call.__getitem__) == roles
    assert [r.role for r in values["usage"]][:3] == roles[:3]

    # Files in dependency order: main.py imports calc and fmt, so it is written after both, with them as context.
    written = [d.path for d in docs(values, CodeFile) if d.path in ("calc.py", "fmt.py", "main.py")]
    assert sorted(written[:2]) == ["calc.py", "fmt.py"] and written[2] == "main.py"
    (main_prompt,) = [p for p in script.prompts["engineer"] if "Write `main.py`" in p]
    assert "def add(a, b)" in main_prompt and "def show(value)" in main_prompt
    (calc_prompt,) = [p for p in script.prompts["engineer"] if "Write `calc.py`" in p]
    assert "def show" not in calc_prompt  # only the files it imports
    # The entry module's prompt quotes the idea word for word (its commands); the other modules' do not.
    assert "word for word" in main_prompt and IDEA in main_prompt and IDEA not in calc_prompt
    # The two independent files were written in one step, in parallel.
    steps = [snap.next for snap in graph.get_state_history(cfg)]
    assert ("write_code", "write_code") in steps and ("review_code", "review_code", "review_code") in steps

    report = delivery(values)
    assert report.outcome == "passed" and report.passed_on_attempt == 1 and report.attempts == 1
    assert values["outcome"] == "tests passed on attempt 1 of 1"
    (qa_report,) = docs(values, QAReport)
    assert (
        qa_report.passed == 3
        and qa_report.all_passed
        and qa_report.test_files
        == [
            "tests/test_calc.py",
            "tests/test_fmt.py",
        ]
    )

    files = repo_files(out_dir)
    assert files == [
        "README.md",
        "calc.py",
        "docs/design.md",
        "docs/prd.md",
        "docs/sopgraph.json",
        "docs/tasks.md",
        "docs/test_report.md",
        "fmt.py",
        "main.py",
        "tests/test_calc.py",
        "tests/test_fmt.py",
    ]
    assert (out_dir / "calc.py").read_text() == GOOD_CALC and (out_dir / "main.py").read_text() == MAIN
    assert (out_dir / "fmt.py").read_text() == FORMAT  # unfenced reply kept as is
    assert (out_dir / "tests/test_calc.py").read_text() == TEST_CALC  # prose around the fence dropped
    assert (out_dir / "tests/test_fmt.py").read_text().startswith("from fmt import show\ndef test_show():")
    assert "tests/test_fmt.py: added missing imports: from fmt import show" in values["warnings"]
    prd_md = (out_dir / "docs/prd.md").read_text()
    assert "## Requirement pool" in prd_md and "| P0 | add two integers |" in prd_md and IDEA in prd_md
    design_md = (out_dir / "docs/design.md").read_text()
    assert "```mermaid\nclassDiagram" in design_md and "```mermaid\nsequenceDiagram" in design_md
    tasks_md = (out_dir / "docs/tasks.md").read_text()
    assert "3. `main.py`" in tasks_md and "| `main.py` | `calc.py`, `fmt.py` |" in tasks_md
    readme = (out_dir / "README.md").read_text()
    assert "# calculator" in readme and "python main.py" in readme and "passed on attempt 1" in readme
    story = "- As a user, I want to add two numbers so that I get their sum"
    assert f"## Use\n\n{story}\n  - `python main.py --help`" in readme  # how to use each user story
    manifest = json.loads((out_dir / "docs/sopgraph.json").read_text())
    assert manifest["requirements"] == [IDEA] and manifest["files"] == ["calc.py", "fmt.py", "main.py"]
    assert "| 1 | 3 | 0 | 0 |" in (out_dir / "docs/test_report.md").read_text()


def test_task_plan_is_reordered_by_dependencies(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, _ = company
    values = invoke(compiled(), company_input(IDEA, out_dir=tmp_path), config(), name)
    (tasks,) = docs(values, TaskPlan)
    assert tasks.task_list[-1] == "main.py"  # the script listed it first
    assert tasks.task_for("main.py").depends_on == ["calc.py", "fmt.py"]  # type: ignore[union-attr]


# -- subscriptions ------------------------------------------------------------------------------------------

MARKERS = {
    USER_REQUIREMENT: "MARK_REQUIREMENT",
    EXISTING_PRD: "MARK_OLD_PRD",
    EXISTING_DESIGN: "MARK_OLD_DESIGN",
    EXISTING_TASKS: "MARK_OLD_TASKS",
    EXISTING_CODE: "MARK_OLD_CODE",
    WRITE_PRD: "MARK_PRD",
    WRITE_DESIGN: "MARK_DESIGN",
    WRITE_TASKS: "MARK_TASKS",
    WRITE_CODE: "MARK_CODE",
    REVIEW_CODE: "MARK_REVIEW",
    WRITE_TEST: "MARK_TEST",
    RUN_TESTS: "MARK_REPORT",
    HUMAN_REVIEW: "MARK_HUMAN",
}


def full_pool() -> list[Message]:
    """One message of every kind, each carrying its own marker."""
    d = SystemDesign.model_validate({**design(), "implementation_approach": f"{MARKERS[WRITE_DESIGN]} modules"})
    old_d = SystemDesign.model_validate({**design(), "implementation_approach": MARKERS[EXISTING_DESIGN]})
    t = TaskPlan.model_validate({**plan(), "shared_knowledge": MARKERS[WRITE_TASKS]})
    old_t = TaskPlan.model_validate({**plan(), "shared_knowledge": MARKERS[EXISTING_TASKS]})
    code = [f"# {MARKERS[WRITE_CODE]}\n{body}" for body in (GOOD_CALC, FORMAT, MAIN)]
    payloads: list[tuple[str, str, Any]] = [
        ("user", USER_REQUIREMENT, UserRequirement(text=f"{MARKERS[USER_REQUIREMENT]} {IDEA}")),
        ("repository", EXISTING_PRD, prd(extra=MARKERS[EXISTING_PRD])),
        ("repository", EXISTING_DESIGN, old_d),
        ("repository", EXISTING_TASKS, old_t),
        ("repository", EXISTING_CODE, CodeFile(path="calc.py", content=f"# {MARKERS[EXISTING_CODE]}\n", version=0)),
        ("product_manager", WRITE_PRD, prd(extra=MARKERS[WRITE_PRD])),
        ("architect", WRITE_DESIGN, d),
        ("project_manager", WRITE_TASKS, t),
        *[
            ("engineer", WRITE_CODE, CodeFile(path=p, content=c))
            for p, c in zip(["calc.py", "fmt.py", "main.py"], code, strict=True)
        ],
        (
            "reviewer",
            REVIEW_CODE,
            CodeReview(path="calc.py", version=1, verdict="LBTM", comments=[MARKERS[REVIEW_CODE]]),
        ),
        ("qa", WRITE_TEST, CodeFile(path="tests/test_calc.py", content=f"# {MARKERS[WRITE_TEST]}\n{TEST_CALC}")),
        ("qa", RUN_TESTS, QAReport(attempt=1, failed=1, summary=MARKERS[RUN_TESTS], suspects=["calc.py"])),
        ("human", HUMAN_REVIEW, HumanDecision(stage="prd", action="approve")),
    ]
    return [
        Message(sender=sender, kind=kind, content=MARKERS[kind], payload=payload) for sender, kind, payload in payloads
    ]


def _prompts_of(result: Any, script: Company, role: str) -> list[str]:
    prompts = list(script.prompts.get(role, []))
    if isinstance(result, Command):
        gotos = result.goto if isinstance(result.goto, (list, tuple)) else [result.goto]
        prompts += [g.arg["job"].prompt for g in gotos if isinstance(g, Send)]
    return prompts


@pytest.mark.parametrize(
    ("module", "node", "expected"),
    [
        (product_manager, product_manager.product_manager, {USER_REQUIREMENT, EXISTING_PRD}),
        (architect, architect.architect, {WRITE_PRD, EXISTING_DESIGN}),
        (project_manager, project_manager.project_manager, {WRITE_DESIGN, EXISTING_TASKS}),
        (engineer, engineer.engineer, {WRITE_DESIGN, WRITE_TASKS, WRITE_CODE, REVIEW_CODE}),
        (engineer, engineer.debug, {WRITE_DESIGN, WRITE_CODE, WRITE_TEST, RUN_TESTS}),
        (reviewer, reviewer.code_review, {WRITE_DESIGN, WRITE_CODE}),
        (qa, qa.qa, {WRITE_PRD, WRITE_DESIGN}),  # and the code's interface only, not its bodies
    ],
    ids=["product_manager", "architect", "project_manager", "engineer", "debug", "code_review", "qa"],
)
def test_a_role_reads_only_what_it_watches(company, tmp_path: Path, module: Any, node: Any, expected: set[str]) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    state = {"pool": full_pool(), "usage": [], "out_dir": str(tmp_path), "max_files": 5, "max_review_rounds": 1}
    result = node(state, Runtime(context=Context(model=name)))
    prompts = _prompts_of(result, script, module.ROLE.name)
    assert prompts, "the node asked nothing"
    text = "\n".join(prompts)
    watched = module.ROLE.watches.kinds
    leaked = {kind for kind, marker in MARKERS.items() if marker in text and kind not in watched}
    assert not leaked, f"{module.ROLE.name} read {leaked}, which it does not watch"
    missing = {kind for kind in expected if MARKERS[kind] not in text}
    assert not missing, f"{module.ROLE.name} did not use {missing}"


def test_architect_never_sees_test_reports_in_a_run_with_a_debug_loop(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.buggy_until_fix = True
    values = invoke(compiled(), company_input(IDEA, out_dir=tmp_path), config(), name)
    (failed, _) = docs(values, QAReport)
    assert failed.summary and "assert" in failed.summary
    for role in ("product_manager", "architect", "project_manager", "reviewer", "qa"):
        assert all(failed.summary not in p and "Tests:" not in p for p in script.prompts[role]), role
    assert any(failed.summary[:200] in p for p in script.prompts["engineer"])


# -- executable feedback -----------------------------------------------------------------------------------


def test_debug_loop_passes_on_the_second_attempt(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.buggy_until_fix = True
    out_dir = tmp_path / "repo"
    values = invoke(compiled(), company_input(IDEA, out_dir=out_dir, max_debug=3), config(), name)
    first, second = docs(values, QAReport)
    assert (first.attempt, first.all_passed, first.failed, first.passed) == (1, False, 1, 2)
    assert first.suspects == ["calc.py"] and "test_add" in first.summary
    assert (second.attempt, second.all_passed, second.passed) == (2, True, 3)
    report = delivery(values)
    assert (report.outcome, report.passed_on_attempt, report.attempts) == ("passed", 2, 2)
    assert values["outcome"] == "tests passed on attempt 2 of 2"
    fixes = [d for d in docs(values, CodeFile) if d.note.startswith("debug")]
    assert [(d.path, d.version) for d in fixes] == [("calc.py", 2)]
    assert "3 of 3 tests pass, the program starts (best of 4 candidates)" in fixes[0].note
    # One repair round (nodes/repair.py, mixed): two fix requests showing the failure, two fresh rewrites from
    # the task (which repeat the buggy code: not re-tested); the fix is chosen by running the tests.
    fix_prompts = [p for p in script.prompts["engineer"] if "Fix calc.py" in p]
    assert len(fix_prompts) == 2 and sum("Write `calc.py`" in p for p in script.prompts["engineer"]) == 3
    for fix_prompt in fix_prompts:
        assert "assert -1 == 5" in fix_prompt and BUGGY_CALC.splitlines()[4] in fix_prompt
        assert "def test_add" in fix_prompt
    assert (out_dir / "calc.py").read_text() == GOOD_CALC
    table = (out_dir / "docs/test_report.md").read_text()
    assert "| 1 | 2 | 1 | 0 |" in table and "| 2 | 3 | 0 | 0 |" in table and "passed on attempt 2" in table


def test_a_program_that_does_not_start_goes_to_debug_even_when_its_tests_pass(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.crash_main_until_fix = True
    values = invoke(compiled(), company_input(IDEA, out_dir=tmp_path, max_debug=2), config(), name)
    first, second = docs(values, QAReport)
    assert (first.passed, first.failed, first.starts, first.all_passed) == (3, 0, False, False)
    assert first.suspects == ["main.py"] and "RuntimeError: not wired up yet" in first.summary
    assert "does not start" in first.summary
    assert second.starts and second.all_passed and delivery(values).passed_on_attempt == 2
    assert (tmp_path / "main.py").read_text() == MAIN


def test_a_request_that_spells_its_command_line_gets_tests_that_run_it(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Spec-first at the user's level: `python main.py A B` in the idea becomes tests that run that command
    (through a fixture we write, not the model), so the debug loop works on what a user would type."""
    name, script = company
    script.buggy_until_fix = True
    idea = "a command-line calculator: python main.py A B prints = and the sum of A and B"
    payload = company_input(idea, out_dir=tmp_path, max_debug=2, one_file=False)  # the design's three files
    values = invoke(compiled(), payload, config(), name)
    (cli_prompt,) = [p for p in script.prompts["qa"] if "Write tests/test_main.py" in p]
    assert idea in cli_prompt and "`cli` fixture" in cli_prompt and "Do not import the program" in cli_prompt
    assert not any("Interface of module `main`" in p for p in script.prompts["qa"])
    conftest = (tmp_path / "tests/conftest.py").read_text()
    assert conftest == qa.CONFTEST.format(entry="main.py") and "def cli(tmp_path)" in conftest
    first, second = docs(values, QAReport)
    assert first.suspects == ["calc.py", "main.py"]  # each failure's own module: test_calc's and test_main's
    assert first.failed == 2 and any("test_adds_two_numbers" in f for f in first.failures)  # -1, not 5
    assert (second.all_passed, second.passed) == (True, 5)  # calc 2, fmt 1, and the two command-line tests
    assert "tests/conftest.py" not in second.test_files and "tests/test_main.py" in second.test_files


def test_debug_never_writes_test_code_over_the_program_nor_keeps_a_worse_version(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.buggy_until_fix = True
    worse = "def add(a, b):\n    return 0\n\n\ndef sub(a, b):\n    return 0\n"  # passes fewer tests
    script.fix_replies = {"calc.py": f"```python\nimport pytest\nfrom calc import add\n\n\n{TEST_CALC}```"}
    values = invoke(compiled(), company_input(IDEA, out_dir=tmp_path, max_debug=1), config(), name)
    assert not [d for d in docs(values, CodeFile) if d.path == "calc.py" and d.version > 1]
    assert (tmp_path / "calc.py").read_text() == BUGGY_CALC  # the test file was not written over it
    assert any("calc.py: no fix candidate beat the current code" in w for w in values["warnings"])

    script.fix_replies = {"calc.py": f"```python\n{worse}```"}
    values = invoke(compiled(), company_input(IDEA, out_dir=tmp_path / "b", max_debug=1), config(), name)
    reports = docs(values, QAReport)
    assert reports[0].passed == reports[1].passed == 2  # the worse candidate was judged, and not kept
    assert (tmp_path / "b/calc.py").read_text() == BUGGY_CALC


def test_debug_loop_gives_up_at_the_maximum(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.always_buggy = True
    values = invoke(compiled(), company_input(IDEA, out_dir=tmp_path, max_debug=1), config(), name)
    reports = docs(values, QAReport)
    assert [(r.attempt, r.all_passed) for r in reports] == [(1, False), (2, False)]
    # The first version, then one repair round of 4 candidates; none passes more tests, so none lands.
    assert [c for c in script.calls if c == ("engineer", "calc.py")] == [("engineer", "calc.py")] * 5
    assert not [d for d in docs(values, CodeFile) if d.note.startswith("debug")]
    assert any("calc.py: no fix candidate beat the current code" in w for w in values["warnings"])
    report = delivery(values)
    assert (report.outcome, report.passed_on_attempt, report.attempts) == ("gave_up", None, 2)
    assert values["outcome"] == "gave up: tests still failing after 2 attempts"
    assert "## Last failure" in (tmp_path / "docs/test_report.md").read_text()


def test_a_test_the_prd_does_not_support_is_arbitrated_and_the_test_is_fixed(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.wrong_test = True
    values = invoke(compiled(), company_input(IDEA, out_dir=tmp_path, max_debug=3), config(), name)
    reports = docs(values, QAReport)
    assert [(r.attempt, r.all_passed) for r in reports] == [(1, False), (2, True)]
    (ruling,) = docs(values, Arbitration)
    assert ruling.wrong == "test"
    (prompt,) = script.prompts["qa_lead"]
    assert "User stories:" in prompt and "add two numbers" in prompt and "== 6" in prompt  # PRD vs the test
    fixes = [(d.path, d.version) for d in docs(values, CodeFile) if d.note.startswith("debug")]
    assert fixes == [("tests/test_calc.py", 2)]  # the code the PRD supports is left alone
    assert [p for p in script.prompts["qa"] if "The test file" in p]  # QA's role fixes its tests
    assert not [p for p in script.prompts["engineer"] if "The test file" in p]
    assert (tmp_path / "tests/test_calc.py").read_text() == TEST_CALC and (
        tmp_path / "calc.py"
    ).read_text() == GOOD_CALC


def test_code_the_prd_does_not_support_is_arbitrated_and_the_code_is_fixed(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.buggy_until_fix = True
    values = invoke(compiled(), company_input(IDEA, out_dir=tmp_path, max_debug=3), config(), name)
    (ruling,) = docs(values, Arbitration)
    assert ruling.wrong == "code"
    fixes = [(d.path, d.version) for d in docs(values, CodeFile) if d.note.startswith("debug")]
    assert fixes == [("calc.py", 2)]
    assert not any("The test file" in p for p in [*script.prompts["engineer"], *script.prompts["qa"]])
    assert delivery(values).passed_on_attempt == 2


def test_qa_writes_tests_from_the_prd_and_the_interface_not_from_the_code(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    invoke(compiled(), company_input(IDEA, out_dir=tmp_path), config(), name)
    prompt = next(p for p in script.prompts["qa"] if "tests/test_calc.py" in p)
    assert "As a user, I want to add two numbers" in prompt and "[P0] add two integers" in prompt
    assert "def add(a, b): ..." in prompt and "return a + b" not in prompt  # signatures, never bodies
    assert "add(a, b) and sub(a, b)" in prompt  # the design's task for the module


def test_review_sends_a_file_back_once(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.lbtm = {"calc.py"}
    values = invoke(compiled(), company_input(IDEA, out_dir=tmp_path), config(), name)
    reviews = docs(values, CodeReview)
    assert sorted((r.path, r.version, r.verdict) for r in reviews) == [
        ("calc.py", 1, "LBTM"),
        ("fmt.py", 1, "LGTM"),
        ("main.py", 1, "LGTM"),
    ]
    calc = [d for d in docs(values, CodeFile) if d.path == "calc.py"]
    assert [(d.version, d.note) for d in calc] == [(1, "first version"), (2, "rewrite after review round 1")]
    (rewrite,) = [p for p in script.prompts["engineer"] if "Rewrite calc.py" in p]
    assert "calc.py is wrong" in rewrite and "def add(a, b)" in rewrite
    assert delivery(values).outcome == "passed"


def test_no_review_sequential_mode_and_diagrams_from_code(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.design = {**design(), "data_structures": "", "call_flow": "Mermaid sequenceDiagram of the main call flow."}
    graph = compiled()
    cfg = config()
    values = invoke(graph, company_input(IDEA, out_dir=tmp_path, max_review_rounds=0, parallel=False), cfg, name)
    assert not docs(values, CodeReview) and delivery(values).outcome == "passed"
    assert all(len(snap.next) <= 1 for snap in graph.get_state_history(cfg))
    # The architect's diagrams came back empty: the delivered design shows ones read off the code.
    design_md = (tmp_path / "docs/design.md").read_text()
    assert "+add(a, b)" in design_md and "main->>calc: add()" in design_md and "main->>fmt: show()" in design_md
    assert sum("read off the code" in w for w in values["warnings"]) == 2


# -- file names --------------------------------------------------------------------------------------------


def test_bad_file_names_are_dropped_with_warnings_or_reasked(scripted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    script = Company()
    hostile = ["../evil.py", "/etc/passwd", "C:/win.py", ".hidden/x.py", "docs/prd.md", "tests/test_x.py", "a\x00b.py"]
    replies = [design(hostile), design(["`calc.py`", "./fmt.py", *hostile, "main"])]

    def sly(request: Any) -> Any:
        if request.schema is SystemDesign:
            return replies.pop(0)
        return script(request)

    model.script = sly
    values = invoke(compiled(), company_input(IDEA, out_dir=tmp_path / "repo", max_review_rounds=0), config(), name)
    (final,) = docs(values, SystemDesign)
    assert final.file_list == ["calc.py", "fmt.py", "main.py"]
    assert not replies  # the first reply had no usable name at all: re-asked
    (design_usage,) = [r for r in values["usage"] if r.call == "SystemDesign"]
    assert design_usage.attempts == 2
    warned = "\n".join(values["warnings"])
    for reason in ("'..' are not allowed", "not absolute", "drive letter", "hidden", "reserved", "control characters"):
        assert reason in warned, reason
    assert not (tmp_path / "evil.py").exists() and delivery(values).outcome == "passed"


def test_file_list_is_capped(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.design = design(["calc.py", "fmt.py", "main.py", "store.py"])
    script.plan = plan(["calc.py", "fmt.py", "main.py", "store.py"])
    values = invoke(compiled(), company_input(IDEA, out_dir=tmp_path, max_files=3, max_review_rounds=0), config(), name)
    (final,) = docs(values, SystemDesign)
    assert final.file_list == ["calc.py", "fmt.py", "main.py"]
    assert any("dropped store.py" in w for w in values["warnings"])
    assert any("store.py" in w and "not in the design" in w for w in values["warnings"])
    assert "max 3" not in script.prompts["architect"][0] and "at most 3 Python files" in script.prompts["architect"][0]


# -- budget, crash, resume ------------------------------------------------------------------------------------


def test_budget_stop_then_resume_repeats_nothing(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    with open_checkpointer(str(tmp_path / "state.sqlite")) as saver:
        thread = f"budget-{uuid.uuid4().hex[:8]}"
        ctx = Context(model=name, budget_tokens=400)
        first = runner.start_run(
            "company", company_input(IDEA, out_dir=tmp_path / "repo"), saver, ctx, thread_id=thread
        )
        assert first.status == "paused" and first.interrupts[0]["reason"] == "budget"
        done_before = Counter(script.calls)
        assert done_before[("product_manager", "PRD")] == 1 and ("qa", "tests/test_calc.py") not in done_before
        outcome = runner.resume_run(saver, thread, overrides={"budget_tokens": 1_000_000})
    assert outcome.status == "done" and delivery(outcome.values).outcome == "passed"
    calls = Counter(script.calls)
    assert all(n == 1 for (role, _), n in calls.items() if role != "reviewer"), calls
    assert calls[("reviewer", "ReviewReply")] == 3
    roles = [r.role for r in outcome.values["usage"]]
    assert roles.count("product_manager") == roles.count("architect") == roles.count("project_manager") == 1


def test_crash_in_the_engineer_then_resume_repeats_no_completed_role(company, checkpointer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.crash_on = "main.py"
    thread = f"crash-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ModelError, match="provider outage while writing main.py"):
        runner.start_run(
            "company",
            company_input(IDEA, out_dir=tmp_path / "repo"),
            checkpointer,
            Context(model=name),
            thread_id=thread,
        )
    graph = runner.compile_graph("company", checkpointer)
    snapshot = graph.get_state(runner.run_config(thread))
    assert snapshot.next == ("write_code",)
    assert sorted(d.path for d in docs(snapshot.values, CodeFile)) == ["calc.py", "fmt.py"]

    outcome = runner.resume_run(checkpointer, thread)
    assert outcome.status == "done" and delivery(outcome.values).outcome == "passed"
    calls = Counter(script.calls)
    assert calls[("engineer", "main.py")] == 2  # the crashed call, then the retry
    assert all(n == 1 for (role, what), n in calls.items() if role != "reviewer" and what != "main.py"), calls
    code_ids = [m.id for m in outcome.values["pool"] if m.kind == WRITE_CODE]
    assert code_ids[:2] == [m.id for m in snapshot.values["pool"] if m.kind == WRITE_CODE]  # kept, not redone
    assert (tmp_path / "repo/main.py").read_text() == MAIN


# -- human review ------------------------------------------------------------------------------------------


def test_human_review_approve_and_edit(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    graph = compiled()
    cfg = config()
    out_dir = tmp_path / "repo"
    paused = invoke(graph, company_input(IDEA, out_dir=out_dir, review=["prd", "design"]), cfg, name)
    (question,) = paused["__interrupt__"]
    assert question.value["reason"] == "review" and question.value["stage"] == "prd"
    assert question.value["document"]["project_name"] == "calculator"
    assert (out_dir / "docs/prd.md").exists() and "approve" in question.value["message"]
    assert not script.prompts["architect"]

    paused = invoke(graph, Command(resume={"action": "approve"}), cfg, name)
    (question,) = paused["__interrupt__"]
    assert question.value["stage"] == "design" and len(script.prompts["architect"]) == 1

    paused = invoke(graph, Command(resume={"action": "edit", "document": {"file_lists": []}}), cfg, name)
    (question,) = paused["__interrupt__"]
    assert question.value["stage"] == "design" and "unknown field(s) file_lists" in question.value["error"]
    paused = invoke(graph, Command(resume={"action": "edit", "document": {"file_list": ["../x.py"]}}), cfg, name)
    assert "no usable file name" in paused["__interrupt__"][0].value["error"]

    edit = {"action": "edit", "document": {"file_list": ["calc.py", "main.py"]}}
    values = invoke(graph, Command(resume=edit), cfg, name)
    # The human dropped fmt.py, which the scripted main.py imports: the program check says so, every time.
    assert "__interrupt__" not in values and delivery(values).outcome == "gave_up"
    assert all(any("imports `fmt`" in p for p in r.problems) for r in docs(values, QAReport))
    decisions = [(d.stage, d.action, d.changed) for d in docs(values, HumanDecision)]
    assert decisions == [("prd", "approve", []), ("design", "edit", ["file_list"])]
    (tasks,) = docs(values, TaskPlan)
    assert tasks.task_list == ["calc.py", "main.py"]  # the project manager planned the human's design
    assert "Files: calc.py, main.py" in script.prompts["project_manager"][0]
    assert not (out_dir / "fmt.py").exists() and "`fmt.py`" not in (out_dir / "docs/design.md").read_text()
    assert len(script.prompts["product_manager"]) == 1 and len(script.prompts["architect"]) == 1


# -- incremental mode ----------------------------------------------------------------------------------------


def test_incremental_change_updates_documents_and_code(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    out_dir = tmp_path / "repo"
    invoke(compiled(), company_input(IDEA, out_dir=out_dir, max_review_rounds=0), config(), name)
    first_prompts = {role: len(p) for role, p in script.prompts.items()}

    change = "also keep a history of results"
    files = ["calc.py", "fmt.py", "store.py", "main.py"]
    script.prd = prd(extra="remember past results in a history")
    script.design = design(files)
    script.plan = plan(files)
    script.plan["logic_analysis"][-1] = {  # main.py's task changes; calc.py's and fmt.py's do not
        "file": "main.py",
        "description": "parse argv, call add, print, and keep the history in store",
        "depends_on": ["calc.py", "fmt.py", "store.py"],
    }
    before = {p: (out_dir / p).read_bytes() for p in ("calc.py", "fmt.py", "tests/test_calc.py", "tests/test_fmt.py")}
    values = invoke(compiled(), company_input(change, out_dir=out_dir, max_review_rounds=0), config(), name)
    seen = kinds(values)
    assert {EXISTING_PRD, EXISTING_DESIGN, EXISTING_TASKS}.issubset(seen) and seen.count(EXISTING_CODE) == 5

    def new(role: str) -> list[str]:
        return script.prompts[role][first_prompts.get(role, 0) :]

    (pm_prompt,) = new("product_manager")
    assert "Current PRD" in pm_prompt and "add numbers from the command line" in pm_prompt and change in pm_prompt
    assert "Current design" in new("architect")[0] and "Current tasks" in new("project_manager")[0]
    # Only the files the change touches are rewritten: the others are byte-identical and cost no model call.
    assert not [p for p in new("engineer") if "Write `calc.py`" in p or "Write `fmt.py`" in p]
    assert not [p for p in new("qa") if "test_calc.py" in p or "test_fmt.py" in p]
    assert {p: (out_dir / p).read_bytes() for p in before} == before
    (main_prompt,) = [p for p in new("engineer") if "Write `main.py`" in p]
    assert "Current content of main.py" in main_prompt and "keep the history in store" in main_prompt
    (store_prompt,) = [p for p in new("engineer") if "Write `store.py`" in p]
    assert "Current content" not in store_prompt
    assert (out_dir / "store.py").read_text() == "HISTORY = []\n"
    assert "remember past results" in (out_dir / "docs/prd.md").read_text()
    assert "`store.py`" in (out_dir / "docs/design.md").read_text()
    manifest = json.loads((out_dir / "docs/sopgraph.json").read_text())
    assert manifest["requirements"] == [IDEA, change] and "store.py" in manifest["files"]
    assert "tests/test_store.py" in manifest["tests"]
    report = delivery(values)
    assert report.incremental and report.outcome == "passed"
    readme = (out_dir / "README.md").read_text()
    assert IDEA in readme and change in readme


def test_incremental_on_a_folder_that_is_not_a_generated_repository(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, _ = company
    values = invoke(compiled(), company_input(IDEA, out_dir=tmp_path, incremental=True), config(), name)
    assert values["incremental"] is False and any("not a generated repository" in w for w in values["warnings"])


def test_company_input_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown review point"):
        company_input(IDEA, review=["prd", "code"])
    with pytest.raises(ValueError, match="empty"):
        company_input("  ")
    assert company_input(IDEA, review=["PRD", " design "])["review"] == ["prd", "design"]


def test_a_prd_that_drifts_off_the_idea_is_asked_for_again_once(scripted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted

    class Drifting(Company):
        answers = [prd("adder"), prd("calculator")]

        def __call__(self, request: Any) -> Any:
            if request.schema is not None and request.schema.__name__ == "PRD":
                self.prompts["product_manager"].append(request.prompt)
                return self.answers.pop(0) if self.answers else prd("adder")
            return super().__call__(request)

    model.script = script = Drifting()
    values = invoke(compiled(), company_input("a pocket calculator", out_dir=tmp_path), config(), name)
    first, second = script.prompts["product_manager"]
    assert "leaves out these words of the requirement: pocket, calculator" in second
    (kept,) = docs(values, PRD)
    assert kept.project_name == "calculator"  # the answer that covers more of the idea
    assert any("the PRD never mentions 'pocket'" in w for w in values["warnings"])
