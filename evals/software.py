"""Software tasks: prompts of our own writing run through the software company, and the repository each
delivers scored for executability on a 1-4 scale, with its tokens, lines, tokens per line and time.

The task set is `software_tasks.yaml` beside this module (or any file of that shape): an `id`, a
`category` (game, cli, data, web) and a `prompt` per task, plus a `suffix` every prompt ends with.

## The score

Every check runs the generated code in the sandbox (tools/sandbox/), never in this process, and with the
standard library alone: modules are imported and programs started with `python -S`, which hides this
virtual environment's site-packages (they are our dependencies, not the generated program's). The
levels are cumulative; a repository gets the highest level whose check and all the checks below it pass.

1. **Does not import**: there is no module (a `.py` file outside `tests/` and `docs/`), or some module
   does not compile, or does not import. Each module is compiled, then imported by its module name in a
   fresh `python -S` with stdin closed. An import fails when it raises; `EOFError` (input() read the
   closed stdin) and `SystemExit` are a program ending, not a missing piece, and are let through, as is an
   import still running when the start timeout hits. The entry point, when it is a script without an
   `if __name__ == "__main__":` guard, runs its whole program on import: for it only `ImportError`
   (a missing module or name) counts here, the rest is the start check's business.
2. **Imports, but does not work**: no entry point is found, it does not start, or it passes fewer than
   half of the task's acceptance checks.
3. **Starts and passes at least half of its acceptance checks** (evals/acceptance.py: black-box runs of
   our own with arguments, stdin, input files or HTTP requests, never shown to the model), but not all of
   them, or its own tests do not count.
4. **Passes every acceptance check, and its own tests count**: pytest on `tests/` passes, at least three
   test functions assert something, and the tests fail once every function body of the program is
   replaced by `raise NotImplementedError` (empty or toothless tests never make a 4). A task without
   acceptance checks (a task file of one's own) is judged on start and tests alone.

The **entry point** is, in this order: a module named main, __main__, app, cli or run (the shallowest,
main first); else the shallowest module with an `if __name__ == "__main__":` guard; else the file (or
`-m` module) of the first `python ...` command in README.md; else the only module, if there is one. A
package's `__main__.py` runs as `python -m package`.

It **starts** when `python -S ENTRY --help` (or, failing that, `python -S ENTRY` with no arguments) with
stdin closed either exits 0; or is still running without a traceback when the start timeout (5 s by
default) kills it, as a server or a program waiting on something does; or ends with `EOFError` as the last
line of a traceback: an interactive program that asked for input and found stdin closed (the sandbox
cannot hold stdin open for it). Anything else (another exception, a non-zero exit, a sandbox limit other
than the wall clock) does not start.

## Running

Each task is one run (thread `software-<id>-<prompt hash>`) of the company graph, checkpointed in
`<out>/checkpoints.sqlite`, writing its repository to `<out>/repos/<id>`; `sopgraph history THREAD --db
<out>/checkpoints.sqlite` inspects it. One JSON line per task goes to `<out>/results.jsonl` as soon as it is
scored. A rerun skips scored tasks, resumes an interrupted task from its last checkpoint, and refuses a
directory made with other settings (`run.json`). Editing a task's prompt makes its old line stale: the task
runs again from scratch. A run the model cannot carry on (it keeps answering a structured request
invalidly) is scored as it stands; a failure of the model server, the sandbox or the graph leaves the task
unscored, to be resumed by the next run.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel, ConfigDict, Field, field_validator
from rich.console import Console

from sopgraph.evals.acceptance import AcceptanceCheck, asserting_tests, run_check, tests_notice_gutting
from sopgraph.evals.harness import (
    EvalAborted,
    JsonRecord,
    ResultsFile,
    check_settings,
    describe_error,
    pct,
    pyplot,
    save_report,
    select_problems,
)
from sopgraph.graphs import runner
from sopgraph.graphs.company import company_input
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.nodes.llm import StructuredOutputError
from sopgraph.state.company import RUN_TESTS, Delivery, QAReport
from sopgraph.state.context import Context
from sopgraph.state.datafile import read_mapping, validate
from sopgraph.state.usage import UsageRecord, UsageTotals
from sopgraph.tools import sandbox
from sopgraph.tools.program import MAIN_GUARD, ending, find_entry, import_problem, start, survey

__all__ = [
    "DEFAULT_TASKS",
    "Executability",
    "SoftwareSettings",
    "SoftwareSummary",
    "SoftwareTask",
    "TaskFileError",
    "TaskResult",
    "choose_tasks",
    "load_tasks",
    "run_software",
    "run_task",
    "score_repository",
    "summarize",
]

DEFAULT_TASKS = Path(__file__).with_name("software_tasks.yaml")
SCORING_VERSION = 2
"""Part of the settings identity: results scored by another version of the rules are not mixed in."""
LEVELS = {
    1: "does not import",
    2: "imports; does not start, or passes fewer than half of its acceptance checks",
    3: "starts and passes at least half of its acceptance checks",
    4: "passes every acceptance check, and its own tests pass and assert behaviour",
}
MIN_ASSERTING_TESTS = 3
CHECKPOINTS = "checkpoints.sqlite"
GRAPH = "company"

# ------------------------------------------------------------------------------------------------ tasks

Category = Literal["game", "cli", "data", "web"]


class TaskFileError(ValueError):
    """The task file cannot be used; the message names the file, the task and the field."""


class _TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="lower-case letters, digits and _")
    category: Category
    prompt: str = Field(min_length=20, max_length=800)
    checks: list[AcceptanceCheck] = Field(default_factory=list)

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        return " ".join(value.split()) if isinstance(value, str) else value


class _TaskFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    suffix: str = ""
    tasks: list[_TaskSpec] = Field(min_length=1)

    @field_validator("tasks", mode="after")
    @classmethod
    def _unique(cls, tasks: list[_TaskSpec]) -> list[_TaskSpec]:
        seen: set[str] = set()
        for task in tasks:
            if task.id in seen:
                raise ValueError(f"duplicate task id {task.id!r}")
            seen.add(task.id)
        return tasks


@dataclass(frozen=True)
class SoftwareTask:
    id: str
    category: str
    prompt: str
    """The whole idea handed to the company: the task's prompt and the file's suffix."""
    checks: tuple[AcceptanceCheck, ...] = field(default=(), compare=False, hash=False)
    """Black-box acceptance checks of our own (evals/acceptance.py), never part of the prompt."""

    @property
    def sha(self) -> str:
        """Identifies the prompt: a result made for another wording of the task is stale."""
        return hashlib.sha256(self.prompt.encode("utf-8")).hexdigest()[:12]


def load_tasks(path: Path | None = None) -> list[SoftwareTask]:
    """The tasks of a task file (default: the packaged set); TaskFileError names file, task and field."""
    path = path or DEFAULT_TASKS
    data = read_mapping(path, "suffix and tasks (id, category, prompt)", TaskFileError)
    spec = validate(_TaskFile, data, str(path), TaskFileError)
    suffix = " ".join(spec.suffix.split())
    return [SoftwareTask(t.id, t.category, f"{t.prompt} {suffix}".strip(), tuple(t.checks)) for t in spec.tasks]


def choose_tasks(
    tasks: Sequence[SoftwareTask],
    only: Sequence[str] = (),
    limit: int | None = None,
    seed: int = 0,
    first: bool = False,
) -> list[SoftwareTask]:
    """The tasks named by `only` (all when empty), then `limit` of them: a seeded sample, or the first."""
    if only:
        known = [t.id for t in tasks]
        unknown = [i for i in only if i not in known]
        if unknown:
            raise TaskFileError(f"unknown task id {', '.join(unknown)}; the tasks are: {', '.join(known)}")
        tasks = [t for t in tasks if t.id in set(only)]
    return select_problems(tasks, limit, seed, first)


# ---------------------------------------------------------------------------------------------- scoring


@dataclass
class Executability:
    """The verdict on one repository, with the evidence for it."""

    score: int
    reason: str
    """One line: why this level and not the next."""
    installs: bool
    starts: bool
    tests_pass: bool
    entry: str | None
    """The start command that was judged (`python -S main.py --help`), or None without an entry point."""
    checks: dict[str, str] = field(default_factory=dict)
    """What each check saw: install, start, tests."""
    code_files: list[str] = field(default_factory=list)
    test_files: list[str] = field(default_factory=list)
    code_lines: int = 0
    test_lines: int = 0
    tests_passed: int = 0
    tests_failed: int = 0
    tests_errors: int = 0
    seconds: float = 0.0
    acceptance_passed: int = 0
    acceptance_total: int = 0
    acceptance: list[str] = field(default_factory=list)
    """`name: ok` or `name: why it failed`, per acceptance check."""
    asserting_tests: int = 0
    """Test functions with an assert."""
    tests_notice_gutting: bool | None = None
    """Whether the tests fail once every function body is `raise NotImplementedError` (None: not tried)."""


def score_repository(
    root: Path,
    *,
    start_timeout: float = 5.0,
    test_timeout: float = 60.0,
    checks: Sequence[AcceptanceCheck] = (),
) -> Executability:
    """Score the repository at `root` (see the module docstring); the generated code runs only in the
    sandbox. Raises SandboxError when the sandbox itself cannot run."""
    began = time.perf_counter()
    repo = survey(root)
    verdict = Executability(
        score=1,
        reason="",
        installs=False,
        starts=False,
        tests_pass=False,
        entry=None,
        code_files=repo.code,
        test_files=repo.tests,
        code_lines=repo.lines(repo.code),
        test_lines=repo.lines(repo.tests),
    )
    if not repo.code:
        verdict.reason = "does not install: no code (no Python module outside tests/ and docs/)"
        verdict.checks["install"] = "no modules"
        verdict.seconds = round(time.perf_counter() - began, 3)
        return verdict
    entry = find_entry(repo)
    script = entry[1] if entry and not MAIN_GUARD.search(repo.text[entry[1]]) else None
    problems = [p for p in (import_problem(repo, m, m == script, start_timeout) for m in repo.code) if p]
    verdict.installs = not problems
    verdict.checks["install"] = "; ".join(problems) or "all compile and import: " + ", ".join(repo.code)
    if entry is None:
        verdict.checks["start"] = "no entry point: no main.py, no __main__ guard, no run command in README.md"
    else:
        verdict.starts, verdict.entry, verdict.checks["start"] = start(repo, entry[0], start_timeout)
    if repo.tests:
        target = "tests" if all(p.startswith("tests/") for p in repo.tests) else "."
        limits = sandbox.SandboxLimits.for_tests(test_timeout)
        report = sandbox.run_tests(root, target, limits=limits)
        verdict.tests_pass = report.all_passed
        verdict.tests_passed, verdict.tests_failed, verdict.tests_errors = report.passed, report.failed, report.errors
        counts = f"{report.passed} passed, {report.failed} failed, {report.errors} errors"
        verdict.checks["tests"] = counts if report.report_found else f"pytest wrote no report ({ending(report.result)})"
        verdict.asserting_tests = asserting_tests(repo.text)
        if verdict.tests_pass and verdict.asserting_tests >= MIN_ASSERTING_TESTS:
            verdict.tests_notice_gutting = tests_notice_gutting(root, repo.code, limits)
    else:
        verdict.checks["tests"] = "no tests"
    verdict.acceptance_total = len(checks)
    if checks and verdict.installs and entry is not None:
        results = [run_check(root, entry[0], check, start_timeout) for check in checks]
        verdict.acceptance = [f"{r.name}: {r.why}" for r in results]
        verdict.acceptance_passed = sum(r.passed for r in results)
    if checks:
        verdict.checks["acceptance"] = f"{verdict.acceptance_passed} of {verdict.acceptance_total} passed" + (
            f" ({'; '.join(a for a in verdict.acceptance if not a.endswith(': ok'))})"[:600]
            if verdict.acceptance_passed < verdict.acceptance_total and verdict.acceptance
            else ""
        )
    verdict.score, verdict.reason = _level(verdict)
    verdict.seconds = round(time.perf_counter() - began, 3)
    return verdict


def _level(v: Executability) -> tuple[int, str]:
    if not v.installs:
        return 1, f"does not import: {v.checks['install']}"
    if not v.starts:
        return 2, f"imports, does not start: {v.checks['start']}"
    accepted = v.checks.get("acceptance", "no acceptance checks")
    if v.acceptance_total and v.acceptance_passed * 2 < v.acceptance_total:
        return 2, f"starts, but acceptance: {accepted}"
    own = _own_tests(v)
    if v.acceptance_passed < v.acceptance_total or own:
        return 3, f"starts, acceptance: {accepted}; " + (own or "its own tests pass")
    return 4, f"acceptance: {accepted}; its own tests pass ({v.checks['tests']}) and assert behaviour"


def _own_tests(v: Executability) -> str:
    """Why the repository's own tests do not count (empty when they do)."""
    if not v.tests_pass or v.tests_passed == 0:
        return f"its own tests do not pass: {v.checks['tests']}"
    if v.asserting_tests < MIN_ASSERTING_TESTS:
        return f"its tests pass but only {v.asserting_tests} test functions assert (at least {MIN_ASSERTING_TESTS})"
    if not v.tests_notice_gutting:
        return "its tests still pass with every function body replaced by `raise NotImplementedError`"
    return ""


