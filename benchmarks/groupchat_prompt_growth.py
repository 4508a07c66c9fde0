"""Prompt tokens per model call by round in group-chat runs of 1..N rounds (scripted model, offline).

Every reply is as long as the scenario allows (speech, plan, summary and reflection at their word limits),
so the counts are the worst case a real model could produce. A bounded prompt stays flat: the last
round's mean and peak match round 2's (round 1 has no memory yet; settlement calls are shown apart).

    python benchmarks/groupchat_prompt_growth.py [--scenario philosophers] [--rounds 6]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sopgraph.graphs.groupchat import build_groupchat_graph, groupchat_input
from sopgraph.nodes.llm import register_model, unregister_model
from sopgraph.nodes.scripted import ScriptedChatModel, ScriptedRequest
from sopgraph.scenarios import load_scenario
from sopgraph.state.context import Context
from sopgraph.state.groupchat import Scenario

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from groupchat_script import Playbook, scores, tag  # noqa: E402  (the tests' scripted group chat)


def words(n: int, seed: str) -> str:
    return " ".join(f"{seed}{i}" for i in range(n))


def verbose(speech_words: int, reflection_words: int) -> Playbook:
    """Replies at their maximum lengths, with legal ids and in-bounds changes."""

    def reflect(request: ScriptedRequest, cid: str) -> dict[str, Any]:
        beliefs, feelings = scores(request)
        return {
            "reflection": words(reflection_words, "r"),
            "relationships": [
                {"character": o, "score": min(100, v + 3), "impression": words(10, "i")} for o, v in feelings.items()
            ],
            "beliefs": [{"belief": b, "score": max(0, v - 2)} for b, v in beliefs.items()],
        }

    return (
        Playbook()
        .on("Perception", lambda r, c: {"situation": words(30, "s"), "plan": words(30, "p")})
        .on("Thought", lambda r, c: {"thought": words(30, "t")})
        .on("Speech", lambda r, c: {"speech": f"{tag(r)} " + words(speech_words - 1, "w")})
        .on("Summary", lambda r, c: {"summary": words(50, "m")})
        .on("Reflect", reflect)
    )


def play(scenario: Scenario, rounds: int, script: Callable[[ScriptedRequest], Any]) -> None:
    """One story on a scripted model that answers with `script`."""
    name = "scripted:prompt-growth"
    register_model(name, ScriptedChatModel(script=script))
    try:
        graph = build_groupchat_graph().compile()
        graph.invoke(groupchat_input(scenario, rounds=rounds), context=Context(model=name))
    finally:
        unregister_model(name)


def run(scenario_name: str, rounds: int) -> dict[str, list[int]]:
    scenario = load_scenario(scenario_name)
    book = verbose(scenario.settings.speech_words, scenario.settings.reflection_words)
    play(scenario, rounds, book)
    by_round: dict[str, list[int]] = defaultdict(list)
    for call in book.calls:
        key = "settle" if call.settling else str(call.round)
        by_round[key].append(call.tokens)
    return by_round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="philosophers")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    print(f"scenario {args.scenario}: prompt tokens per call (mean / max) by round; ~4 characters a token")
    header = "run " + "".join(f"{'round ' + str(r):>14}" for r in range(1, args.rounds + 1)) + f"{'settle':>14}"
    print(header)
    last: dict[str, list[int]] = {}
    for total in range(1, args.rounds + 1):
        by_round = run(args.scenario, total)
        cells = []
        for r in [*map(str, range(1, args.rounds + 1)), "settle"]:
            t = by_round.get(r)
            cells.append(f"{sum(t) / len(t):>8.0f} / {max(t):<4}" if t else " " * 14)
        print(f"{total:>3} " + "".join(cells))
        last = by_round
    if args.rounds >= 3:
        second, final = last["2"], last[str(args.rounds)]
        print(
            f"round {args.rounds} / round 2: mean x{(sum(final) / len(final)) / (sum(second) / len(second)):.2f}, "
            f"max x{max(final) / max(second):.2f}  (flat: about x1.00)"
        )


if __name__ == "__main__":
    main()
