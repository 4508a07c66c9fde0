"""Tokens per solved problem for each repair strategy, from eval results (`sopgraph eval humaneval|mbpp
--strategy A --compare B,C`), which run every strategy from the same first answers.

Run `python benchmarks/repair_strategies.py [results.jsonl ...]`; without arguments it reads every
docs/results/*/results.jsonl that compares strategies. A strategy's tokens include the first answer and
all of its own repair requests (requests it shared with another strategy are charged to both).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def rows(path: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    scored = {r["task_id"]: r for r in records if r.get("scored") and r.get("by_strategy")}
    table: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for record in scored.values():
        first = record.get("first_tokens_in", 0) + record.get("first_tokens_out", 0)
        for name, run in record["by_strategy"].items():
            row = table[name]
            row["problems"] += 1
            row["passed"] += bool(run["passed_with_feedback"])
            row["fixed"] += bool(run["passed_with_feedback"]) and not record["passed_without_feedback"]
            row["broken"] += record["passed_without_feedback"] and not run["passed_with_feedback"]
            row["requests"] += run["requests"]
            row["tokens"] += first + run["tokens_in"] + run["tokens_out"]
            row["baseline"] += bool(record["passed_without_feedback"])
    return [{"strategy": name, **row} for name, row in table.items()]


def main(paths: list[str]) -> None:
    files = [Path(p) for p in paths] or sorted((ROOT / "docs" / "results").glob("*/results.jsonl"))
    shown = 0
    for path in files:
        table = rows(path)
        if not table:
            continue
        shown += 1
        print(
            f"{path.parent.name}: {int(table[0]['problems'])} problems, "
            f"{int(table[0]['baseline'])} solved without feedback"
        )
        print(f"  {'strategy':<15} {'pass@1':>7} {'fixed':>6} {'broken':>7} {'requests':>9} {'tokens/solved':>14}")
        for row in table:
            n, passed = row["problems"], row["passed"]
            per = f"{row['tokens'] / passed:,.0f}" if passed else "n/a"
            print(
                f"  {row['strategy']:<15} {100 * passed / n:6.1f}% {int(row['fixed']):>6} {int(row['broken']):>7} "
                f"{int(row['requests']):>9} {per:>14}"
            )
    if not shown:
        print("no results with repair strategies found (run sopgraph eval ... --compare ...)")


if __name__ == "__main__":
    main(sys.argv[1:])
