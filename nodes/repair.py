"""Repair: how a failing program becomes a passing one. One module for the code evals and the company's debug node.

A small model rarely repairs its own code from a prompt alone; diversity plus selection by execution does
(CodeT, S*). So on a failure a strategy draws candidates, each one's *visible* tests run in the sandbox (the
caller's `judge`; this module never runs code), and the best by tests passed is kept:

- k candidates per round, requested at once (one request each, on k threads, so a server with parallel
  slots decodes them together), at a temperature above the first answer's, each with its own seed; Ctrl-C
  abandons a round's requests in flight (their connections shut, so the server stops generating; see
  tools/cancel.py) and the round is redone when the run resumes;
- a candidate replaces the incumbent only if it ranks higher: first by the problems the program's own
  checks find (`Verdict.problems`: fewer is better; the company counts a command the idea spells and the
  program does not handle, a crash on start, an added item the next run does not list, a data file never
  kept), then by visible tests passed; ties stay with the earlier code, and within a round go to the
  shorter program, then the lower index: never a regression, and the choice does not depend on which
  request came back first. A caller without such checks leaves `problems` at 0, and tests passed decide;
- a candidate identical to one already seen (whitespace-normalised) is not judged again and does not end
  the loop; only a deterministic strategy (temperature 0, one candidate) stops on a round of repeats,
  since the next request would be the very same conversation;
- the model sees concrete facts (the failing test, its input, expected vs actual, or the exception and
  the line it came from), clipped by `FACTS_CHARS`; the judge writes them, this module clips them.

Strategies are named (`STRATEGIES`) so one run can compare them on the same first answers.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from langchain_core.messages import BaseMessage

from sopgraph.nodes.llm import ModelGateway
from sopgraph.tools.cancel import run_all

__all__ = [
    "DEFAULT_STRATEGY",
    "FACTS_CHARS",
    "REJECTED",
    "STRATEGIES",
    "Candidate",
    "Conversation",
    "Drawn",
    "GatewaySampler",
    "Proposal",
    "RepairOutcome",
    "Sampler",
    "Strategy",
    "Verdict",
    "candidate_seed",
    "clip_facts",
    "describe_strategies",
    "get_strategy",
    "normalise",
    "repair",
    "sample_all",
]

FACTS_CHARS = 1500
"""Characters of execution facts shown to the model in one repair request."""


@dataclass(frozen=True)
class Verdict:
    """What running one program's visible tests showed."""

    passed: int
    total: int
    facts: str = ""
    """The concrete failures, for the model (empty when everything passed)."""
    limit_hit: str | None = None
    """A sandbox limit the run hit (wall, cpu, memory...), for the record."""
    problems: int = 0
    """What the program's own checks found wrong before its tests (fewer is better, and counts before tests
    passed); `REJECTED` for a reply that must never replace a program."""

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total and self.problems == 0

    @property
    def rank(self) -> tuple[int, int]:
        """Lower is better: problems first, then tests passed."""
        return (self.problems, -self.passed)

    def better_than(self, other: Verdict) -> bool:
        return self.rank < other.rank


REJECTED = 1 << 30
"""`Verdict.problems` of a reply that is no program (test code, nothing): it ranks below every program."""


@dataclass(frozen=True)
class Candidate:
    """One program and its verdict. Round 0 is the first answer; repair rounds count from 1."""

    code: str
    reply: str
    verdict: Verdict
    round: int = 0
    index: int = 0
    seed: int | None = None
    fresh: bool = False
    """Drawn from the original prompt (resampling) rather than from a repair request."""


