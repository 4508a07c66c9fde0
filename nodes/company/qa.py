"""QA: writes pytest tests per module, runs them in the sandbox, and reports what failed and where.

The test run is the executable feedback of the SOP: its report names the files the failures point at, the
engineer's debug node rewrites those, and the run repeats until it passes or `max_debug` fix rounds are
spent. Generated code only ever runs inside tools/sandbox/.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Command

from sopgraph.nodes.company.common import (
    ENGINEER,
    UNTOUCHED,
    Role,
    clip,
    every,
    fence,
    file_worker,
    idea_of,
    latest,
    latest_files,
    prd_brief,
)
from sopgraph.nodes.company.repository import materialize, target_dir
from sopgraph.nodes.company.request import Spelled, command_line_entry, spelled
from sopgraph.nodes.progress import Reporter, reporter
from sopgraph.nodes.routing import edge_labels
from sopgraph.state.company import (
    ARBITRATE,
    EXISTING_CODE,
    NO_REPORT,
    NO_TESTS,
    PRD,
    RUN_TESTS,
    TESTS_DIR,
    WRITE_CODE,
    WRITE_DESIGN,
    WRITE_PRD,
    WRITE_TASKS,
    WRITE_TEST,
    Arbitration,
    CodeFile,
    CompanyState,
    FileJob,
    QAReport,
    SystemDesign,
    TaskPlan,
)
from sopgraph.state.context import Context
from sopgraph.state.pool import Message, Pool, Subscription
from sopgraph.tools import program, sandbox
from sopgraph.tools.program import ENTRY_STEMS, stem
from sopgraph.tools.workspace import Workspace, module_name

ROLE = Role(
    name="qa",
    profile="Heidi, a QA engineer",
    goal="write small pytest tests that check what the PRD asks, through the interface the design declares",
    constraints=(
        "pytest and the standard library only; import the module under test by its module name and use only the "
        "names of its interface, or, for command-line tests, run the program through the cli fixture; expected "
        "values come from the PRD or the request, never from what the code happens to do; no "
        "input(), network, sleeping, or files outside pytest's tmp_path; reply with the test file only, in one "
        "```python block"
    ),
    watches=Subscription(
        kinds=frozenset({WRITE_PRD, WRITE_DESIGN, WRITE_TASKS, WRITE_CODE, EXISTING_CODE, WRITE_TEST, RUN_TESTS}),
        own=True,
    ),
)

WRITE_TESTS = (
    "PRD (what the tests check):\n{prd}\n\nDesign: {design}\n\nInterface of module `{module}` (signatures only; "
    "{task}):\n```python\n{interface}\n```\n\n{current}"
    "Write {test_path}: 3 to 6 small pytest test functions, each checking one user story or requirement of the "
    "PRD through this interface, with the expected values worked out from the PRD. Import with "
    "`from {module} import ...`; the tests run from the project root. Reply with the complete test file in one "
    "```python block."
)
CURRENT = "Current tests (update them):\n{tests}\n\n"
CLI_TESTS = (
    "The user's request, word for word (the tests check exactly this):\n{idea}\n\n{current}"
    "Write {test_path}: 3 to 6 small pytest test functions that use the program the way this request says, "
    'through the `cli` fixture that tests/conftest.py provides: `cli("add", "buy milk")` runs '
    '`python {entry} add "buy milk"` in a fresh folder that the whole test shares, and returns the finished '
    'process (.returncode, .stdout, .stderr); `cli(input="...")` feeds stdin. Each test function takes '
    "`cli` as its argument and checks one thing the request asks, with the expected output worked out from "
    "the request. Assert only what the request states: where it gives no exact line, check that the words and "
    'marks it names are in the output (`"buy milk" in out`), not a whole line of your own making. Do not import '
    "the program. Reply with the complete test file in one ```python block."
)
CLI_FIXTURE = f"{TESTS_DIR}/conftest.py"
CONFTEST = '''"""Written by sopgraph: the `cli` fixture runs the program the way its user does."""

import subprocess
import sys
from pathlib import Path

import pytest

PROGRAM = Path(__file__).resolve().parent.parent / {entry!r}


class Ran:
    """A finished run: .returncode, .stdout, .stderr; it also unpacks as (returncode, stdout, stderr)."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    def __iter__(self):
        return iter((self.returncode, self.stdout, self.stderr))