# ---------------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class SoftwareSettings:
    model: str
    max_debug: int = 3
    max_files: int = 5
    review_rounds: int = 1
    seed: int = 0
    temperature: float = 0.2
    test_timeout: float = 60.0
    """Wall-clock seconds of one sandboxed test run (QA's in the company, and the scoring run)."""
    start_timeout: float = 5.0
    """Wall-clock seconds an import or a start may take before it counts as still running."""
    max_consecutive_errors: int = 3

    def context(self) -> Context:
        return Context(model=self.model, seed=self.seed, temperature=self.temperature)

    def identity(self) -> dict[str, Any]:
        """What must match for results to be resumed or compared."""
        return {
            "benchmark": "software",
            "model": self.model,
            "max_debug": self.max_debug,
            "max_files": self.max_files,
            "review_rounds": self.review_rounds,
            "seed": self.seed,
            "temperature": self.temperature,
            "test_timeout": self.test_timeout,
            "start_timeout": self.start_timeout,
            "scoring": SCORING_VERSION,
        }


@dataclass
class TaskResult(JsonRecord):
    """One task's line in results.jsonl."""

    task_id: str
    category: str
    model: str
    scored: bool
    score: int | None = None
    reason: str = ""
    installs: bool = False
    starts: bool = False
    tests_pass: bool = False
    entry: str | None = None
    checks: dict[str, str] = field(default_factory=dict)
    acceptance_passed: int = 0
    acceptance_total: int = 0
    acceptance: list[str] = field(default_factory=list)
    asserting_tests: int = 0
    tests_notice_gutting: bool | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    model_calls: int = 0
    code_files: list[str] = field(default_factory=list)
    test_files: list[str] = field(default_factory=list)
    code_lines: int = 0
    test_lines: int = 0
    tokens_per_line: float | None = None
    """Output tokens per line of code; None without code."""
    seconds: float = 0.0
    """Wall time over every attempt at this task (an interrupted attempt's time counts too)."""
    run_seconds: float = 0.0
    score_seconds: float = 0.0
    test_runs: int = 0
    debug_attempts: int = 0
    """Fix rounds the company's debug loop took (test runs after the first)."""
    outcome: str = ""
    """The company's: passed, gave_up, no_tests; `stopped` when the model could not carry the run on."""
    stop_reason: str | None = None
    resumed: bool = False
    """This attempt continued a run an earlier one left unfinished."""
    thread_id: str = ""
    repo: str = ""
    prompt_sha: str = ""
    error: str | None = None
    """Why the task could not be scored; it is resumed on the next run."""