@dataclass(frozen=True)
class Strategy:
    """How candidates are drawn after a failure."""

    name: str
    rounds: int
    """Repair rounds at most after the first answer."""
    k: int
    """Candidates per round, requested at once."""
    temperature: float
    """Sampling temperature of the candidates (the first answer keeps its own, usually 0)."""
    repair_share: float = 1.0
    """Share of each round's candidates asked to repair the incumbent from its facts; the rest resample the
    original prompt (fresh attempts, no feedback)."""
    description: str = ""

    @property
    def deterministic(self) -> bool:
        return self.temperature == 0 and self.k == 1

    def repairs_in_round(self) -> int:
        """How many of a round's k candidates are repair requests (the others resample)."""
        return max(0, min(self.k, round(self.k * self.repair_share)))

    def with_(self, **changes: object) -> Strategy:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("none", 0, 0, 0.0, description="no repair: the first answer stands"),
        Strategy("greedy-repair", 3, 1, 0.0, 1.0, "one greedy fix request per round (the old loop)"),
        Strategy("resample", 2, 4, 0.8, 0.0, "k fresh samples of the original prompt per round, no feedback"),
        Strategy("repair-sample", 2, 4, 0.8, 1.0, "k sampled fix requests per round, each shown the facts"),
        Strategy("mixed", 2, 4, 0.8, 0.5, "half sampled fix requests, half fresh samples, per round"),
    )
}
DEFAULT_STRATEGY = "resample"
"""The evals' default: the best measured at the lowest tokens per solved problem (docs/RESULTS.md, #11): the
0.5B model's fix requests mostly came back as the code they were to fix, and every winning candidate was a
fresh sample. The company's debug node uses `mixed` (nodes/company/fixing.py): its fix requests carry the QA
tests, which a fresh rewrite from the task never sees."""


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown repair strategy {name!r}; use one of {', '.join(STRATEGIES)}") from None


def normalise(code: str) -> str:
    """Code with whitespace normalised: a candidate that only re-indents or re-spaces is a repeat."""
    lines = (" ".join(line.split()) for line in code.splitlines())
    return "\n".join(line for line in lines if line)


def clip_facts(text: str, limit: int = FACTS_CHARS) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    marker = f"\n...[{len(text) - limit} more characters]"
    return text[: max(0, limit - len(marker))] + marker


# ------------------------------------------------------------------------------------------ sampling


@dataclass(frozen=True)
class Proposal:
    """One candidate request: the messages, and how to sample the reply."""

    messages: list[BaseMessage]
    temperature: float
    seed: int


class Sampler(Protocol):
    """Answers one proposal with the model's reply text; called from several threads at once."""

    def __call__(self, proposal: Proposal) -> str: ...


class Conversation(Protocol):
    """Builds the requests: the original one (for resampling) and a repair of the incumbent from its facts."""

    def fresh(self) -> list[BaseMessage]: ...

    def repair(self, incumbent: Candidate, facts: str) -> list[BaseMessage]: ...


class GatewaySampler:
    """Samples through a node's ModelGateway: each request gets a sibling gateway with its own temperature
    and seed, whose usage records join the parent's (so the node's ledger and budget see every call)."""

    def __init__(self, gateway: ModelGateway, system: str | None = None) -> None:
        self.gateway = gateway
        self.system = system
        self._lock = threading.Lock()

    def __call__(self, proposal: Proposal) -> str:
        ctx = dataclasses.replace(self.gateway.ctx, temperature=proposal.temperature, seed=proposal.seed)
        sibling = ModelGateway(ctx, self.gateway.role, self.gateway.spent())
        try:
            return sibling.text(proposal.messages, system=self.system)
        finally:
            with self._lock:
                self.gateway.records.extend(sibling.records)


def sample_all(sampler: Sampler, proposals: Sequence[Proposal]) -> list[str | Exception]:
    """Every proposal at once, one daemon thread each (each with a copy of the caller's context variables,
    so LangGraph's run config reaches the calls); replies in proposal order, failed requests as exceptions.

    Ctrl-C (a KeyboardInterrupt in the waiting thread, or the context's Cancel firing: tools/cancel.py)
    abandons the requests still in flight, shutting their connections, and raises: a round is never half
    kept, and nothing waits for those replies, not even the interpreter's exit.
    """
    return run_all([partial(sampler, p) for p in proposals], name="repair-sample")


# ------------------------------------------------------------------------------------------ the loop


@dataclass(frozen=True)
class Drawn:
    """A candidate as drawn, for the record: judged, a repeat, or a failed request."""

    round: int
    index: int
    seed: int
    fresh: bool
    passed: int | None = None
    total: int | None = None
    repeat: bool = False
    error: str | None = None
    limit_hit: str | None = None


@dataclass
class RepairOutcome:
    best: Candidate
    rounds: int = 0
    """Rounds run (each sends up to k requests)."""
    requests: int = 0
    repeats: int = 0
    errors: int = 0
    stopped: str = ""
    """Why the loop ended: "passed", "rounds", "repeats" (deterministic strategy), "budget", "no-strategy"."""
    drawn: list[Drawn] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    @property
    def improved(self) -> bool:
        return self.best.round > 0


def candidate_seed(base: int, round_: int, index: int) -> int:
    """Distinct per candidate and repeatable: the same problem, round and slot always get the same seed."""
    return base * 1009 + round_ * 101 + index + 1


