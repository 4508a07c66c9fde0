"""The pass@1 harness shared by HumanEval and MBPP: generate, judge in the sandbox, repair from feedback,
record one JSON line per problem, resume, summarize.

One run gives both numbers. The first generation's verdict on the hidden tests is pass@1 *without*
feedback. With feedback, that generation's visible tests run in the sandbox; while any fails, the model is
shown the failure summary and asked for a fix, at most `attempts` times; the code that passes the visible
tests (or the last fix) is then judged on the hidden tests: pass@1 *with* feedback. Greedy decoding
(temperature 0) and the run's seed keep replies repeatable as far as the server allows. A fix that comes
back identical to the answer it fixes ends the loop (the next request would be the same conversation);
small models do that often at temperature 0, and `fix_temperature` samples the fixes instead.

Results go to `<out>/results.jsonl`, one line per problem, written whole and flushed as soon as the problem
is done. A restart skips every task id already scored there; a problem whose model call or sandbox failed
is written with its error, unscored, and retried on the next run. `run.json` holds the settings that
decide the numbers, and a restart with different ones is refused rather than mixing results.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, Self, TypeVar, cast

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from sopgraph.evals.codegen import (
    DEFAULT_LIMITS,
    HiddenVerdict,
    Problem,
    VisibleOutcome,
    assemble_solution,
    feedback_summary,
    run_hidden,
    run_visible,
)
from sopgraph.evals.metrics import mean_pass_at_k
from sopgraph.nodes.llm import ModelGateway
from sopgraph.state.context import Context
from sopgraph.tools.sandbox import SandboxLimits

__all__ = [
    "EvalAborted",
    "EvalSettings",
    "ItemResult",
    "JsonRecord",
    "ResultsFile",
    "RunOutcome",
    "SettingsMismatch",
    "check_settings",
    "Summary",
    "Tally",
    "describe_error",
    "pct",
    "pyplot",
    "run_eval",
    "safe_name",
    "save_report",
    "select_problems",
    "solve",
    "summarize",
    "write_report",
]

FIX_PROMPT = """{summary}