def thread_id(task: SoftwareTask) -> str:
    return f"software-{task.id}-{task.sha[:8]}"


def repo_dir(out_dir: Path, task: SoftwareTask) -> Path:
    return out_dir / "repos" / task.id


def _company_run(
    task: SoftwareTask, settings: SoftwareSettings, repo: Path, saver: BaseCheckpointSaver, console: Console | None
) -> tuple[dict[str, Any], str | None, bool]:
    """Run (or resume, or just read) the task's company run: (its last values, why it stopped, resumed)."""
    thread = thread_id(task)
    graph = runner.compile_graph(GRAPH, saver)
    config = runner.run_config(thread)
    resumed = saver.get_tuple(config) is not None
    stopped: str | None = None
    lost: list[UsageRecord] = []
    try:
        if not resumed:
            if repo.exists():
                shutil.rmtree(repo)  # left by a run of another wording of this task: start clean
            payload = company_input(
                task.prompt,
                out_dir=repo,
                max_debug=settings.max_debug,
                max_files=settings.max_files,
                max_review_rounds=settings.review_rounds,
                incremental=False,
                test_timeout_s=settings.test_timeout,
            )
            runner.start_run(GRAPH, dict(payload), saver, settings.context(), thread_id=thread, console=console)
        elif not runner.finished(graph.get_state(config)):
            runner.resume_run(saver, thread, console=console)
    except StructuredOutputError as exc:
        stopped = " ".join(str(exc).split())[:400]
        lost = exc.usage  # the failing node's requests: LangGraph keeps no write of a node that raised
    snapshot = graph.get_state(config)
    if not runner.finished(snapshot) and stopped is None:
        raise runner.RunError(f"the company run paused before {', '.join(snapshot.next)} (no budget or review is set)")
    values = dict(snapshot.values)
    if lost:
        values["usage"] = [*(values.get("usage") or []), *lost]
    return values, stopped, resumed


