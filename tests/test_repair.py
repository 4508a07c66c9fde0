"""The repair strategy module (nodes/repair.py) on scripted candidates of known quality.

Candidates here are tiny programs whose quality is written into them (`q=N`: N visible tests pass), and the
judge reads it back without running anything, so each test states exactly which candidate must win.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from sopgraph.nodes.llm import ModelGateway
from sopgraph.nodes.repair import (
    STRATEGIES,
    Candidate,
    GatewaySampler,
    Proposal,
    Strategy,
    Verdict,
    candidate_seed,
    clip_facts,
    get_strategy,
    normalise,
    repair,
)
from sopgraph.nodes.scripted import ScriptedChatModel, ScriptedRequest
from sopgraph.state.context import Context

TOTAL = 4


def program(quality: int, tag: str = "") -> str:
    return f"def f(x):\n    return {quality}  # q={quality} {tag}\n"


def quality_of(code: str) -> int:
    return int(code.split("q=", 1)[1].split()[0])


def flawed(quality: int, problems: int, tag: str = "") -> str:
    """A program passing `quality` tests whose own checks (start, commands...) find `problems`."""
    return program(quality, f"p={problems} {tag}")


def problems_of(code: str) -> int:
    return int(code.split("p=", 1)[1].split()[0]) if "p=" in code else 0


class Judge:
    """Scores a program by the quality written in it; counts what it was asked to judge."""

    def __init__(self) -> None:
        self.judged: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, code: str) -> Verdict:
        with self.lock:
            self.judged.append(code)
        q = quality_of(code)
        facts = "" if q == TOTAL else f"assert f(2) == 5 failed: returned {q}, expected 5 (test {q + 1} of {TOTAL})"
        return Verdict(q, TOTAL, facts, problems=problems_of(code))


class Conv:
    def fresh(self) -> list[BaseMessage]:
        return [HumanMessage("TASK: write f")]

    def repair(self, incumbent: Candidate, facts: str) -> list[BaseMessage]:
        return [HumanMessage("TASK: write f"), AIMessage(incumbent.reply), HumanMessage(f"FIX\n{facts}")]


def fenced(code: str) -> str:
    return f"```python\n{code}```"


def extract(reply: str) -> str:
    return reply.split("```python\n", 1)[1].rsplit("```", 1)[0]


def by_slot(table: dict[tuple[int, int], str], seed: int = 0) -> Callable[[Proposal], str]:
    """A sampler answering each (round, index) slot with the given program; seeds identify the slot."""
    slots = {candidate_seed(seed, r, i): code for (r, i), code in table.items()}

    def sample(proposal: Proposal) -> str:
        return fenced(slots[proposal.seed])

    return sample


def first(quality: int = 0) -> Candidate:
    code = program(quality, "first")
    return Candidate(code, fenced(code), Judge()(code))


SAMPLE = Strategy("test-sample", rounds=3, k=4, temperature=0.8, repair_share=1.0)


def run(table: dict[tuple[int, int], str], start: Candidate | None = None, strategy: Strategy = SAMPLE, **kw):  # type: ignore[no-untyped-def]
    judge = Judge()
    outcome = repair(
        start or first(),
        strategy,
        conversation=Conv(),
        sampler=by_slot(table),
        extract=extract,
        judge=judge,
        **kw,
    )
    return outcome, judge


def test_the_best_candidate_by_tests_passed_is_kept() -> None:
    table = {(1, 0): program(1), (1, 1): program(3), (1, 2): program(2), (1, 3): program(0, "x")}
    table |= {(r, i): program(1, f"r{r}i{i}") for r in (2, 3) for i in range(4)}
    outcome, judge = run(table)
    assert quality_of(outcome.best.code) == 3 and (outcome.best.round, outcome.best.index) == (1, 1)
    assert outcome.rounds == 3 and outcome.stopped == "rounds" and outcome.improved
    assert len(judge.judged) == 12  # every new candidate was judged once


def test_a_passing_candidate_ends_the_loop_at_its_round() -> None:
    table = {(1, i): program(1, str(i)) for i in range(4)} | {(2, 0): program(2), (2, 1): program(TOTAL)}
    table |= {(2, 2): program(0, "a"), (2, 3): program(3)}
    outcome, _ = run(table)
    assert outcome.best.verdict.ok and outcome.best.round == 2 and outcome.stopped == "passed"
    assert outcome.requests == 8  # no third round


def test_a_worse_candidate_never_replaces_a_better_incumbent() -> None:
    table = {(r, i): program(i % 2, f"r{r}i{i}") for r in (1, 2, 3) for i in range(4)}  # quality 0 or 1
    start = first(quality=2)
    outcome, judge = run(table, start=start)
    assert outcome.best is start and not outcome.improved
    assert quality_of(outcome.best.code) == 2 and len(judge.judged) == 12
    # Each repair request was built from the incumbent (the better first answer), never from a worse candidate.


def test_an_equal_candidate_does_not_replace_the_earlier_one() -> None:
    table = {(r, i): program(1, f"r{r}i{i}") for r in (1, 2, 3) for i in range(4)}
    start = first(quality=1)
    outcome, _ = run(table, start=start)
    assert outcome.best is start


def test_fewer_check_problems_rank_before_tests_passed() -> None:
    # make demo on the 0.5B: tests expecting what the idea does not ask fail on every right fix, so a
    # candidate that handles the idea's commands passes no more of them than the current code.
    start = Candidate(flawed(0, 2, "first"), fenced(flawed(0, 2, "first")), Judge()(flawed(0, 2, "first")))
    table = {(1, 0): flawed(0, 1, "fixes one"), (1, 1): flawed(1, 3, "more tests, more problems")}
    table |= {(1, 2): flawed(0, 2, "as flawed"), (1, 3): flawed(0, 1, "fixes one too, and is longer")}
    table |= {(2, 0): flawed(0, 0, "fixes both"), (2, 1): flawed(3, 1, "more tests, one problem")}
    table |= {(2, 2): flawed(0, 2, "r2"), (2, 3): flawed(0, 0, "fixes both but is longer")}
    outcome, _ = run(table, start=start, strategy=SAMPLE.with_(rounds=1))
    assert (outcome.best.round, outcome.best.index) == (1, 0)  # fewer problems, as many tests; then shorter
    outcome, _ = run(table, start=start, strategy=SAMPLE.with_(rounds=2))
    assert (outcome.best.round, outcome.best.index) == (2, 0) and outcome.best.verdict.problems == 0
    assert not outcome.best.verdict.ok  # no problems, but tests still fail


def test_a_candidate_with_more_problems_never_replaces_the_incumbent_whatever_it_passes() -> None:
    start = Candidate(flawed(1, 0, "first"), fenced(flawed(1, 0, "first")), Judge()(flawed(1, 0, "first")))
    table = {(r, i): flawed(3, 1, f"r{r}i{i}") for r in (1, 2, 3) for i in range(4)}
    outcome, _ = run(table, start=start)
    assert outcome.best is start
    assert not Verdict(TOTAL, TOTAL, problems=1).ok and Verdict(TOTAL, TOTAL).ok


def test_repair_requests_show_the_incumbents_facts_clipped() -> None:
    seen: list[list[BaseMessage]] = []
    lock = threading.Lock()
    table = {(r, i): program(r, f"i{i}") for r in (1, 2) for i in range(4)}
    sample = by_slot(table)

    def recording(proposal: Proposal) -> str:
        with lock:
            seen.append(proposal.messages)
        return sample(proposal)

    long_facts = "assert f(2) == 5: returned 0, expected 5\n" + "x" * 5000
    start = Candidate(program(0, "first"), fenced(program(0, "first")), Verdict(0, TOTAL, long_facts))
    repair(
        start,
        SAMPLE.with_(rounds=2),
        conversation=Conv(),
        sampler=recording,
        extract=extract,
        judge=Judge(),
    )
    fixes = [str(m[-1].content) for m in seen]
    assert len(fixes) == 8 and all(f.startswith("FIX\nassert f(2) == 5: returned 0, expected 5") for f in fixes[:4])
    assert all(len(f) < 1600 and "more characters" in f for f in fixes[:4])  # clipped
    # Round 2 repairs the round-1 winner (quality 1) and shows its facts, not the first answer's.
    round_two = [m for m in seen if "q=1" in str(m[1].content)]
    assert len(round_two) == 4 and all("returned 1, expected 5" in str(m[-1].content) for m in round_two)


def test_identical_candidates_are_not_rerun_and_do_not_end_the_loop() -> None:
    same = program(0, "first")
    spaced = same.replace("return 0", "return   0") + "\n\n"  # the same program, whitespace apart
    table = {(1, i): same if i % 2 else spaced for i in range(4)}  # round 1: nothing new at all
    table |= {(2, 0): program(1), (2, 1): program(1), (2, 2): program(TOTAL), (2, 3): program(1)}
    outcome, judge = run(table)
    assert outcome.repeats == 4 + 2  # round 1 all repeats of the first answer; round 2 repeats one candidate
    assert outcome.best.verdict.ok and outcome.best.round == 2 and outcome.stopped == "passed"
    assert sorted(quality_of(c) for c in judge.judged) == [1, TOTAL]  # each distinct program judged once
    assert [d.repeat for d in outcome.drawn[:4]] == [True] * 4


def test_a_deterministic_strategy_stops_when_its_repair_repeats() -> None:
    greedy = get_strategy("greedy-repair")
    table = {(r, 0): program(0, "first") for r in (1, 2, 3)}
    outcome, judge = run(table, strategy=greedy)
    assert outcome.stopped == "repeats" and outcome.requests == 1 and judge.judged == []


def test_resampling_asks_the_original_prompt_and_mixed_splits_the_round() -> None:
    requests: list[Proposal] = []
    lock = threading.Lock()

    def sample(proposal: Proposal) -> str:
        with lock:
            requests.append(proposal)
        return fenced(program(0, str(proposal.seed)))

    for name, fixes in (("resample", 0), ("repair-sample", 4), ("mixed", 2)):
        requests.clear()
        strategy = get_strategy(name).with_(rounds=1)
        repair(first(), strategy, conversation=Conv(), sampler=sample, extract=extract, judge=Judge())
        assert len(requests) == 4
        assert sum(len(p.messages) == 3 for p in requests) == fixes, name
        assert {p.temperature for p in requests} == {strategy.temperature} and strategy.temperature > 0
        assert len({p.seed for p in requests}) == 4  # distinct seeds


def test_ties_are_deterministic_whatever_order_the_replies_arrive_in() -> None:
    table = {(1, 0): program(2, "a much longer candidate"), (1, 1): program(2, "short"), (1, 2): program(2, "shrt")}
    table |= {(1, 3): program(1)}
    sample = by_slot(table)
    winners = set()
    for trial in range(4):
        rng = random.Random(trial)

        def jittery(proposal: Proposal, rng: random.Random = rng) -> str:
            time.sleep(rng.random() * 0.05)
            return sample(proposal)

        outcome = repair(
            first(), SAMPLE.with_(rounds=1), conversation=Conv(), sampler=jittery, extract=extract, judge=Judge()
        )
        winners.add((outcome.best.round, outcome.best.index))
    assert winners == {(1, 2)}  # the shortest of the best; then the lower index


def test_seeds_are_distinct_and_repeatable() -> None:
    seeds = {candidate_seed(7, r, i) for r in range(1, 4) for i in range(8)}
    assert len(seeds) == 24 and candidate_seed(7, 2, 3) == candidate_seed(7, 2, 3) != candidate_seed(8, 2, 3)


def test_k_requests_overlap_on_the_model(scripted: tuple[str, ScriptedChatModel]) -> None:
    name, model = scripted
    model.latency_s = 0.4
    model.script = lambda r: fenced(program(0, f"call{r.call_index}"))
    gateway = ModelGateway(Context(model=name), "coder")
    sampler = GatewaySampler(gateway)
    start = time.perf_counter()
    sampler(Proposal([HumanMessage("TASK: write f")], 0.0, 0))
    one = time.perf_counter() - start
    start = time.perf_counter()
    outcome = repair(
        first(), SAMPLE.with_(rounds=1), conversation=Conv(), sampler=sampler, extract=extract, judge=Judge()
    )
    four = time.perf_counter() - start
    assert outcome.requests == 4 and model.calls == 5
    assert four < 1.5 * one, (four, one)
    assert len(gateway.records) == 5  # every sibling's usage joined the node's gateway


def test_a_failed_request_is_recorded_and_the_others_are_used() -> None:
    table = {(1, 0): program(1), (1, 2): program(TOTAL), (1, 3): program(2)}
    sample = by_slot(table)

    def flaky(proposal: Proposal) -> str:
        if proposal.seed == candidate_seed(0, 1, 1):
            raise RuntimeError("connection reset")
        return sample(proposal)

    outcome = repair(first(), SAMPLE, conversation=Conv(), sampler=flaky, extract=extract, judge=Judge())
    assert outcome.best.verdict.ok and outcome.errors == 1 and "connection reset" in str(outcome.drawn[1].error)


def test_every_request_failing_raises() -> None:
    def down(proposal: Proposal) -> str:
        raise RuntimeError("server down")

    with pytest.raises(RuntimeError, match="server down"):
        repair(first(), SAMPLE, conversation=Conv(), sampler=down, extract=extract, judge=Judge())


def test_a_stop_reason_ends_the_loop_before_a_round() -> None:
    rounds = iter([None, "budget spent"])
    table = {(1, i): program(1, str(i)) for i in range(4)}
    outcome, _ = run(table, stop=lambda: next(rounds))
    assert outcome.rounds == 1 and outcome.stopped == "budget spent" and quality_of(outcome.best.code) == 1


def test_a_passing_first_answer_needs_no_repair_and_none_never_repairs() -> None:
    outcome, judge = run({}, start=first(TOTAL))
    assert outcome.stopped == "passed" and outcome.requests == 0 and judge.judged == []
    outcome, _ = run({}, strategy=STRATEGIES["none"])
    assert outcome.stopped == "no-strategy" and outcome.requests == 0


def test_normalise_and_clip() -> None:
    assert normalise("def f():\n\n    return  1 \n") == normalise("def f():\n  return 1")
    assert normalise("return 1") != normalise("return 2")
    assert clip_facts("abc") == "abc" and len(clip_facts("x" * 5000, 100)) == 100
    with pytest.raises(ValueError, match="unknown repair strategy 'best'"):
        get_strategy("best")


def test_the_scripted_request_sees_the_facts_through_the_gateway(scripted: tuple[str, ScriptedChatModel]) -> None:
    name, model = scripted
    requests: list[ScriptedRequest] = []

    def script(request: ScriptedRequest) -> str:
        requests.append(request)
        return fenced(program(TOTAL if request.last.startswith("FIX") else 0, str(request.call_index)))

    model.script = script
    sampler = GatewaySampler(ModelGateway(Context(model=name), "coder"), system="Write Python.")
    outcome = repair(
        first(), get_strategy("mixed"), conversation=Conv(), sampler=sampler, extract=extract, judge=Judge()
    )
    assert outcome.best.verdict.ok and not outcome.best.fresh and outcome.rounds == 1
    assert all(r.system == "Write Python." for r in requests)
    assert sum("returned 0, expected 5" in r.last for r in requests) == 2


# -- the company's debug node: candidates judged by the project's tests in the sandbox ------------------------

PROJECT_TESTS = """from calc import add, sub


