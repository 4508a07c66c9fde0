"""The engineer: writes the files in dependency order, rewrites what review sends back, fixes failing tests.

`engineer` is the dispatcher. Each time it runs it looks at what is written and hands out the next wave:
every file whose dependencies are already written (in parallel, with Send), then every file whose review
said LBTM while review rounds are left, and when nothing is left it passes on to code review. A worker
gets a prompt bounded to the design, its task, and the files it imports, never the whole pool.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Command

from sopgraph.nodes.company import qa
from sopgraph.nodes.company.common import (
    ENGINEER,
    UNTOUCHED,
    Role,
    announce_file,
    clip,
    design_brief,
    every,
    fence,
    file_worker,
    generate_file,
    idea_of,
    latest,
    latest_files,
)
from sopgraph.nodes.company.fixing import repair_code_file
from sopgraph.nodes.company.repository import render, write_docs
from sopgraph.nodes.company.request import Spelled, command_line_entry, command_words, data_files
from sopgraph.nodes.progress import Reporter, reporter
from sopgraph.nodes.repair import REJECTED, Verdict
from sopgraph.nodes.routing import edge_labels
from sopgraph.state.company import (
    EXISTING_CODE,
    EXISTING_TASKS,
    REVIEW_CODE,
    RUN_TESTS,
    WRITE_CODE,
    WRITE_DESIGN,
    WRITE_TASKS,
    WRITE_TEST,
    Arbitration,
    CodeFile,
    CodeReview,
    CompanyState,
    FileJob,
    QAReport,
    SystemDesign,
    TaskPlan,
)
from sopgraph.state.context import Context
from sopgraph.state.pool import Message, Subscription
from sopgraph.tools import program, sandbox
from sopgraph.tools.workspace import Workspace

ROLE = Role(
    name=ENGINEER,
    profile="Frank, a Python engineer",
    goal="write correct, complete and simple code that follows the design",
    constraints=(
        "Python standard library only; no placeholders or TODOs; importing a module must not start the program "
        "(put the command-line entry under if __name__ == '__main__'); reply with the code of the one file "
        "asked for, in one ```python block"
    ),
    watches=Subscription(
        kinds=frozenset(
            {WRITE_TASKS, EXISTING_TASKS, WRITE_DESIGN, WRITE_CODE, REVIEW_CODE, EXISTING_CODE, WRITE_TEST, RUN_TESTS}
        ),
        own=True,
    ),
)

CONTEXT_CHARS = 9000
"""All files shown in one prompt together; about 2,500 tokens."""

WRITE = "{context}\n{current}Write `{path}`: {task}\nReply with the complete code of {path} in one ```python block."
CURRENT = "Current content of {path} (update it for the new design):\n{code}\n\n"
REQUEST = (
    "The user's request, word for word (this module starts the program: its commands, arguments and "
    "output must be exactly these):\n{idea}\n"
)
COMMANDS = (
    "{path} handles the commands itself: it reads its command line (argparse subcommands, or a dispatch on "
    "sys.argv[1]) and runs the code of each command: {commands}.\n"
)
STORES = (
    "The request keeps its data in {files}: {path} loads it at start from the current folder (a relative path; "
    "nothing yet when the file does not exist) and saves it there after every change, so each command sees what "
    "the one before it did.\n"
)
ONLY_FILE = "{path} is the program's only file: define everything it uses in it (there is no other module to import).\n"
REWRITE = (
    "{context}\nCurrent code:\n{code}\n\nCode review of {path} (LBTM):\n{comments}\n\n"
    "Rewrite {path} fixing these points. Reply with the complete code of {path} in one ```python block."
)
FIX = (
    "{context}\nThe tests fail:\n{failure}\n\n{tests}\nCurrent code:\n{code}\n\n"
    "Fix {path} so that the tests pass. Reply with the complete corrected code of {path} in one ```python block."
)
FIX_TEST = (
    "{context}\nThe tests fail:\n{failure}\n\nCurrent test file:\n{code}\n\n"
    "The test file {path} itself is broken. Reply with the complete corrected test file in one ```python block."
)


def entry_brief(idea: str, path: str, files: list[str]) -> str:
    """What the entry module's prompt adds: the request word for word, the commands it names (to be handled
    in this module, not only defined as methods), the files it keeps its data in, and, when the plan has no
    other file, that everything goes in it. "" for any other module."""
    if not idea or program.stem(path) not in program.ENTRY_STEMS:
        return ""
    text = REQUEST.format(idea=clip(idea, 1500))
    commands = command_words(idea)
    if commands and command_line_entry(idea, [path]) == path:
        text += COMMANDS.format(path=path, commands=", ".join(commands))
    stores = data_files(idea)
    if stores:
        text += STORES.format(path=path, files=" and ".join(stores))
    if files == [path]:
        text += ONLY_FILE.format(path=path)
    return text


def _design_context(design: SystemDesign, plan: TaskPlan) -> str:
    text = design_brief(design, diagrams=True, limit=1500)
    if plan.shared_knowledge:
        text += f"\nShared knowledge: {clip(plan.shared_knowledge, 500)}"
    return text + "\n"


def _files_block(title: str, paths: list[str], files: dict[str, CodeFile], budget: int) -> str:
    shown = [p for p in paths if p in files]
    if not shown:
        return ""
    each = max(400, budget // len(shown))
    return f"{title}\n" + "\n".join(fence(p, files[p].content, each) for p in shown) + "\n"


@edge_labels(write_code="next file", code_review="all written")
def engineer(state: CompanyState, runtime: Runtime[Context]) -> Command[Literal["write_code", "code_review"]]:
    seen = ROLE.view(state)
    plan = latest(seen, TaskPlan, [WRITE_TASKS])
    design = latest(seen, SystemDesign, [WRITE_DESIGN])
    assert plan is not None and design is not None, "the project manager publishes the tasks first"
    code = latest_files(seen, [WRITE_CODE])
    existing = latest_files(seen, [EXISTING_CODE])
    reviews = {(r.path, r.version): r for m in seen if isinstance((r := m.payload), CodeReview)}
    max_rounds = int(state.get("max_review_rounds", 1))
    context = _design_context(design, plan)
    idea = idea_of(state, ROLE.name)
    jobs: list[FileJob] = []

    missing = [f for f in plan.task_list if f not in code]
    kept = _untouched(plan, latest(seen, TaskPlan, [EXISTING_TASKS]), existing, missing, code)
    code = {**code, **{m.payload.path: m.payload for m in kept if isinstance(m.payload, CodeFile)}}
    missing = [f for f in missing if f not in code]
    if missing:
        for path in missing:
            task = plan.task_for(path)
            deps = task.depends_on if task else []
            if any(d not in code for d in deps):
                continue
            current = existing.get(path)
            prompt = WRITE.format(
                context=context
                + entry_brief(idea, path, plan.task_list)
                + _files_block("Files it imports:", deps, code, CONTEXT_CHARS // 2),
                current=CURRENT.format(path=path, code=fence(path, current.content, 3000)) if current else "",
                path=path,
                task=(task.description if task and task.description else "as the design says") + ".",
            )
            note = "update of the existing file" if current else "first version"
            jobs.append(FileJob(path=path, out_dir=state["out_dir"], version=1, prompt=prompt, note=note))
    else:
        for path in plan.task_list:
            review = reviews.get((path, code[path].version))
            if review is None or review.verdict != "LBTM" or code[path].version > max_rounds:
                continue
            comments = "\n".join(f"- {c}" for c in review.comments) or "- the reviewer found it wrong"
            prompt = REWRITE.format(
                context=context,
                code=fence(path, code[path].content, CONTEXT_CHARS // 2),
                path=path,
                comments=clip(comments, 1500),
            )
            version = code[path].version + 1
            jobs.append(
                FileJob(
                    path=path,
                    out_dir=state["out_dir"],
                    version=version,
                    prompt=prompt,
                    note=f"rewrite after review round {version - 1}",
                )
            )
    update = {"pool": kept} if kept else None
    if not jobs:
        return Command(update=update, goto="code_review")
    return Command(update=update, goto=ROLE.dispatch(state, runtime, "write_code", jobs))


def _untouched(
    plan: TaskPlan, old: TaskPlan | None, existing: dict[str, CodeFile], missing: list[str], code: dict[str, CodeFile]
) -> list[Message]:
    """Incremental mode: the existing files whose task, dependencies and dependencies' code are unchanged,
    published as they are (no model call), so an update rewrites only the files the requirement touches."""
    if old is None:
        return []
    same: dict[str, CodeFile] = {}
    progress = True
    while progress:  # a file stays only if everything it imports stayed too
        progress = False
        for path in missing:
            task, before, current = plan.task_for(path), old.task_for(path), existing.get(path)
            if path in same or task is None or before is None or current is None:
                continue
            if task.description != before.description or set(task.depends_on) != set(before.depends_on):
                continue
            if all(
                d in same or (d in code and d in existing and code[d].content == existing[d].content)
                for d in task.depends_on
            ):
                same[path] = CodeFile(path=path, content=current.content, version=1, note=UNTOUCHED)
                progress = True
    return [
        Message(sender=ROLE.name, kind=WRITE_CODE, content=f"{path} v1: {UNTOUCHED}", payload=doc)
        for path, doc in same.items()
    ]


write_code = file_worker(ROLE, WRITE_CODE)


def debug(state: CompanyState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Rewrite the files the failing test run points at (MetaGPT's DebugError), one after another."""
    seen = ROLE.view(state)
    report = latest(seen, QAReport, [RUN_TESTS])
    plan = latest(seen, TaskPlan, [WRITE_TASKS])
    design = latest(seen, SystemDesign, [WRITE_DESIGN])
    assert report is not None and plan is not None and design is not None
    code = latest_files(seen, [WRITE_CODE])
    tests = latest_files(seen, [WRITE_TEST])
    context = _design_context(design, plan)
    failure = clip(report.summary, 2500)
    targets = [p for p in report.suspects if p in code or p in tests] or [p for p in plan.task_list if p in code]
    reports = every(seen, QAReport, [RUN_TESTS])
    llm = ROLE.gateway(state, runtime)
    llm.check_budget()  # here, once: the candidates below are requested in parallel and never pause
    tester = qa.ROLE.gateway(state, runtime)  # test files are QA's to fix
    checks = qa.spelled_checks(state, list(code))
    # A test and the code disagree: the request and the PRD decide which one is fixed, or both (spec-first QA).
    ruling, ruling_usage = qa.arbitrate(state, runtime)
    decision = ruling.payload if ruling is not None and isinstance(ruling.payload, Arbitration) else None
    wrong = decision.wrong if decision is not None else None
    if wrong == "test" and not report.program_ok:  # the program's checks blame it too: the engineer fixes that
        wrong = "both"
    wrong_tests = [p for p in report.failing_tests if p in tests]
    if wrong == "test":
        targets = wrong_tests or targets
    elif wrong == "both":
        targets = [*[p for p in targets if p in code], *wrong_tests] or targets
    elif decision is not None:
        targets = [p for p in targets if p in code] or targets
    elif len(reports) >= 2 and report.failures and reports[-2].failures == report.failures and report.program_ok:
        # The last fix changed nothing: the tests themselves are the likelier culprit now.
        targets = wrong_tests or targets
    messages: list[Message] = [ruling] if ruling is not None else []
    warnings: list[str] = []
    verdict = run_verdict(report)
    progress = reporter("debug")
    progress(
        "debug",
        f"debug round {report.attempt} of {state.get('max_debug', 3)}: fixing {', '.join(targets)}",
        phase="start",
        round=report.attempt,
        max_rounds=int(state.get("max_debug", 3)),
        files=targets,
    )
    files = render(state)  # the repository QA's test run saw; candidates are tested in copies of it
    timeout = float(state.get("test_timeout_s", 60.0))
    limits = sandbox.SandboxLimits.for_tests(timeout)
    # Code first: its candidates are judged against the tests the report's counts came from. When both are
    # wrong, the tests first: the code's candidates, and the current code again, are judged against QA's new
    # tests (the old ones expect what the request does not ask, so no right fix could pass more of them).
    tests_first = wrong == "both"
    retest = False
    for path in sorted(targets, key=lambda p: (p in tests) != tests_first):
        version = (tests[path] if path in tests else code[path]).version + 1
        role = qa.ROLE.name if path in tests else ROLE.name
        announce_file(role, path, "fix", version, f"after test run {report.attempt}")
        if path in tests:
            # A test file goes back to QA, rewritten once, not selected by tests passed (dropping a failing
            # test would win), and guarded as QA's first version was.
            current, kind, sender = tests[path], WRITE_TEST, qa.ROLE.name
            used = [m for m in code if _mentions(current.content, m)]
            stubs = "".join(
                f"Interface of {m} (signatures only):\n{fence(m, program.interface(code[m].content), 1500)}\n"
                for m in used
            )
            prompt = FIX_TEST.format(
                context=context + stubs,
                failure=failure,
                code=fence(path, current.content, CONTEXT_CHARS // 2),
                path=path,
            )
            fixed, problems = generate_file(tester, prompt, path, qa.ROLE.system)
            fixtures = qa.PROVIDED if qa.CLI_FIXTURE in tests else frozenset()
            fixed, notes, _ = qa.guard_tests(path, fixed, {p: f.content for p, f in code.items()}, fixtures)
            warnings += problems + notes
            note = f"debug fix after test run {report.attempt}"
            retest = tests_first and fixed != current.content
            files[path] = fixed
        else:
            current, kind, sender = code[path], WRITE_CODE, ROLE.name
            related = [t for t in tests if _mentions(tests[t].content, path)] or list(tests)
            tests_block = _files_block("Tests:", related, tests, CONTEXT_CHARS // 3)

            def fix_prompt(code_now: str, facts: str, path: str = path, tests_block: str = tests_block) -> str:
                return FIX.format(
                    context=context,
                    failure=facts,
                    tests=tests_block,
                    code=fence(path, code_now, CONTEXT_CHARS // 3),
                    path=path,
                )

            task = plan.task_for(path)
            deps = [d for d in (task.depends_on if task else []) if d != path]
            write_prompt = WRITE.format(
                context=context
                + entry_brief(idea_of(state, ROLE.name), path, plan.task_list)
                + _files_block("Files it imports:", deps, code, CONTEXT_CHARS // 2),
                current="",
                path=path,
                task=(task.description if task and task.description else "as the design says") + ".",
            )
            judge = RunJudge(files, path, list(code), list(tests), report.attempt, timeout, progress, checks)
            if retest:  # the tests changed this round: the current code is measured on them too
                verdict = judge(current.content)
            found = repair_code_file(
                llm,
                ROLE.system,
                path,
                current.content,
                verdict,
                files=files,
                write_prompt=write_prompt,
                fix_prompt=fix_prompt,
                limits=limits,
                seed=report.attempt,
                judge=judge,
            )
            kept = judge.reports.get(found.code, report)  # the current code's, when it was judged again
            progress(
                "debug",
                f"{path}: {len(found.outcome.drawn)} candidates drawn, {len(judge.reports)} judged; "
                + (f"the best passes {kept.passed} of {_tests(kept)} tests" if found.changed else "none is better"),
                phase="judged",
                round=report.attempt,
                file=path,
                candidates=len(found.outcome.drawn),
                judged=len(judge.reports),
                passed=kept.passed,
                total=_tests(kept),
                changed=found.changed,
            )
            if not found.changed:
                tried = len(found.outcome.drawn)
                warnings.append(
                    f"{path}: no fix candidate beat the current code ({tried} drawn; fewer check problems rank "
                    "first, then more tests passed)"
                )
                continue
            fixed, verdict = found.code, found.verdict
            files[path] = fixed
            checked = judge.reports[fixed]
            note = (
                f"debug fix after test run {report.attempt}: {checked.passed} of "
                f"{checked.passed + checked.failed + checked.errors} tests pass, "
                f"{'the program starts' if checked.program_ok else 'the program still fails its checks'} "
                f"(best of {len(found.outcome.drawn)} candidates)"
            )
        version = current.version + 1
        doc = CodeFile(path=path, content=fixed, version=version, note=note)
        messages.append(
            Message(sender=sender, kind=kind, content=f"{path} v{version}: fix after run {report.attempt}", payload=doc)
        )
    write_docs(state, runtime, messages)
    usage = [*ruling_usage.get("usage", []), *llm.usage_update()["usage"], *tester.usage_update()["usage"]]
    return {"pool": messages, "warnings": warnings, "usage": usage}


def run_verdict(report: QAReport) -> Verdict:
    """A test run as a repair verdict: the problems of the program checks (each problem they list, one more
    for a program that does not start), which rank first, so a candidate that fixes what the request spells
    (a command, the add-then-list session, the data file) replaces one that passes as many tests, even when
    the tests expect more than the request; then tests passed plus one for a program that holds together and
    starts; and the facts the model is shown."""
    total = report.passed + report.failed + report.errors + 1
    problems = len(report.problems) + (1 if report.starts is False else 0)
    return Verdict(report.score, total, "" if report.all_passed else report.summary, problems=problems)


class RunJudge:
    """Judges a candidate of one program file by the whole test run (program checks, then the tests) on a
    scratch copy of the repository. A reply that is test code (`import pytest`, test functions) is rejected
    unjudged: it must never be written over the program."""

    def __init__(
        self,
        files: dict[str, str],
        path: str,
        code: list[str],
        tests: list[str],
        attempt: int,
        timeout: float,
        progress: Reporter | None = None,
        spelled: Spelled | None = None,
    ) -> None:
        self.files, self.path, self.code, self.tests = files, path, code, tests
        self.attempt, self.timeout, self.spelled = attempt, timeout, spelled
        self.reports: dict[str, QAReport] = {}
        self.progress = progress or Reporter("", None)

    def __call__(self, candidate: str) -> Verdict:
        total = max([r.passed + r.failed + r.errors for r in self.reports.values()] or [0]) + 1
        why = program.is_test_code(candidate)
        if why is not None or not candidate.strip():
            return Verdict(-1, total, f"rejected: the reply for {self.path} {why or 'held no code'}", problems=REJECTED)
        with tempfile.TemporaryDirectory(prefix="sopgraph-candidate-") as scratch:
            Workspace(scratch).sync({**self.files, self.path: candidate})
            checked = qa.examine(Path(scratch), self.code, self.tests, self.attempt, self.timeout, spelled=self.spelled)
        self.reports[candidate] = checked
        self.progress(
            "debug",
            f"{self.path}: a candidate passes {checked.passed} of {_tests(checked)} tests"
            + ("" if checked.program_ok else ", the program fails its checks"),
            phase="candidate",
            round=self.attempt,
            file=self.path,
            judged=len(self.reports),
            passed=checked.passed,
            total=_tests(checked),
            starts=checked.program_ok,
        )
        return run_verdict(checked)


def _tests(report: QAReport) -> int:
    return report.passed + report.failed + report.errors


def _mentions(test_code: str, path: str) -> bool:
    from sopgraph.tools.workspace import module_name

    return re.search(rf"\b{re.escape(module_name(path))}\b", test_code) is not None
