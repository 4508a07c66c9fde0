"""The pass@1 harness shared by HumanEval and MBPP: generate, judge in the sandbox, repair from feedback,
record one JSON line per problem, resume, summarize.

One run gives both numbers. The first generation (greedy by default) is judged on the hidden tests: pass@1
*without* feedback. With feedback, the same first answer runs its *visible* tests in the sandbox and a
repair strategy (nodes/repair.py, shared with the company's debug node) draws candidates while they fail,
keeping the one that passes the most visible tests; that code is judged on the hidden tests: pass@1 *with*
feedback. Several strategies can run from the same first answer (`compare`), so the comparison table is
not blurred by different first answers; the main strategy's result is `passed_with_feedback`.

What the model sees: the benchmark prompt (see humaneval.py and mbpp.py for exactly which tests it shows)
and, in a repair request, its previous answer and the facts of its failing visible tests (the test, what
came back or what was raised and where). Hidden tests are never shown: selection and repair use visible
tests only, and the verdict runs the hidden ones.

Results go to `<out>/results.jsonl`, one line per problem, written whole and flushed as soon as the problem
is done. A restart skips every task id already scored there; a problem whose model call or sandbox failed
is written with its error, unscored, and retried on the next run. `run.json` holds the settings that
decide the numbers, and a restart with different ones is refused rather than mixing results.
"""

from __future__ import annotations

import contextvars
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
from functools import partial
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
from sopgraph.nodes.repair import (
    DEFAULT_STRATEGY,
    Candidate,
    GatewaySampler,
    Proposal,
    Sampler,
    Strategy,
    Verdict,
    get_strategy,
    repair,
)
from sopgraph.state.context import Context
from sopgraph.state.usage import UsageRecord
from sopgraph.tools.cancel import Abandoned, cancel_on_interrupt, run_one
from sopgraph.tools.cancel import current as current_cancel
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
PROMPT_STYLES = ("chat", "qwen")
"""chat: our system + user prompt through the chat API; qwen: the Qwen2.5-Coder team's protocol (evals/prefill.py)."""


def default_prompt_style(model: str) -> str:
    """qwen for the embedded Qwen2.5-Coder models (measured better on all 164 HumanEval problems, with fewer
    tokens: docs/RESULTS.md, *Harness fidelity*), chat for every other model (the pre-filled protocol needs a
    raw completions endpoint and a ChatML model)."""
    from sopgraph.nodes.llm import provider_of

    return "qwen" if provider_of(model) == "local" else "chat"


class EvalAborted(RuntimeError):
    """The run stopped early (e.g. the model kept failing); scored results are kept for a restart."""


class SettingsMismatch(RuntimeError):
    """The output directory holds results made with other settings."""