Fix the code. Reply with the complete corrected function in one ```python code block."""

ROLE = "coder"


class EvalAborted(RuntimeError):
    """The run stopped early (e.g. the model kept failing); scored results are kept for a restart."""


class SettingsMismatch(RuntimeError):
    """The output directory holds results made with other settings."""


@dataclass(frozen=True)
class EvalSettings:
    benchmark: str
    model: str
    attempts: int = 3
    """Fix requests after the first generation, at most (0: feedback runs the tests but never repairs)."""
    feedback: bool = True
    seed: int = 0
    temperature: float = 0.0
    fix_temperature: float | None = None
    """Sampling temperature of fix requests; None: the same as the first generation."""
    max_output_tokens: int = 768
    system: str = ""
    limits: SandboxLimits = DEFAULT_LIMITS
    concurrency: int = 1
    max_consecutive_errors: int = 3
    extra: dict[str, Any] = field(default_factory=dict)
    """Benchmark settings that change the numbers (e.g. MBPP's visible test count)."""

    @property
    def repair_temperature(self) -> float:
        return self.temperature if self.fix_temperature is None else self.fix_temperature

    def context(self, temperature: float | None = None) -> Context:
        return Context(
            model=self.model,
            temperature=self.temperature if temperature is None else temperature,
            seed=self.seed,
            max_output_tokens=self.max_output_tokens,
            max_reasks=0,
        )

    def identity(self) -> dict[str, Any]:
        """What must match for results to be resumed or compared."""
        return {
            "benchmark": self.benchmark,
            "model": self.model,
            "attempts": self.attempts if self.feedback else 0,
            "feedback": self.feedback,
            "seed": self.seed,
            "temperature": self.temperature,
            "fix_temperature": self.repair_temperature if self.feedback else None,
            "max_output_tokens": self.max_output_tokens,
            **self.extra,
        }


class JsonRecord:
    """A dataclass stored as one JSON line of a results file; keys it does not know are ignored on load, so
    files written by an older version still load."""

    def to_json(self) -> str:
        return json.dumps(asdict(cast(Any, self)), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = cast(Any, cls).__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class ItemResult(JsonRecord):
    """One problem's line in results.jsonl."""

    task_id: str
    benchmark: str
    model: str
    scored: bool
    passed_without_feedback: bool = False
    passed_with_feedback: bool | None = None
    """None when the run had feedback off."""
    attempts_used: int = 0
    """Fix requests made (0 when the first code passed its visible tests, or without feedback)."""
    generations: int = 0
    visible_tests: int = 0
    """Visible tests used for feedback (after dropping those the reference solution fails)."""
    visible_passed_first: bool | None = None
    visible_passed_final: bool | None = None
    fix_repeated: bool = False
    """The feedback loop stopped early: a fix came back identical to the reply it was meant to fix, so every
    further request would be the same conversation (greedy decoding, or sampling with the run's seed)."""
    tokens_in: int = 0
    tokens_out: int = 0
    model_calls: int = 0
    model_seconds: float = 0.0
    sandbox_seconds: float = 0.0
    seconds: float = 0.0
    limit_without_feedback: str | None = None
    limit_with_feedback: str | None = None
    failure_without_feedback: str | None = None
    failure_with_feedback: str | None = None
    error: str | None = None
    """Why the problem could not be scored (model or sandbox failure); it is retried on restart."""
    code_without_feedback: str | None = None
    code_with_feedback: str | None = None
    replies: list[str] = field(default_factory=list)
    """Every raw model reply, in order, to audit code extraction."""


# ------------------------------------------------------------------------------------------ one problem


def _messages(settings: EvalSettings, *turns: str) -> list[BaseMessage]:
    msgs: list[BaseMessage] = [SystemMessage(settings.system)] if settings.system else []
    for i, text in enumerate(turns):
        msgs.append(HumanMessage(text) if i % 2 == 0 else AIMessage(text))
    return msgs


def _valid_visible(problem: Problem, limits: SandboxLimits) -> tuple[str, ...]:
    """The visible tests the reference solution passes (all of them when there is no reference)."""
    if problem.reference is None or not problem.visible_tests:
        return problem.visible_tests
    outcome = run_visible(problem, problem.reference, problem.visible_tests, limits)
    if outcome.crash:
        return ()
    return tuple(t for t, f in zip(outcome.tests, outcome.failures, strict=True) if f is None)


def solve(problem: Problem, settings: EvalSettings, pool: ThreadPoolExecutor | None = None) -> ItemResult:
    """Generate, judge and (with feedback) repair one problem. Raises on model or sandbox failure."""
    start = time.perf_counter()
    gateway = ModelGateway(settings.context(), role=ROLE)
    fixer = gateway
    if settings.repair_temperature != settings.temperature:
        fixer = ModelGateway(settings.context(settings.repair_temperature), role=ROLE)
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=2)
    sandbox_s = 0.0
    try:
        visible_future = pool.submit(_valid_visible, problem, settings.limits) if settings.feedback else None
        reply = gateway.text(_messages(settings, problem.prompt))
        first = assemble_solution(problem, reply)
        hidden_future = pool.submit(run_hidden, problem, first, settings.limits)
        result = ItemResult(problem.task_id, settings.benchmark, settings.model, scored=True, generations=1)
        result.replies.append(reply)
        result.code_without_feedback = first
        final, final_verdict = first, None
        if visible_future is not None:
            tests = visible_future.result()
            result.visible_tests = len(tests)
            outcome: VisibleOutcome = run_visible(problem, first, tests, settings.limits)
            sandbox_s += outcome.seconds
            result.visible_passed_first = outcome.passed
            last_reply = reply
            while not outcome.passed and result.attempts_used < settings.attempts:
                result.attempts_used += 1
                fix = FIX_PROMPT.format(summary=feedback_summary(outcome))
                new_reply = fixer.text(_messages(settings, problem.prompt, last_reply, fix))
                result.generations += 1
                result.replies.append(new_reply)
                if new_reply == last_reply:
                    # Same answer to the same failure: the next request would be the very same conversation,
                    # which greedy decoding (or seeded sampling) answers the same way again.
                    result.fix_repeated = True
                    break
                last_reply = new_reply
                final = assemble_solution(problem, last_reply)
                outcome = run_visible(problem, final, tests, settings.limits)
                sandbox_s += outcome.seconds
            result.visible_passed_final = outcome.passed
        hidden: HiddenVerdict = hidden_future.result()
        sandbox_s += hidden.seconds
        result.passed_without_feedback = hidden.passed
        result.limit_without_feedback = hidden.limit_hit
        result.failure_without_feedback = hidden.failure
        if settings.feedback:
            if final == first:
                final_verdict = hidden
            else:
                final_verdict = run_hidden(problem, final, settings.limits)
                sandbox_s += final_verdict.seconds
            result.passed_with_feedback = final_verdict.passed
            result.limit_with_feedback = final_verdict.limit_hit
            result.failure_with_feedback = final_verdict.failure
            result.code_with_feedback = final
    finally:
        if own_pool:
            pool.shutdown(wait=True)
    records = gateway.records + (fixer.records if fixer is not gateway else [])
    result.tokens_in = sum(r.input_tokens for r in records)
    result.tokens_out = sum(r.output_tokens for r in records)
    result.model_calls = len(records)
    result.model_seconds = round(sum(r.latency_s for r in records), 3)
    result.sandbox_seconds = round(sandbox_s, 3)
    result.seconds = round(time.perf_counter() - start, 3)
    return result


# --------------------------------------------------------------------------------------- results file


class Record(Protocol):
    """A line of a results file: a key attribute (see `ResultsFile`), `scored`, and a JSON round trip."""

    scored: bool

    def to_json(self) -> str: ...


R = TypeVar("R", bound=Record)


class ResultsFile(Generic[R]):
    """results.jsonl: appended one whole line at a time, flushed and fsynced; a torn last line (a crash
    mid-write) is dropped when the file is opened again.

    Lines are `record` objects (`ItemResult` by default) rebuilt with `record.from_dict`; `key` names the
    attribute that identifies an item (a task id, an ablation switch)."""

    def __init__(self, path: Path, record: Any = ItemResult, key: str = "task_id") -> None:
        self.path = path
        self.record = record
        self.key = key
        self._lock = threading.Lock()

    def load(self) -> list[R]:
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        records: list[R] = []
        good_end = 0
        offset = 0
        for line in raw.splitlines(keepends=True):
            offset += len(line)
            if not line.endswith(b"\n"):
                break
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and self.key in data:
                records.append(self.record.from_dict(data))
            good_end = offset
        if good_end < len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
        return records

    def scored(self) -> dict[str, R]:
        """The last scored record of each key."""
        return {getattr(r, self.key): r for r in self.load() if r.scored}

    def append(self, result: R) -> None:
        data = (result.to_json() + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(fd, data)
                while written < len(data):  # os.write may be partial for large lines
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            finally:
                os.close(fd)


# -------------------------------------------------------------------------------------------- runner


P = TypeVar("P")


def select_problems(problems: Sequence[P], limit: int | None = None, seed: int = 0, first: bool = False) -> list[P]:
    """All problems (or any items), or `limit` of them: a seeded random sample (kept in benchmark order), or
    the first `limit` with `first`. The same seed always picks the same subset, and a larger limit a superset
    of it, so a run can be extended in the same output directory."""
    if limit is None or limit >= len(problems):
        return list(problems)
    if limit < 1:
        raise ValueError("--limit must be at least 1")
    if first:
        return list(problems[:limit])
    order = list(range(len(problems)))
    random.Random(seed).shuffle(order)
    chosen = set(order[:limit])  # a prefix of one shuffle: a larger limit keeps the smaller one's problems
    return [p for i, p in enumerate(problems) if i in chosen]


@dataclass
class Summary:
    benchmark: str
    model: str
    feedback: bool
    attempts: int
    selected: int
    scored: int
    unscored: int
    """Selected but not scored: failed (see `error` in results.jsonl) or not run yet."""
    passed_without_feedback: int
    passed_with_feedback: int
    pass1_without_feedback: float | None
    pass1_with_feedback: float | None
    fixed_by_feedback: int
    broken_by_feedback: int
    fix_requests: int
    tokens_in: int
    tokens_out: int
    model_calls: int
    model_seconds: float
    item_seconds: float
    wall_seconds: float
    limits_hit: dict[str, int]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    settings: EvalSettings, problems: Sequence[Problem], records: dict[str, ItemResult], wall_seconds: float
) -> Summary:
    """Numbers over the selected problems that are scored; the others are counted as unscored."""
    chosen = [records[p.task_id] for p in problems if p.task_id in records]
    without = [r.passed_without_feedback for r in chosen]
    with_ = [bool(r.passed_with_feedback) for r in chosen]
    limits: Counter[str] = Counter()
    for r in chosen:
        for limit in {r.limit_without_feedback, r.limit_with_feedback} - {None}:
            limits[str(limit)] += 1
    return Summary(
        benchmark=settings.benchmark,
        model=settings.model,
        feedback=settings.feedback,
        attempts=settings.attempts,
        selected=len(problems),
        scored=len(chosen),
        unscored=len(problems) - len(chosen),
        passed_without_feedback=sum(without),
        passed_with_feedback=sum(with_),
        pass1_without_feedback=mean_pass_at_k([(1, int(p)) for p in without], 1) if chosen else None,
        pass1_with_feedback=(mean_pass_at_k([(1, int(p)) for p in with_], 1) if chosen and settings.feedback else None),
        fixed_by_feedback=sum(1 for r in chosen if r.passed_with_feedback and not r.passed_without_feedback),
        broken_by_feedback=sum(1 for r in chosen if r.passed_without_feedback and r.passed_with_feedback is False),
        fix_requests=sum(r.attempts_used for r in chosen),
        tokens_in=sum(r.tokens_in for r in chosen),
        tokens_out=sum(r.tokens_out for r in chosen),
        model_calls=sum(r.model_calls for r in chosen),
        model_seconds=round(sum(r.model_seconds for r in chosen), 1),
        item_seconds=round(sum(r.seconds for r in chosen), 1),
        wall_seconds=round(wall_seconds, 1),
        limits_hit=dict(limits),
        settings=settings.identity(),
    )


@dataclass
class RunOutcome:
    summary: Summary
    out_dir: Path
    report: Path
    newly_scored: int


@dataclass(frozen=True)
class Tally:
    """Where a run stands, for progress displays."""

    scored: int
    selected: int
    passed_without_feedback: int
    passed_with_feedback: int


Progress = Callable[[ItemResult | None, Tally], None]
"""Called once with None before the first problem, then after each problem with its result."""


def _tally(problems: Sequence[Problem], records: dict[str, ItemResult]) -> Tally:
    chosen = [records[p.task_id] for p in problems if p.task_id in records]
    return Tally(
        len(chosen),
        len(problems),
        sum(r.passed_without_feedback for r in chosen),
        sum(bool(r.passed_with_feedback) for r in chosen),
    )


class Identified(Protocol):
    def identity(self) -> dict[str, Any]: ...


def check_settings(out_dir: Path, settings: Identified) -> None:
    """Record the settings that decide the numbers in out_dir/run.json, or refuse a directory made with others."""
    path = out_dir / "run.json"
    wanted = settings.identity()
    if path.exists():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            found = None
        if found != wanted:
            diff = {k: (found or {}).get(k) for k in wanted if (found or {}).get(k) != wanted[k]}
            raise SettingsMismatch(
                f"{out_dir} holds results made with other settings ({diff} there, "
                f"{ {k: wanted[k] for k in diff} } now); use another --out or delete that directory"
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".run.json.tmp")
    tmp.write_text(json.dumps(wanted, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}" if text else type(exc).__name__


def describe_error(exc: BaseException) -> str:
    """One line for a results file: the exception, its message and the file and line that raised it."""
    tb = traceback.extract_tb(exc.__traceback__)[-1:]
    where = f" at {Path(tb[0].filename).name}:{tb[0].lineno}" if tb else ""
    return _one_line(exc) + where


def _attempt(
    problem: Problem, settings: EvalSettings, pool: ThreadPoolExecutor, store: ResultsFile[ItemResult]
) -> ItemResult:
    """Solve and record one problem; failures of the model or sandbox become an unscored record."""
    start = time.perf_counter()
    try:
        result = solve(problem, settings, pool)
    except Exception as exc:  # noqa: BLE001 - recorded, retried on restart, and counted towards abort
        result = ItemResult(
            problem.task_id,
            settings.benchmark,
            settings.model,
            scored=False,
            error=describe_error(exc),
            seconds=round(time.perf_counter() - start, 3),
        )
    store.append(result)
    return result


def run_eval(
    problems: Sequence[Problem],
    settings: EvalSettings,
    out_dir: Path,
    progress: Progress | None = None,
) -> RunOutcome:
    """Score every selected problem not yet scored in out_dir, then write the summary.

    Up to `settings.concurrency` problems are in flight at once (the model server is the bottleneck; their
    sandbox runs overlap). An interrupt (KeyboardInterrupt) or abort leaves every finished problem recorded.
    """
    check_settings(out_dir, settings)
    store: ResultsFile[ItemResult] = ResultsFile(out_dir / "results.jsonl")
    records = store.scored()
    todo = [p for p in problems if p.task_id not in records]
    start = time.perf_counter()
    newly = 0
    consecutive_errors = 0
    pending = iter(todo)
    workers = max(1, settings.concurrency)
    sandbox_pool = ThreadPoolExecutor(max_workers=2 * workers, thread_name_prefix="eval-sandbox")
    items = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eval-item")
    inflight: set[Future[ItemResult]] = set()

    def refill() -> None:
        while len(inflight) < workers:
            problem = next(pending, None)
            if problem is None:
                return
            inflight.add(items.submit(_attempt, problem, settings, sandbox_pool, store))

    finished = False
    try:
        if progress is not None:
            progress(None, _tally(problems, records))
        refill()
        while inflight:
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            inflight.difference_update(done)
            for future in done:
                result = future.result()  # re-raises KeyboardInterrupt from a worker
                if result.scored:
                    records[result.task_id] = result
                    newly += 1
                    consecutive_errors = 0
                else:
                    consecutive_errors += 1
                if progress is not None:
                    progress(result, _tally(problems, records))
                if consecutive_errors >= settings.max_consecutive_errors:
                    raise EvalAborted(
                        f"{consecutive_errors} problems in a row could not be scored; last error: {result.error}"
                    )
            refill()
        finished = True
    finally:
        # On an interrupt, return at once: problems still in flight record themselves when their model call
        # returns (the interpreter waits for them at exit; a second Ctrl-C stops that wait).
        items.shutdown(wait=finished, cancel_futures=True)
        sandbox_pool.shutdown(wait=False, cancel_futures=True)
        summary = summarize(settings, problems, records, time.perf_counter() - start)
        report = write_report(summary, out_dir)
    return RunOutcome(summary, out_dir, report, newly)


# -------------------------------------------------------------------------------------------- report


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal, or n/a."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


def render_markdown(summary: Summary) -> str:
    s = summary
    title = {"humaneval": "HumanEval", "mbpp": "MBPP"}.get(s.benchmark, s.benchmark)
    lines = [
        f"# {title}: pass@1 of `{s.model}`",
        "",
        "| | pass@1 | passed / scored |",
        "|---|---:|---:|",
        f"| without feedback | {pct(s.pass1_without_feedback)} | {s.passed_without_feedback} / {s.scored} |",
    ]
    if s.feedback:
        lines.append(
            f"| with executable feedback (≤ {s.attempts} fixes) | {pct(s.pass1_with_feedback)} | "
            f"{s.passed_with_feedback} / {s.scored} |"
        )
    per_item = max(1, s.scored)
    lines += [
        "",
        f"- problems: {s.selected} selected, {s.scored} scored, {s.unscored} not scored (errors, or not run yet)",
    ]
    if s.feedback:
        lines.append(
            f"- feedback: {s.fix_requests} fix requests; {s.fixed_by_feedback} problems fixed, "
            f"{s.broken_by_feedback} broken by a fix"
        )
    lines += [
        f"- tokens: {s.tokens_in} in / {s.tokens_out} out over {s.model_calls} calls "
        f"({s.tokens_in / per_item:.0f} / {s.tokens_out / per_item:.0f} per problem)",
        f"- time: {s.wall_seconds:.1f} s wall for this invocation; {s.item_seconds:.1f} s summed over the scored "
        f"problems ({s.item_seconds / per_item:.1f} s each), {s.model_seconds:.1f} s of it waiting on the model",
        "- sandbox limits hit: "
        + (", ".join(f"{k} ×{v}" for k, v in sorted(s.limits_hit.items())) if s.limits_hit else "none"),
        "- settings: " + ", ".join(f"{k}={v}" for k, v in s.settings.items()),
        "",
    ]
    return "\n".join(lines)


def pyplot() -> Any | None:
    """matplotlib's pyplot on the file-only Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _plot(summary: Summary, path: Path) -> bool:
    """A two-bar chart of pass@1; skipped (False) when matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        return False
    labels = ["without feedback"]
    values = [summary.pass1_without_feedback or 0.0]
    if summary.feedback:
        labels.append(f"with feedback\n(≤ {summary.attempts} fixes)")
        values.append(summary.pass1_with_feedback or 0.0)
    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    bars = ax.bar(labels, [100 * v for v in values], color=["#8c8c8c", "#2b7bba"][: len(values)])
    for bar, value in zip(bars, values, strict=True):
        ax.annotate(f"{100 * value:.1f}%", (bar.get_x() + bar.get_width() / 2, 100 * value), ha="center", va="bottom")
    ax.set_ylim(0, 100)
    ax.set_ylabel("pass@1 (%)")
    ax.set_title(f"{summary.benchmark} · {summary.model} · n={summary.scored}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def save_report(
    out_dir: Path,
    markdown: str,
    data: dict[str, Any],
    plot: Callable[[Path], bool] | None = None,
    image: str = "plot.png",
    alt: str = "plot",
) -> Path:
    """summary.md (with the image linked when `plot(path)` drew it) and summary.json in out_dir; returns the
    markdown path. Every evaluation's report goes through here, so they all look alike on disk."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "summary.md"
    if plot is not None and plot(out_dir / image):
        markdown += f"\n![{alt}]({image})\n"
    md.write_text(markdown, encoding="utf-8")
    (out_dir / "summary.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return md


def write_report(summary: Summary, out_dir: Path) -> Path:
    """summary.md, summary.json and (with matplotlib) pass_at_1.png in out_dir; returns the markdown path."""
    plot = (lambda path: _plot(summary, path)) if summary.scored else None
    return save_report(out_dir, render_markdown(summary), summary.to_dict(), plot, "pass_at_1.png", "pass@1")


def safe_name(text: str) -> str:
    """A model name (or any label) as a file or directory name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"