def test_add():
    assert add(2, 3) == 5


def test_sub():
    assert sub(5, 3) == 2


def test_both():
    assert add(1, sub(3, 1)) == 3
"""
HALF = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a + b\n"  # test_add passes: 1 of 3
BROKEN = "def add(a, b)\n    return a + b\n"  # does not even import: 0 of 3
WORSE_BUT_NEW = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a + b\n"  # 0 of 3
GOOD = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


def company_repair(name: str):  # type: ignore[no-untyped-def]
    from sopgraph.nodes.company.fixing import judge_project, repair_code_file
    from sopgraph.tools.sandbox import SandboxLimits

    files = {"calc.py": HALF, "tests/test_calc.py": PROJECT_TESTS}
    limits = SandboxLimits(wall_s=20, cpu_s=10)
    incumbent = judge_project(files, "calc.py", limits)(HALF)
    assert (incumbent.passed, incumbent.total) == (1, 3) and "test_sub" in incumbent.facts
    llm = ModelGateway(Context(model=name), "engineer")
    found = repair_code_file(
        llm,
        "You are an engineer.",
        "calc.py",
        HALF,
        incumbent,
        files=files,
        write_prompt="Write `calc.py`",
        fix_prompt=lambda code, facts: f"Fix calc.py\n{facts}\n{code}",
        limits=limits,
    )
    return found, llm


def test_the_company_keeps_its_code_when_every_candidate_is_worse(scripted: tuple[str, ScriptedChatModel]) -> None:
    name, model = scripted
    worse = iter([BROKEN, WORSE_BUT_NEW, BROKEN + "\n", HALF])
    lock = threading.Lock()

    def script(request: ScriptedRequest) -> str:
        with lock:
            return fenced(next(worse))

    model.script = script
    found, llm = company_repair(name)
    assert not found.changed and found.code == HALF and found.verdict.passed == 1
    drawn = found.outcome.drawn
    assert sorted((-1 if d.passed is None else d.passed, d.repeat) for d in drawn) == [
        (-1, True),
        (-1, True),
        (0, False),
        (0, False),
    ]
    assert len(llm.records) == 4  # every candidate request is in the node's usage


def test_the_company_takes_the_candidate_that_passes_most_tests(scripted: tuple[str, ScriptedChatModel]) -> None:
    name, model = scripted

    def script(request: ScriptedRequest) -> str:
        if request.last.startswith("Fix calc.py"):
            assert "test_sub" in request.last and "assert 8 == 2" in request.last  # the facts of the failing run
            return fenced(GOOD)
        return fenced(WORSE_BUT_NEW)

    model.script = script
    found, _ = company_repair(name)
    assert (
        found.changed and found.code.strip() == GOOD.strip() and (found.verdict.passed, found.verdict.total) == (3, 3)
    )
