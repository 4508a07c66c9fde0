"""The debug node's repair of one code file, by the shared strategy module (nodes/repair.py).

A failing test run names suspect files. For each, the strategy draws candidates at once (fix requests that
show the failure facts and the current code; with a mixed strategy also fresh rewrites from the file's task),
each candidate runs the project's test suite in the sandbox with only that file swapped in, and the file that
ranks highest is kept, if it beats the current one (fewer problems of the program checks first, when the
judge counts them, then more tests passed); otherwise the file stays as it is (a fix that
passes fewer tests never lands). One debug node runs one round; the graph's debug loop gives the rounds.

Test files are not repaired this way: a candidate test file that drops its failing tests would "pass more".
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from langchain_core.messages import BaseMessage, HumanMessage

from sopgraph.nodes.company.common import code_from_reply
from sopgraph.nodes.llm import ModelGateway
from sopgraph.nodes.repair import (
    Candidate,
    GatewaySampler,
    RepairOutcome,
    Strategy,
    Verdict,
    get_strategy,
    repair,
)
from sopgraph.state.company import TESTS_DIR, QAReport
from sopgraph.tools import sandbox
from sopgraph.tools.workspace import Workspace

__all__ = ["COMPANY_STRATEGY", "FileRepair", "judge_project", "report_verdict", "repair_code_file"]

COMPANY_STRATEGY: Strategy = get_strategy("mixed").with_(rounds=1)
"""Half fix requests (they show the failing tests, which a fresh rewrite from the task never sees), half fresh
rewrites; one round per debug node, the graph's `max_debug` decides how many debug nodes run."""


def report_verdict(report: QAReport) -> Verdict:
    """A test run's report as the incumbent's verdict: tests passed of tests run, and the failure brief."""
    total = max(1, report.passed + report.failed + report.errors)
    passed = report.passed if report.ran_tests else 0
    limit = "wall" if report.timed_out else None
    return Verdict(passed, total, "" if report.all_passed else report.summary, limit)


def judge_project(files: Mapping[str, str], path: str, limits: sandbox.SandboxLimits) -> Callable[[str], Verdict]:
    """A judge for candidates of `path`: the repository (`files`, as QA's test run saw it) with the candidate
    in its place, written to a scratch directory and tested in the sandbox (nothing of it runs here)."""

    def judge(code: str) -> Verdict:
        root = Path(tempfile.mkdtemp(prefix="sopgraph-candidate-")) / "project"
        try:
            ws = Workspace(root).ensure()
            for name, content in {**files, path: code}.items():
                ws.write(name, content)
            result = sandbox.run_tests(root, TESTS_DIR, limits=limits, copy=True)
        finally:
            shutil.rmtree(root.parent, ignore_errors=True)
        total = max(1, result.passed + result.failed + result.errors)
        passed = result.passed if result.report_found else 0
        limit = result.result.stopped_by
        return Verdict(passed, total, "" if result.all_passed else result.summary_for_model(max_chars=2500), limit)

    return judge


@dataclass(frozen=True)
class _FileConversation:
    write_prompt: str
    fix_prompt: Callable[[str, str], str]
    """(current code, failure facts) -> the fix request."""

    def fresh(self) -> list[BaseMessage]:
        return [HumanMessage(self.write_prompt)]

    def repair(self, incumbent: Candidate, facts: str) -> list[BaseMessage]:
        return [HumanMessage(self.fix_prompt(incumbent.code, facts))]


@dataclass(frozen=True)
class FileRepair:
    code: str
    changed: bool
    verdict: Verdict
    outcome: RepairOutcome


def repair_code_file(
    llm: ModelGateway,
    system: str,
    path: str,
    current: str,
    verdict: Verdict,
    *,
    files: Mapping[str, str],
    write_prompt: str,
    fix_prompt: Callable[[str, str], str],
    limits: sandbox.SandboxLimits,
    strategy: Strategy = COMPANY_STRATEGY,
    seed: int = 0,
    judge: Callable[[str], Verdict] | None = None,
) -> FileRepair:
    """The best version of `path` the strategy finds, judged by the project's tests (or by `judge`, with
    `verdict` on the same scale); `current` if none is better. Usage of every candidate request lands in
    `llm`'s records; a spent budget stops before a round."""
    first = Candidate(current, f"```python\n{current}\n```", verdict)
    judge = judge or judge_project(files, path, limits)
    outcome = repair(
        first,
        strategy,
        conversation=_FileConversation(write_prompt, fix_prompt),
        sampler=GatewaySampler(llm, system),
        extract=lambda reply: code_from_reply(path, reply),
        judge=judge,
        judge_all=lambda codes: sandbox.run_many([partial(judge, code) for code in codes]),
        seed=seed,
        stop=llm.over_budget,
    )
    best = outcome.best
    return FileRepair(best.code, best.round > 0, best.verdict, outcome)