class Cli:
    """cli("add", "milk") runs `python {entry} add milk` in one folder for the whole test and returns the run;
    cli.returncode, cli.stdout and cli.stderr are those of the last run. cli(input="...") feeds stdin."""

    def __init__(self, folder):
        self.folder = folder
        self.returncode, self.stdout, self.stderr = None, "", ""

    def __call__(self, *args, input=None):
        done = subprocess.run(
            [sys.executable, str(PROGRAM), *map(str, args)],
            cwd=self.folder,
            input=input,
            capture_output=True,
            text=True,
            timeout=20,
        )
        self.returncode, self.stdout, self.stderr = done.returncode, done.stdout, done.stderr
        return Ran(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(tmp_path):
    """The program as its user runs it, in tmp_path (see Cli)."""
    return Cli(tmp_path)
'''


def path_of_tests(path: str) -> str:
    return f"{TESTS_DIR}/test_{module_name(path).replace('.', '_')}.py"


def modules_to_test(paths: list[str]) -> list[str]:
    """Every .py module except package markers and, when there are others, the entry modules."""
    modules = [p for p in paths if p.endswith(".py") and not p.endswith("__init__.py")]
    libraries = [p for p in modules if stem(p) not in ENTRY_STEMS]
    return libraries or modules


PROVIDED = program.fixture_names(CONFTEST.format(entry="main.py"))
"""The fixtures our conftest provides (cli): a test file must not define its own."""
REASK = "re-asked: "
"""The note of a test file QA was asked for again, with the reason (each file is re-asked once)."""
REFUSED = (
    "\n\nYour last version of {test_path}:\n{code}\nIt was refused: {reason}. Reply with the complete corrected "
    "test file in one ```python block."
)


@edge_labels(write_test="next test", run_tests="tests written")
def qa(state: CompanyState, runtime: Runtime[Context]) -> Command[Literal["write_test", "run_tests"]]:
    """Hand out a job per test file still to write; when all are written, guard them before the test run:
    a definition that hides our conftest's fixture is removed, a file importing what the program does not
    have is asked for again once, with the reason."""
    seen = ROLE.view(state)
    design = latest(seen, SystemDesign, [WRITE_DESIGN])
    prd = latest(seen, PRD, [WRITE_PRD])
    assert design is not None
    code = latest_files(seen, [WRITE_CODE])
    written = latest_files(seen, [WRITE_TEST])
    existing = latest_files(seen, [EXISTING_CODE])
    wanted: dict[str, FileJob] = {}
    kept: list[Message] = []
    built = [p for p in design.file_list if p in code]
    idea = idea_of(state, ROLE.name)
    entry = command_line_entry(idea, built)
    if entry is not None:
        if CLI_FIXTURE not in written:
            doc = CodeFile(path=CLI_FIXTURE, content=CONFTEST.format(entry=entry), version=1, note="the cli fixture")
            kept.append(Message(sender=ROLE.name, kind=WRITE_TEST, content=f"{CLI_FIXTURE} v1", payload=doc))
        wanted[path_of_tests(entry)] = _cli_tests(state, idea, entry, existing)
    for path in modules_to_test(built):
        test_path = path_of_tests(path)
        if path == entry:
            continue
        current = existing.get(test_path)
        if current is not None and code[path].note == UNTOUCHED:  # its module is unchanged: so are its tests
            if test_path not in written:
                doc = CodeFile(path=test_path, content=current.content, version=1, note=UNTOUCHED)
                kept.append(ROLE.say(WRITE_TEST, f"{test_path} v1: {UNTOUCHED}", doc))
            continue
        prompt = WRITE_TESTS.format(
            prd=clip(prd_brief(prd), 2000) if prd else "(none)",
            design=design.implementation_approach,
            module=module_name(path),
            task=f"the design's task: {clip(_task_of(seen, path), 300)}",
            interface=clip(program.interface(code[path].content), 3000),
            current=CURRENT.format(tests=fence(test_path, current.content, 2500)) if current else "",
            test_path=test_path,
        )
        note = "update of the existing tests" if current else "first version"
        wanted[test_path] = FileJob(
            path=test_path,
            out_dir=state["out_dir"],
            prompt=prompt,
            note=note,
            subject=path,
            subject_code=code[path].content,
        )
    jobs = [job for test_path, job in wanted.items() if test_path not in written]
    warnings: list[str] = []
    if not jobs:
        fixtures = PROVIDED if entry is not None else frozenset()
        cleaned, jobs, warnings = _guard(seen, wanted, written, {p: f.content for p, f in code.items()}, fixtures)
        kept += cleaned
    update: dict[str, Any] = {"pool": kept, "warnings": warnings} if kept or warnings else {}
    if not jobs:
        return Command(update=update or None, goto="run_tests")
    return Command(update=update or None, goto=ROLE.dispatch(state, runtime, "write_test", jobs))


write_test = file_worker(ROLE, WRITE_TEST)


def guard_tests(
    path: str, text: str, code: dict[str, str], fixtures: frozenset[str]
) -> tuple[str, list[str], list[str]]:
    """A test file checked before it runs: (its text without the definitions that hide `fixtures`, the
    conftest's; a warning per removal; its structural problems against the program `code`)."""
    cleaned, removed = program.without_definitions(text, fixtures) if fixtures else (text, [])
    notes = [f"{path}: removed its own {', '.join(removed)}, which hid the fixture of {CLI_FIXTURE}"] if removed else []
    return cleaned, notes, program.problems_in_tests({**code, path: cleaned})


def _guard(
    seen: list[Message],
    wanted: dict[str, FileJob],
    written: dict[str, CodeFile],
    code: dict[str, str],
    fixtures: frozenset[str],
) -> tuple[list[Message], list[FileJob], list[str]]:
    """The written tests, guarded: (cleaned versions to publish, re-ask jobs, warnings)."""
    messages: list[Message] = []
    jobs: list[FileJob] = []
    warnings: list[str] = []
    versions = every(seen, CodeFile, [WRITE_TEST])
    for test_path, job in wanted.items():
        doc = written.get(test_path)
        if doc is None or doc.note == UNTOUCHED:
            continue
        text, notes, problems = guard_tests(test_path, doc.content, code, fixtures)
        version = doc.version
        if text != doc.content:
            version += 1
            fixed = CodeFile(path=test_path, content=text, version=version, note="; ".join(notes))
            messages.append(ROLE.say(WRITE_TEST, f"{test_path} v{version}: {fixed.note}", fixed))
            warnings += notes
        if problems and not any(d.path == test_path and d.note.startswith(REASK) for d in versions):
            reason = clip("; ".join(problems), 600)
            refused = REFUSED.format(test_path=test_path, code=fence(test_path, text, 2500), reason=reason)
            again = {"prompt": job.prompt + refused, "version": version + 1, "note": REASK + reason}
            jobs.append(job.model_copy(update=again))
            warnings.append(f"{test_path}: asked for again: {reason}")
    return messages, jobs, warnings


def _cli_tests(state: CompanyState, idea: str, entry: str, existing: dict[str, CodeFile]) -> FileJob:
    """The job of the command-line tests the request spells out, in the entry module's test file (so a
    failure points at it); they use the `cli` fixture, which we write, never the model. No subject module:
    these tests must not import the program, so none of its names are completed as imports."""
    test_path = path_of_tests(entry)
    current = existing.get(test_path)
    prompt = CLI_TESTS.format(
        idea=clip(idea, 1500),
        current=CURRENT.format(tests=fence(test_path, current.content, 2500)) if current else "",
        test_path=test_path,
        entry=entry,
    )
    note = "update of the existing tests" if current else "first version: the command line"
    return FileJob(path=test_path, out_dir=state["out_dir"], prompt=prompt, note=note)


def spelled_checks(state: CompanyState, paths: list[str]) -> Spelled | None:
    """What the request spells out that the test run checks the program against (its commands, the files it
    keeps its data in, add-then-list), or None."""
    return spelled(idea_of(state, ROLE.name), paths)


def command_problem(entry: str, text: str, commands: list[str]) -> str | None:
    """One line for a model when the entry module does not handle the request's commands, or None."""
    missing = program.missing_commands(text, commands)
    if not missing:
        return None
    if len(missing) == len(commands):
        which = f"handles none of the request's commands ({', '.join(commands)})"
    else:
        which = f"does not handle the request's command{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    return (
        f"{entry} {which}: it must read the command from its own command line (argparse subcommands, or a "
        f"dispatch on sys.argv[1]) and carry out each of {', '.join(commands)}"
    )


def store_problem(entry: str, files: dict[str, str], name: str) -> str | None:
    """One line for a model when the program does not keep its data in the file the request names (it never
    spells the name, never reads a file, or never writes one), or None."""
    naming, reads, writes = program.file_use(files, name)
    if not naming:
        return (
            f"{entry} never opens {name}, so nothing the user adds is kept between two commands: load it at start, "
            "save it after every change"
        )
    where = entry if entry in naming else naming[0]
    if not reads and not writes:
        return (
            f"{where} names {name} but never reads or writes it, so nothing the user adds is kept between two "
            "commands: load it at start, save it after every change"
        )
    if not reads:
        return (
            f"{where} never reads {name} back, so every command starts from nothing: load it at start (nothing yet "
            "when it does not exist)"
        )
    if not writes:
        return (
            f"{where} never writes {name}, so nothing the user adds is kept between two commands: save it after "
            "every change"
        )
    return None


def spelled_problems(ws: Workspace, code: list[str], check: program.ProgramCheck, spelled: Spelled) -> list[str]:
    """What the program lacks of what the request spells: a command its entry module does not handle, a data
    file it does not keep its data in."""
    entry = spelled.entry or check.entry
    if entry is None:
        return []
    text = ws.read(entry)
    problems = [command_problem(entry, text, spelled.commands) if text is not None and spelled.commands else None]
    files = {p: t for p in code if p.endswith(".py") and (t := ws.read(p)) is not None}
    problems += [store_problem(entry, files, name) for name in spelled.stores]
    return [p for p in problems if p]


def _task_of(seen: list[Message], path: str) -> str:
    plan = latest(seen, TaskPlan, [WRITE_TASKS])
    task = plan.task_for(path) if plan else None
    return task.description if task and task.description else "as the design says"


ARBITER = Role(
    name="qa_lead",
    profile="Ivan, the QA lead",
    goal="decide from the user's request and the PRD whether a failing test, the code, or both are wrong",
    constraints="the user's request is the authority, then the PRD; answer only through the Arbitration tool",
    watches=Subscription(kinds=frozenset({WRITE_PRD, WRITE_CODE, WRITE_TEST, RUN_TESTS})),
)

ARBITRATE_PROMPT = (
    "The user's request, word for word:\n{idea}\n\nPRD:\n{prd}\n\nA test and the code disagree:\n{failure}\n\n"
    "Test file:\n{test}\n\nCode:\n{code}\n\n"
    "Which one is wrong? The request is the authority, then the PRD. Whatever the request does not spell out is "
    "the test's fault to expect: an exact output format beyond what the request says (a dot or a colon after a "
    "number, spacing, capitals, extra words), a message or an exit code it never mentions. wrong='test' if the "
    "test expects something the request does not ask for and the code does what it asks; wrong='code' if the "
    "test only expects what the request asks and the code does not do it (for example, it forgets between two "
    "commands what the request keeps); wrong='both' if the test expects something not asked AND the code also "
    "fails something that is asked."
)


def arbitrate(state: CompanyState, runtime: Runtime[Context]) -> tuple[Message | None, dict[str, Any]]:
    """When the program starts but its tests fail, ask which side the request and the PRD support (one call),
    so the fix goes to the code, to the test, or to both. Also when the program's checks found problems (a
    command it lacks, an add the next list forgets): the engineer fixes those in any case, and tests that
    expect what the request does not ask go to QA in the same round (the debug node turns 'test' into 'both'
    then), or no candidate that fixes the program could pass them. Returns (the decision as a message, the
    usage update), or None."""
    seen = ARBITER.view(state)
    report = latest(seen, QAReport, [RUN_TESTS])
    prd = latest(seen, PRD, [WRITE_PRD])
    tests = latest_files(seen, [WRITE_TEST])
    code = latest_files(seen, [WRITE_CODE])
    if report is None or prd is None or report.starts is False or not report.failures or not report.failing_tests:
        return None, {}
    if report.test_problems:  # a test importing what the program lacks is wrong on its face: no arbitration
        return None, {}
    test_path = next((p for p in report.failing_tests if p in tests), None)
    subject = next((p for p in report.suspects if p in code), None)
    if test_path is None or subject is None:
        return None, {}
    llm = ARBITER.gateway(state, runtime)
    prompt = ARBITRATE_PROMPT.format(
        idea=clip(idea_of(state, ARBITER.name), 1500) or "(none)",
        prd=clip(prd_brief(prd), 1500),
        failure=clip(report.summary, 1500),
        test=fence(test_path, tests[test_path].content, 2000),
        code=fence(subject, code[subject].content, 2500),
    )
    decision = llm.structured(Arbitration, prompt, system=ARBITER.system)
    verdict = "both are wrong" if decision.wrong == "both" else f"the {decision.wrong} is wrong"
    message = ARBITER.say(ARBITRATE, f"{test_path} vs {subject}: {verdict}", decision, [ENGINEER])
    return message, llm.usage_update()


def run_tests(state: CompanyState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Write the newest version of every file, check that the program holds together and starts, then run
    the project's tests, all in the sandbox. A program that does not start fails like a failing test."""
    seen = ROLE.view(state)
    code = latest_files(seen, [WRITE_CODE])
    tests = latest_files(seen, [WRITE_TEST])
    attempt = 1 + sum(1 for m in seen if isinstance(m.payload, QAReport))
    ws = Workspace(target_dir(state, runtime))
    materialize(state, str(ws.root))
    progress = reporter("run_tests")
    progress("tests", f"test run {attempt}: checking the program", phase="start", attempt=attempt)
    timeout = float(state.get("test_timeout_s", 60.0))
    checks = spelled_checks(state, list(code))
    report = examine(ws.root, list(code), list(tests), attempt, timeout, spelled=checks, progress=progress)
    if report.all_passed:
        status = "passed"
    elif report.problems or report.starts is False:
        status = f"{len(report.problems)} problems" + ("" if report.starts is not False else ", does not start")
    else:
        status = report.note or f"{report.failed} failed, {report.errors} errors"
    counts = {"passed": report.passed, "failed": report.failed, "errors": report.errors}
    progress(
        "tests",
        f"test run {attempt} done: {report.passed} passed, {report.failed} failed, {report.errors} errors"
        + (f" ({status})" if report.problems or report.starts is False or report.note else ""),
        phase="done",
        attempt=attempt,
        **counts,
        starts=report.starts,
        all_passed=report.all_passed,
    )
    message = ROLE.say(RUN_TESTS, f"test run {attempt}: {report.passed} passed; {status}", report, [ENGINEER])
    return {"pool": [message]}


START_TIMEOUT_S = 5.0


def examine(
    root: Path,
    code: list[str],
    tests: list[str],
    attempt: int,
    timeout: float,
    *,
    spelled: Spelled | None = None,
    progress: Reporter | None = None,
) -> QAReport:
    """The test run's report on the project at `root`: program checks (static guards, imports, start, and
    what the request spells: its commands handled, its data file read and written, an added item listed by the
    next run), the tests' own structural guards, and pytest on tests/, in the sandbox. Also judges a debug
    candidate (in a scratch copy). `progress` hears the start check's result before the tests run (a `tests`
    event, phase "checked")."""
    ws = Workspace(root)
    recall = spelled.recall if spelled is not None else None
    check = program.check_program(ws.root, timeout=START_TIMEOUT_S, recall=recall)
    if spelled is not None:
        check.problems += spelled_problems(ws, code, check, spelled)
    facts = check.summary()
    head = f"The program itself fails before its tests:\n{facts}\n\n" if facts else ""
    wrong = program.problems_in_tests(program.survey(ws.root).text)
    if wrong:
        head += "The tests themselves are wrong before they run:\n" + "\n".join(f"- {p}" for p in wrong) + "\n\n"
    test_files = [p for p in ws.files(TESTS_DIR) if p.rsplit("/", 1)[-1].startswith("test_") and p.endswith(".py")]
    wrong_tests = list(dict.fromkeys(t for t in [*test_files, *tests] if any(p.startswith(f"{t} ") for p in wrong)))
    if progress is not None:
        started = "starts" if check.starts else "does not start"
        found = f", {len(check.problems)} problems" if check.problems else ""
        progress(
            "tests",
            f"test run {attempt}: the program {started}{found}; running {len(test_files)} test files",
            phase="checked",
            attempt=attempt,
            starts=check.starts,
            problems=len(check.problems),
            test_files=len(test_files),
        )
    program_fields: dict[str, Any] = {
        "problems": check.problems,
        "starts": check.starts,
        "start": check.start,
        "test_problems": wrong,
    }
    if not test_files:
        return QAReport(
            attempt=attempt,
            note=NO_TESTS,
            summary=head.strip(),
            suspects=program.suspects_of(check, code),
            **program_fields,
        )
    limits = sandbox.SandboxLimits.for_tests(timeout)
    result = sandbox.run_tests(ws.root, TESTS_DIR, limits=limits, copy=True)
    bad = [c for c in result.cases if c.outcome in ("failed", "error")]
    # A failure of a test file that is wrong on its face (it imports what the program lacks) blames that
    # file, never the program modules its error message names.
    elsewhere = replace(result, cases=[c for c in result.cases if c.file not in wrong_tests])
    others = any(c.outcome in ("failed", "error") for c in elsewhere.cases) or not wrong_tests
    blamed = suspects(elsewhere, code, tests) if others else []
    return QAReport(
        attempt=attempt,
        passed=result.passed,
        failed=result.failed,
        errors=result.errors,
        skipped=result.skipped,
        all_passed=result.all_passed and check.ok,
        exit_code=result.result.exit_code,
        timed_out=result.result.timed_out,
        duration_s=result.result.duration_s,
        summary=clip(head + result.summary_for_model(max_chars=2500), 3500),
        suspects=list(dict.fromkeys([*wrong_tests, *program.suspects_of(check, code), *blamed])),
        test_files=test_files,
        failures=[f"{c.name}: {_gist(c.message)}" for c in bad],
        failing_tests=sorted({c.file for c in bad if c.file in test_files}),
        note="" if result.report_found else NO_REPORT,
        **program_fields,
    )


def _gist(message: str) -> str:
    """A failure's first line without object addresses, so the same failure compares equal across runs."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    return re.sub(r"0x[0-9a-fA-F]+", "0x?", first)[:200]


def _path_pattern(path: str) -> re.Pattern[str]:
    """A file name as it shows in a traceback (absolute or relative), not as the tail of a longer name."""
    return re.compile(rf"(?:^|(?<=[/\"'\s])){re.escape(path)}(?=[\"':\s,]|$)", re.MULTILINE)


def suspects(result: sandbox.TestReport, code_paths: list[str], test_paths: list[str]) -> list[str]:
    """The files a failing run points at: modules named in the failures, else the modules failing tests cover.

    A test file is itself a suspect only when it does not even parse.
    """
    bad = [c for c in result.cases if c.outcome in ("failed", "error")]
    text = "\n".join(f"{c.name}\n{c.message}\n{c.details}" for c in bad)
    if not result.report_found or not bad:
        text += "\n" + result.result.stdout[-4000:] + "\n" + result.result.stderr[-4000:]
    modules = [p for p in code_paths if p.endswith(".py")]
    known = [*test_paths, *modules]
    broken: list[str] = []
    for error in re.finditer(r"SyntaxError|IndentationError", text):
        # The last `File "...", line N` before the error is the file that does not parse.
        frames = re.findall(r'File "([^"]+)", line \d+', text[: error.start()])
        if frames:
            broken += [p for p in known if frames[-1] == p or frames[-1].endswith("/" + p)]
    if broken:
        return list(dict.fromkeys(broken))  # nothing runs until these parse
    patterns = {p: _path_pattern(p) for p in modules}

    def named(text: str) -> list[str]:
        return [p for p in modules if patterns[p].search(text) or re.search(rf"\b{re.escape(module_name(p))}\b", text)]

    found: list[str] = []
    project = {module_name(p).split(".")[0] for p in modules}
    blamed: list[sandbox.TestCase] = []
    for case in bad:  # a test importing a module the project does not have is itself wrong
        wrong = re.findall(r"No module named '([\w.]+)'", f"{case.message}\n{case.details}")
        if case.file in test_paths and any(name.split(".")[0] not in project for name in wrong):
            found.append(case.file)
            blamed.append(case)
    if not result.report_found or not bad:
        return list(dict.fromkeys([*found, *named(text)]))
    for case in (c for c in bad if c not in blamed):  # the modules a failure names, else the one its test covers
        found += named(f"{case.name}\n{case.message}\n{case.details}") or [
            path
            for path in modules
            if case.name.startswith(path_of_tests(path).replace("/", ".").removesuffix(".py"))
            or case.file == path_of_tests(path)
        ]
    return list(dict.fromkeys(found))


@edge_labels(debug="fail, fixes left", deliver="pass or out of fixes")
def after_tests(state: CompanyState) -> Literal["debug", "deliver"]:
    """Pass -> deliver; fail with fix rounds left -> debug; otherwise deliver (giving up)."""
    report = latest(Pool(state.get("pool")).messages, QAReport, [RUN_TESTS])
    assert report is not None
    if report.all_passed or (report.program_ok and report.nothing_to_test):
        return "deliver"
    return "debug" if report.attempt <= int(state.get("max_debug", 3)) else "deliver"