@dataclass(frozen=True)
class EvalSettings:
    benchmark: str
    model: str
    attempts: int | None = None
    """Repair rounds after the first generation, at most; None: the strategy's own (0: tests run, no repair)."""
    feedback: bool = True
    seed: int = 0
    temperature: float = 0.0
    fix_temperature: float | None = None
    """Sampling temperature of repair candidates; None: the strategy's own."""
    max_output_tokens: int = 768
    system: str = ""
    limits: SandboxLimits = DEFAULT_LIMITS
    concurrency: int = 1
    max_consecutive_errors: int = 3
    extra: dict[str, Any] = field(default_factory=dict)
    """Benchmark settings that change the numbers (e.g. MBPP's visible test count)."""
    strategy: str = DEFAULT_STRATEGY
    """The repair strategy whose result is `passed_with_feedback` (nodes/repair.py)."""
    compare: tuple[str, ...] = ()
    """More strategies run from the same first answer, for the comparison table (`by_strategy`)."""
    k: int | None = None
    """Candidates per repair round; None: the strategy's own."""
    prompt_style: str = "chat"

    def __post_init__(self) -> None:
        for name in (self.strategy, *self.compare):
            get_strategy(name)
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"unknown prompt style {self.prompt_style!r}; use one of {', '.join(PROMPT_STYLES)}")

    def strategy_named(self, name: str) -> Strategy:
        """A strategy with this run's overrides (rounds, k, temperature) applied."""
        s = get_strategy(name)
        if s.rounds == 0:
            return s
        if self.attempts is not None:
            s = s.with_(rounds=self.attempts)
        if self.k is not None:
            s = s.with_(k=self.k)
        if self.fix_temperature is not None:
            s = s.with_(temperature=self.fix_temperature)
        return s

    @property
    def strategies(self) -> list[Strategy]:
        names = list(dict.fromkeys((self.strategy, *self.compare)))
        return [self.strategy_named(n) for n in names] if self.feedback else []

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
        identity: dict[str, Any] = {
            "benchmark": self.benchmark,
            "model": self.model,
            "feedback": self.feedback,
            "seed": self.seed,
            "temperature": self.temperature,
            "max_output_tokens": self.max_output_tokens,
            "prompt_style": self.prompt_style,
            **self.extra,
        }
        if self.feedback:
            identity["strategies"] = [
                {
                    "name": s.name,
                    "rounds": s.rounds,
                    "k": s.k,
                    "temperature": s.temperature,
                    "repair_share": s.repair_share,
                }
                for s in self.strategies
            ]
        return identity


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
class StrategyResult:
    """What one repair strategy made of a problem's first answer."""

    passed_with_feedback: bool
    visible_passed_final: bool
    final_round: int
    """Round the final code was drawn in (0: the first answer stood)."""
    final_fresh: bool
    rounds: int
    requests: int
    repeats: int
    errors: int
    stopped: str
    tokens_in: int
    tokens_out: int
    seconds: float
    """Wall time of the repair (requests and sandbox runs), not counting the first answer."""
    limit_hit: str | None = None
    failure: str | None = None
    code: str | None = None
    drawn: list[dict[str, Any]] = field(default_factory=list)
    """Every candidate drawn: round, index, seed, fresh, visible tests passed/total, repeat, error, limit."""