def _tie_key(candidate: Candidate) -> tuple[int, int, int, int]:
    return (*candidate.verdict.rank, len(candidate.code), candidate.index)


def repair(
    first: Candidate,
    strategy: Strategy,
    *,
    conversation: Conversation,
    sampler: Sampler,
    extract: Callable[[str], str],
    judge: Callable[[str], Verdict],
    seed: int = 0,
    judge_all: Callable[[Sequence[str]], list[Verdict]] | None = None,
    stop: Callable[[], str | None] | None = None,
) -> RepairOutcome:
    """From a failing first answer, the best candidate the strategy finds.

    `extract` turns a reply into a program (only parses, never runs); `judge` runs a program's visible tests
    in the sandbox; `judge_all` (optional) judges several programs at once; `stop` returns a reason to stop
    before a round (e.g. a spent budget) or None.
    """
    outcome = RepairOutcome(best=first)
    if first.verdict.ok:
        outcome.stopped = "passed"
        return outcome
    if strategy.rounds <= 0 or strategy.k <= 0:
        outcome.stopped = "no-strategy"
        return outcome
    seen = {normalise(first.code)}
    judge_many = judge_all or (lambda programs: [judge(p) for p in programs])
    for round_ in range(1, strategy.rounds + 1):
        if stop is not None and (reason := stop()) is not None:
            outcome.stopped = reason
            return outcome
        incumbent = outcome.best
        facts = clip_facts(incumbent.verdict.facts)
        repairs = strategy.repairs_in_round()
        proposals: list[tuple[Proposal, bool]] = []
        for index in range(strategy.k):
            fresh = index >= repairs
            messages = conversation.fresh() if fresh else conversation.repair(incumbent, facts)
            proposals.append((Proposal(messages, strategy.temperature, candidate_seed(seed, round_, index)), fresh))
        replies = sample_all(sampler, [p for p, _ in proposals])
        outcome.rounds = round_
        outcome.requests += len(proposals)
        new: list[tuple[int, str, str]] = []
        drawn: list[Drawn] = []
        for index, ((proposal, fresh), reply) in enumerate(zip(proposals, replies, strict=True)):
            if isinstance(reply, Exception):
                outcome.errors += 1
                error = f"{type(reply).__name__}: {' '.join(str(reply).split())[:200]}"
                drawn.append(Drawn(round_, index, proposal.seed, fresh, error=error))
                continue
            outcome.replies.append(reply)
            code = extract(reply)
            key = normalise(code)
            if key in seen:
                outcome.repeats += 1
                drawn.append(Drawn(round_, index, proposal.seed, fresh, repeat=True))
                continue
            seen.add(key)
            new.append((index, reply, code))
        if round_ == 1 and drawn and all(d.error for d in drawn) and len(drawn) == len(proposals):
            # Every request of the first round failed: the model is unreachable; say so rather than guess.
            raise next(r for r in replies if isinstance(r, Exception))
        verdicts = judge_many([code for _, _, code in new])
        candidates = []
        for (index, reply, code), verdict in zip(new, verdicts, strict=True):
            proposal, fresh = proposals[index]
            candidates.append(Candidate(code, reply, verdict, round_, index, proposal.seed, fresh))
            drawn.append(
                Drawn(round_, index, proposal.seed, fresh, verdict.passed, verdict.total, limit_hit=verdict.limit_hit)
            )
        outcome.drawn += sorted(drawn, key=lambda d: d.index)
        if candidates:
            challenger = min(candidates, key=_tie_key)
            if challenger.verdict.better_than(outcome.best.verdict):
                outcome.best = challenger
        if outcome.best.verdict.ok:
            outcome.stopped = "passed"
            return outcome
        if not candidates and strategy.deterministic:
            outcome.stopped = "repeats"  # the next request would be this very conversation again
            return outcome
    outcome.stopped = "rounds"
    return outcome


def describe_strategies(names: Sequence[str] | None = None) -> str:
    """A markdown table of the strategies (name, rounds, k, temperature, what it does)."""
    rows = ["| strategy | rounds | k | temperature | repair share | what |", "|---|---:|---:|---:|---:|---|"]
    for name in names or list(STRATEGIES):
        s = get_strategy(name)
        rows.append(f"| {s.name} | {s.rounds} | {s.k} | {s.temperature:g} | {s.repair_share:g} | {s.description} |")
    return "\n".join(rows)