def run_task(
    task: SoftwareTask,
    settings: SoftwareSettings,
    out_dir: Path,
    saver: BaseCheckpointSaver,
    console: Console | None = None,
) -> TaskResult:
    """Run one task through the company and score what it delivered. Raises when it cannot be scored."""
    began = time.perf_counter()
    repo = repo_dir(out_dir, task)
    values, stopped, resumed = _company_run(task, settings, repo, saver, console)
    run_s = time.perf_counter() - began
    verdict = score_repository(
        repo, start_timeout=settings.start_timeout, test_timeout=settings.test_timeout, checks=task.checks
    )
    pool = values.get("pool") or []
    delivery = next((m.payload for m in reversed(pool) if isinstance(m.payload, Delivery)), None)
    test_runs = sum(1 for m in pool if m.kind == RUN_TESTS and isinstance(m.payload, QAReport))
    totals = UsageTotals.of(values.get("usage") or [])
    outcome = "stopped" if stopped else delivery.outcome if delivery else "unfinished"
    return TaskResult(
        task_id=task.id,
        category=task.category,
        model=settings.model,
        scored=True,
        score=verdict.score,
        reason=verdict.reason,
        installs=verdict.installs,
        starts=verdict.starts,
        tests_pass=verdict.tests_pass,
        entry=verdict.entry,
        checks=verdict.checks,
        acceptance_passed=verdict.acceptance_passed,
        acceptance_total=verdict.acceptance_total,
        acceptance=verdict.acceptance,
        asserting_tests=verdict.asserting_tests,
        tests_notice_gutting=verdict.tests_notice_gutting,
        tokens_in=totals.input_tokens,
        tokens_out=totals.output_tokens,
        model_calls=totals.calls,
        code_files=verdict.code_files,
        test_files=verdict.test_files,
        code_lines=verdict.code_lines,
        test_lines=verdict.test_lines,
        tokens_per_line=round(totals.output_tokens / verdict.code_lines, 2) if verdict.code_lines else None,
        seconds=round(time.perf_counter() - began, 3),
        run_seconds=round(run_s, 3),
        score_seconds=verdict.seconds,
        test_runs=test_runs,
        debug_attempts=max(0, test_runs - 1),
        outcome=outcome,
        stop_reason=stopped,
        resumed=resumed,
        thread_id=thread_id(task),
        repo=str(repo),
        prompt_sha=task.sha,
    )