@dataclass
class ItemResult(JsonRecord):
    """One problem's line in results.jsonl."""

    task_id: str
    benchmark: str
    model: str
    scored: bool
    passed_without_feedback: bool = False
    passed_with_feedback: bool | None = None
    """The main strategy's verdict on the hidden tests; None when the run had feedback off."""
    strategy: str | None = None
    attempt_passed: int | None = None
    """With feedback: the round whose code passed the hidden tests (0: the first answer), else None."""
    attempts_used: int = 0
    """Repair rounds the main strategy ran (0 when the first code passed its visible tests, or no feedback)."""
    generations: int = 0
    """Model replies for the main strategy, the first answer included."""
    visible_tests: int = 0
    """Visible tests used for feedback (after dropping those the reference solution fails)."""
    visible_passed_first: bool | None = None
    visible_passed_final: bool | None = None
    fix_repeated: bool = False
    """The main strategy stopped because a deterministic repair came back identical (nothing new to try)."""
    tokens_in: int = 0
    tokens_out: int = 0
    """First answer plus the main strategy's repair (comparison strategies are counted in `by_strategy`)."""
    model_calls: int = 0
    model_seconds: float = 0.0
    sandbox_seconds: float = 0.0
    seconds: float = 0.0
    first_tokens_in: int = 0
    first_tokens_out: int = 0
    limit_without_feedback: str | None = None
    limit_with_feedback: str | None = None
    failure_without_feedback: str | None = None
    failure_with_feedback: str | None = None
    error: str | None = None
    """Why the problem could not be scored (model or sandbox failure); it is retried on restart."""
    code_without_feedback: str | None = None
    code_with_feedback: str | None = None
    by_strategy: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each strategy run (the main one included), as a StrategyResult."""
    replies: list[str] = field(default_factory=list)
    """Every raw model reply, in order (the first answer, then the main strategy's candidates)."""


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


class _EvalConversation:
    """The repair requests of a benchmark problem: the original prompt, or the incumbent answer and its facts."""

    def __init__(self, problem: Problem, settings: EvalSettings) -> None:
        self.problem = problem
        self.settings = settings

    def fresh(self) -> list[BaseMessage]:
        return _messages(self.settings, self.problem.prompt)

    def repair(self, incumbent: Candidate, facts: str) -> list[BaseMessage]:
        return _messages(self.settings, self.problem.prompt, incumbent.reply, FIX_PROMPT.format(summary=facts))


def _verdict(outcome: VisibleOutcome) -> Verdict:
    facts = "" if outcome.passed else feedback_summary(outcome)
    return Verdict(len(outcome.tests) - outcome.failed_count, len(outcome.tests), facts, outcome.limit_hit)


def _raw_sampler(settings: EvalSettings, records: list[UsageRecord]) -> Sampler:
    if settings.prompt_style == "qwen":
        from sopgraph.evals.prefill import PrefillSampler

        return PrefillSampler(settings.model, settings.max_output_tokens, ROLE, records)
    gateway = ModelGateway(settings.context(), role=ROLE)
    gateway.records = records
    return GatewaySampler(gateway)


class _SharedRequests:
    """One problem's model requests, shared between the strategies compared on it: a request identical to one
    already made (same messages, temperature and seed: e.g. the fresh samples of `resample` and `mixed`) is
    sent once, and its reply and usage are counted for every strategy that asked, so each strategy's tokens
    are its own cost as if run alone. Failed requests are not kept."""

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._sent: dict[Any, Future[tuple[str, list[UsageRecord]]]] = {}

    def sampler(self, records: list[UsageRecord]) -> Sampler:
        def sample(proposal: Proposal) -> str:
            key = (tuple((m.type, str(m.content)) for m in proposal.messages), proposal.temperature, proposal.seed)
            with self._lock:
                future = self._sent.get(key)
                owner = future is None
                if future is None:
                    future = self._sent[key] = Future()
            if owner:
                mine: list[UsageRecord] = []
                try:
                    future.set_result((_raw_sampler(self.settings, mine)(proposal), mine))
                except BaseException as exc:
                    with self._lock:
                        self._sent.pop(key, None)
                    future.set_exception(exc)
            reply, used = future.result()
            with self._lock:
                records.extend(used)
            return reply

        return sample


def solve(problem: Problem, settings: EvalSettings, pool: ThreadPoolExecutor | None = None) -> ItemResult:
    """Generate, judge and (with feedback) repair one problem with each strategy. Raises on model or sandbox
    failure (the problem is then recorded unscored and retried on the next run)."""
    start = time.perf_counter()
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=2)
    sandbox_s = 0.0
    shared = _SharedRequests(settings)
    first_records: list[UsageRecord] = []
    hidden_cache: dict[str, Future[HiddenVerdict]] = {}
    main_records: list[UsageRecord] = []

    def hidden(code: str) -> Future[HiddenVerdict]:
        if code not in hidden_cache:
            hidden_cache[code] = pool.submit(run_hidden, problem, code, settings.limits)
        return hidden_cache[code]

    try:
        visible_future = pool.submit(_valid_visible, problem, settings.limits) if settings.feedback else None
        conversation = _EvalConversation(problem, settings)
        opening = Proposal(conversation.fresh(), settings.temperature, settings.seed)
        reply = run_one(partial(shared.sampler(first_records), opening), name="first-answer")  # Ctrl-C abandons it
        first = assemble_solution(problem, reply)
        hidden(first)
        result = ItemResult(problem.task_id, settings.benchmark, settings.model, scored=True, generations=1)
        result.replies.append(reply)
        result.code_without_feedback = first
        if visible_future is not None:
            tests = visible_future.result()
            result.visible_tests = len(tests)

            def judge(code: str) -> Verdict:
                return _verdict(run_visible(problem, code, tests, settings.limits))

            def judge_all(codes: Sequence[str]) -> list[Verdict]:
                return list(pool.map(judge, codes))

            judged = run_visible(problem, first, tests, settings.limits)
            sandbox_s += judged.seconds
            incumbent = Candidate(first, reply, _verdict(judged))
            result.visible_passed_first = judged.passed
            for position, strategy in enumerate(settings.strategies):
                began = time.perf_counter()
                used: list[UsageRecord] = []
                outcome = repair(
                    incumbent,
                    strategy,
                    conversation=conversation,
                    sampler=shared.sampler(used),
                    extract=lambda text: assemble_solution(problem, text),
                    judge=judge,
                    judge_all=judge_all,
                    seed=settings.seed,
                )
                final = outcome.best
                verdict = hidden(final.code).result()
                summary = StrategyResult(
                    passed_with_feedback=verdict.passed,
                    visible_passed_final=final.verdict.ok,
                    final_round=final.round,
                    final_fresh=final.fresh,
                    rounds=outcome.rounds,
                    requests=outcome.requests,
                    repeats=outcome.repeats,
                    errors=outcome.errors,
                    stopped=outcome.stopped,
                    tokens_in=sum(r.input_tokens for r in used),
                    tokens_out=sum(r.output_tokens for r in used),
                    seconds=round(time.perf_counter() - began, 3),
                    limit_hit=verdict.limit_hit,
                    failure=verdict.failure,
                    code=final.code if final.round else None,
                    drawn=[asdict(d) for d in outcome.drawn],
                )
                result.by_strategy[strategy.name] = asdict(summary)
                if position == 0:
                    result.strategy = strategy.name
                    result.attempts_used = outcome.rounds
                    result.generations += len(outcome.replies)
                    result.replies += outcome.replies
                    result.visible_passed_final = final.verdict.ok
                    result.fix_repeated = outcome.stopped == "repeats"
                    result.passed_with_feedback = verdict.passed
                    result.attempt_passed = final.round if verdict.passed else None
                    result.limit_with_feedback = verdict.limit_hit
                    result.failure_with_feedback = verdict.failure
                    result.code_with_feedback = final.code
                    main_records = used
        first_verdict = hidden(first).result()
        result.passed_without_feedback = first_verdict.passed
        result.limit_without_feedback = first_verdict.limit_hit
        result.failure_without_feedback = first_verdict.failure
        sandbox_s += sum(f.result().seconds for f in hidden_cache.values())
    finally:
        if own_pool:
            pool.shutdown(wait=True)
    records = first_records + main_records
    result.first_tokens_in = sum(r.input_tokens for r in first_records)
    result.first_tokens_out = sum(r.output_tokens for r in first_records)
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
    """Repair rounds of the main strategy, at most."""
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
    strategies: list[dict[str, Any]] = field(default_factory=list)
    """One row per repair strategy run on the same first answers (see `strategy_rows`)."""

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
        attempts=settings.strategies[0].rounds if settings.strategies else 0,
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
        strategies=strategy_rows(settings, chosen),
    )


def strategy_rows(settings: EvalSettings, chosen: Sequence[ItemResult]) -> list[dict[str, Any]]:
    """Per strategy, over the scored problems: pass@1 with it, what it fixed and broke, its cost (first answer
    included) per solved problem, and where its candidates went (repeats, failed requests, sandbox limits,
    candidates that passed the visible tests but not the hidden ones)."""
    rows: list[dict[str, Any]] = []
    first_in = sum(r.first_tokens_in for r in chosen)
    first_out = sum(r.first_tokens_out for r in chosen)
    first_s = sum(max(0.0, r.seconds - sum(float(v.get("seconds", 0)) for v in r.by_strategy.values())) for r in chosen)
    for strategy in settings.strategies:
        runs = [(r, r.by_strategy.get(strategy.name)) for r in chosen]
        done = [(r, v) for r, v in runs if v is not None]
        passed = sum(bool(v["passed_with_feedback"]) for _, v in done)
        drawn = [d for _, v in done for d in v.get("drawn", [])]
        tokens = first_in + first_out + sum(v["tokens_in"] + v["tokens_out"] for _, v in done)
        seconds = first_s + sum(float(v["seconds"]) for _, v in done)
        rows.append(
            {
                "strategy": strategy.name,
                "rounds": strategy.rounds,
                "k": strategy.k,
                "temperature": strategy.temperature,
                "problems": len(done),
                "passed": passed,
                "pass1": passed / len(done) if done else None,
                "fixed": sum(1 for r, v in done if v["passed_with_feedback"] and not r.passed_without_feedback),
                "broken": sum(1 for r, v in done if r.passed_without_feedback and not v["passed_with_feedback"]),
                "requests": sum(v["requests"] for _, v in done),
                "candidates_judged": sum(1 for d in drawn if d.get("passed") is not None),
                "repeats": sum(1 for d in drawn if d.get("repeat")),
                "errors": sum(1 for d in drawn if d.get("error")),
                "limits": sum(1 for d in drawn if d.get("limit_hit")),
                "visible_not_hidden": sum(
                    1 for _, v in done if v["visible_passed_final"] and not v["passed_with_feedback"]
                ),
                "tokens": tokens,
                "tokens_per_solved": round(tokens / passed) if passed else None,
                "seconds_per_solved": round(seconds / passed, 1) if passed else None,
                "passed_at_round": dict(
                    sorted(Counter(str(v["final_round"]) for _, v in done if v["passed_with_feedback"]).items())
                ),
            }
        )
    return rows


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
        if (token := current_cancel()) is not None and token.cancelled:
            raise Abandoned(f"{problem.task_id}: interrupted") from exc  # the run stops: not recorded, redone
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
    sandbox runs overlap). An interrupt (KeyboardInterrupt) or abort leaves every finished problem recorded;
    on Ctrl-C the problems in flight are abandoned at once (their model requests too, tools/cancel.py): they
    are not recorded, and the next run does them again.
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
            context = contextvars.copy_context()  # the run's Cancel reaches the item's model requests
            inflight.add(items.submit(context.run, _attempt, problem, settings, sandbox_pool, store))

    finished = False
    with cancel_on_interrupt() as interrupted:
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
            # On an interrupt (or an abort) return at once: the problems in flight are abandoned, their model
            # requests too, and nothing waits for them; they are not recorded, so the next run does them again.
            if not finished:
                interrupted.cancel()
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
        main = s.strategies[0]["strategy"] if s.strategies else "?"
        lines.append(
            f"| with executable feedback (strategy {main}) | {pct(s.pass1_with_feedback)} | "
            f"{s.passed_with_feedback} / {s.scored} |"
        )
    per_item = max(1, s.scored)
    lines += [
        "",
        f"- problems: {s.selected} selected, {s.scored} scored, {s.unscored} not scored (errors, or not run yet)",
    ]
    if s.feedback:
        lines.append(
            f"- feedback: {s.fix_requests} repair rounds; {s.fixed_by_feedback} problems fixed, "
            f"{s.broken_by_feedback} broken by a fix"
        )
    lines += [
        f"- tokens: {s.tokens_in} in / {s.tokens_out} out over {s.model_calls} calls "
        f"({s.tokens_in / per_item:.0f} / {s.tokens_out / per_item:.0f} per problem)",
        f"- time: {s.wall_seconds:.1f} s wall for this invocation; {s.item_seconds:.1f} s summed over the scored "
        f"problems ({s.item_seconds / per_item:.1f} s each), {s.model_seconds:.1f} s of it waiting on the model",
        "- sandbox limits hit: "
        + (", ".join(f"{k} ×{v}" for k, v in sorted(s.limits_hit.items())) if s.limits_hit else "none"),
        "- settings: " + ", ".join(f"{k}={v}" for k, v in s.settings.items() if k != "strategies"),
        "",
    ]
    if s.strategies:
        lines += [
            "Repair strategies, each from the same first answers (tokens and time include the first answer):",
            "",
            "| strategy | rounds × k | temp | pass@1 | fixed | broken | requests | judged | repeats | failed requests "
            "| sandbox limits | visible ok, hidden not | tokens / solved | s / solved | passed at round |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in s.strategies:
            rounds = ", ".join(f"{k}: {v}" for k, v in row["passed_at_round"].items())
            lines.append(
                f"| {row['strategy']} | {row['rounds']} × {row['k']} | {row['temperature']:g} | {pct(row['pass1'])} "
                f"| {row['fixed']} | {row['broken']} | {row['requests']} | {row['candidates_judged']} "
                f"| {row['repeats']} | {row['errors']} | {row['limits']} | {row['visible_not_hidden']} "
                f"| {row['tokens_per_solved'] or 'n/a'} | {row['seconds_per_solved'] or 'n/a'} | {rounds} |"
            )
        lines.append("")
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
        labels.append(f"with feedback\n({summary.strategies[0]['strategy'] if summary.strategies else ''})")
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