@dataclass(frozen=True)
class Tally:
    """Where a run stands, for progress displays."""

    scored: int
    selected: int
    mean_score: float | None


@dataclass
class SoftwareSummary:
    model: str
    selected: int
    scored: int
    unscored: int
    """Selected but not scored: failed (see `error` in results.jsonl) or not run yet."""
    mean_score: float | None
    histogram: dict[str, int]
    """Tasks at each score, "1" to "4"."""
    shares: dict[str, float]
    mean_by_category: dict[str, float]
    mean_tokens_per_line: float | None
    """The mean over tasks with code of their output tokens per line of code."""
    tokens_in: int
    tokens_out: int
    model_calls: int
    code_lines: int
    test_lines: int
    debug_attempts: int
    acceptance_passed: int
    acceptance_total: int
    task_seconds: float
    """Summed over the scored tasks (every attempt of each)."""
    wall_seconds: float
    """This invocation."""
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _current(tasks: Sequence[SoftwareTask], records: dict[str, TaskResult]) -> list[TaskResult]:
    """The scored results of these tasks made for their present wording, in task order."""
    by_id = {t.id: t for t in tasks}
    return [records[t.id] for t in tasks if t.id in records and records[t.id].prompt_sha == by_id[t.id].sha]


def summarize(
    settings: SoftwareSettings, tasks: Sequence[SoftwareTask], records: dict[str, TaskResult], wall_seconds: float
) -> SoftwareSummary:
    chosen = _current(tasks, records)
    scores = [r.score or 1 for r in chosen]
    histogram = {str(level): scores.count(level) for level in LEVELS}
    categories = sorted({r.category for r in chosen})
    per_line = [r.tokens_per_line for r in chosen if r.tokens_per_line is not None]
    return SoftwareSummary(
        model=settings.model,
        selected=len(tasks),
        scored=len(chosen),
        unscored=len(tasks) - len(chosen),
        mean_score=round(mean(scores), 3) if scores else None,
        histogram=histogram,
        shares={k: round(n / len(chosen), 4) for k, n in histogram.items()} if chosen else {},
        mean_by_category={c: round(mean(r.score or 1 for r in chosen if r.category == c), 3) for c in categories},
        mean_tokens_per_line=round(mean(per_line), 2) if per_line else None,
        tokens_in=sum(r.tokens_in for r in chosen),
        tokens_out=sum(r.tokens_out for r in chosen),
        model_calls=sum(r.model_calls for r in chosen),
        code_lines=sum(r.code_lines for r in chosen),
        test_lines=sum(r.test_lines for r in chosen),
        debug_attempts=sum(r.debug_attempts for r in chosen),
        acceptance_passed=sum(r.acceptance_passed for r in chosen),
        acceptance_total=sum(r.acceptance_total for r in chosen),
        task_seconds=round(sum(r.seconds for r in chosen), 1),
        wall_seconds=round(wall_seconds, 1),
        settings=settings.identity(),
    )


@dataclass
class SoftwareOutcome:
    summary: SoftwareSummary
    results: list[TaskResult]
    out_dir: Path
    report: Path
    newly_scored: int


def _cell(text: object) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def render_markdown(summary: SoftwareSummary, results: Sequence[TaskResult]) -> str:
    s = summary
    per_task = max(1, s.scored)
    mean_score = "n/a" if s.mean_score is None else f"{s.mean_score:.2f}"
    lines = [
        f"# Software tasks: executability of `{s.model}`",
        "",
        "| score | meaning | tasks | share |",
        "|---:|---|---:|---:|",
        *(
            f"| {level} | {meaning} | {s.histogram.get(str(level), 0)} | {pct(s.shares.get(str(level)))} |"
            for level, meaning in sorted(LEVELS.items(), reverse=True)
        ),
        "",
        f"- tasks: {s.selected} selected, {s.scored} scored, {s.unscored} not scored (errors, or not run yet)",
        f"- mean score: {mean_score}"
        + (" (" + ", ".join(f"{c} {m:.2f}" for c, m in s.mean_by_category.items()) + ")" if s.mean_by_category else ""),
        f"- tokens: {s.tokens_in} in / {s.tokens_out} out over {s.model_calls} calls "
        f"({s.tokens_in / per_task:.0f} / {s.tokens_out / per_task:.0f} per task)",
        f"- lines: {s.code_lines} of code, {s.test_lines} of tests; mean output tokens per line of code: "
        + ("n/a" if s.mean_tokens_per_line is None else f"{s.mean_tokens_per_line:.1f}"),
        f"- debug rounds: {s.debug_attempts}",
        f"- acceptance checks passed: {s.acceptance_passed} of {s.acceptance_total}"
        + (f" ({s.acceptance_passed / s.acceptance_total:.0%})" if s.acceptance_total else ""),
        f"- time: {s.task_seconds:.1f} s summed over the scored tasks ({s.task_seconds / per_task:.1f} s each); "
        f"{s.wall_seconds:.1f} s wall for this invocation",
        "- settings: " + ", ".join(f"{k}={v}" for k, v in s.settings.items()),
        "",
        "## Per task",
        "",
        "| task | category | score | acceptance | why | tokens in / out | calls | code lines | test lines "
        "| tokens/line | seconds | debug | outcome |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        per_line = "n/a" if r.tokens_per_line is None else f"{r.tokens_per_line:.1f}"
        lines.append(
            f"| {r.task_id} | {r.category} | {r.score} | {r.acceptance_passed}/{r.acceptance_total} "
            f"| {_cell(r.reason)[:300]} | {r.tokens_in} / {r.tokens_out} "
            f"| {r.model_calls} | {r.code_lines} | {r.test_lines} | {per_line} | {r.seconds:.1f} "
            f"| {r.debug_attempts} | {_cell(r.outcome)} |"
        )
    lines.append("")
    return "\n".join(lines)


COLORS = {"game": "#2b7bba", "cli": "#5aa469", "data": "#e69f00", "web": "#b2478f"}


def _plot(summary: SoftwareSummary, results: Sequence[TaskResult], path: Path) -> bool:
    """The score histogram beside each task's score; False when matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        return False
    fig, (hist, bars) = plt.subplots(
        1, 2, figsize=(9, 0.9 + 0.28 * max(4, len(results))), dpi=120, gridspec_kw={"width_ratios": [1, 2]}
    )
    hist.bar([str(level) for level in LEVELS], [summary.histogram[str(level)] for level in LEVELS], color="#8c8c8c")
    hist.set_xlabel("score")
    hist.set_ylabel("tasks")
    hist.set_title("score histogram", fontsize=9)
    bars.barh(
        [r.task_id for r in results], [r.score or 0 for r in results], color=[COLORS[r.category] for r in results]
    )
    bars.set_xlim(0, 4)
    bars.set_xticks(list(LEVELS))
    bars.invert_yaxis()
    bars.set_title("score per task", fontsize=9)
    for category, colour in COLORS.items():
        bars.bar(0, 0, color=colour, label=category)
    bars.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"software tasks · {summary.model} · n={summary.scored}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_software_report(summary: SoftwareSummary, results: Sequence[TaskResult], out_dir: Path) -> Path:
    """summary.md, summary.json and scores.png in out_dir; returns the markdown path."""
    plot = (lambda path: _plot(summary, results, path)) if results else None
    data = {**summary.to_dict(), "tasks": [asdict(r) for r in results]}
    return save_report(out_dir, render_markdown(summary, results), data, plot, "scores.png", "scores")


OnStart = Callable[[SoftwareTask, int, int], None]
"""Called before each task runs: (task, its position from 1, how many run now)."""
OnDone = Callable[[TaskResult, Tally], None]


def run_software(
    tasks: Sequence[SoftwareTask],
    settings: SoftwareSettings,
    out_dir: Path,
    *,
    console: Console | None = None,
    on_start: OnStart | None = None,
    on_done: OnDone | None = None,
) -> SoftwareOutcome:
    """Run and score every selected task not yet scored in out_dir (one at a time: the model server is the
    bottleneck), then write the report. An interrupt or abort keeps every scored task, and the task in
    progress resumes from its last checkpoint on the next run."""
    out_dir = out_dir.absolute()
    check_settings(out_dir, settings)
    store: ResultsFile[TaskResult] = ResultsFile(out_dir / "results.jsonl", TaskResult)
    history = store.load()
    records = {r.task_id: r for r in _current(tasks, store.scored())}
    todo = [t for t in tasks if t.id not in records]
    start = time.perf_counter()
    newly = errors = 0

    def tally() -> Tally:
        done = _current(tasks, records)
        return Tally(len(done), len(tasks), mean(r.score or 1 for r in done) if done else None)

    try:
        with open_checkpointer(str(out_dir / CHECKPOINTS)) as saver:
            for position, task in enumerate(todo, 1):
                if on_start is not None:
                    on_start(task, position, len(todo))
                earlier = sum(
                    r.seconds for r in history if r.task_id == task.id and r.prompt_sha == task.sha and not r.scored
                )
                began = time.perf_counter()
                try:
                    result = run_task(task, settings, out_dir, saver, console)
                except Exception as exc:  # noqa: BLE001 - recorded unscored, resumed on the next run
                    result = TaskResult(
                        task.id,
                        task.category,
                        settings.model,
                        scored=False,
                        error=describe_error(exc),
                        seconds=round(time.perf_counter() - began, 3),
                        thread_id=thread_id(task),
                        repo=str(repo_dir(out_dir, task)),
                        prompt_sha=task.sha,
                    )
                result.seconds = round(result.seconds + earlier, 3)
                store.append(result)
                if result.scored:
                    records[task.id] = result
                    newly += 1
                    errors = 0
                else:
                    errors += 1
                if on_done is not None:
                    on_done(result, tally())
                if errors >= settings.max_consecutive_errors:
                    raise EvalAborted(f"{errors} tasks in a row could not be scored; last error: {result.error}")
    finally:
        summary = summarize(settings, tasks, records, time.perf_counter() - start)
        results = _current(tasks, records)
        report = write_software_report(summary, results, out_dir)
    return SoftwareOutcome(summary, results, out_dir, report, newly)
