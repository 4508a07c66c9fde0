"""Model calls and prompt tokens per call, by round, of a group-chat run that is already in a checkpointer.

The usage ledger records calls, not rounds; the checkpoint history tells which round and stage the graph
was in when each call was recorded (a node runs in the state of the checkpoint before the one that holds
its records). Settlement calls (final update and votes) are counted apart, as in
groupchat_prompt_growth.py, since their prompts carry the whole story's knowledge by design.

    python benchmarks/groupchat_usage_by_round.py RUN [--db .sopgraph/state.sqlite]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from statistics import mean

from sopgraph.graphs import runner
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.state.groupchat import Stage
from sopgraph.state.usage import UsageRecord

SETTLE = "settle"


def usage_by_round(db: str | None, run: str) -> dict[str, list[UsageRecord]]:
    """Usage records of one run, keyed by round ("1", "2", ...) or "settle"."""
    with open_checkpointer(db) as saver:
        snapshots = list(reversed(runner.history(saver, run)))
    if not snapshots:
        raise SystemExit(f"run {run!r} has no checkpoints in {db or 'the default database'}")
    seen: set[str] = set()
    buckets: dict[str, list[UsageRecord]] = defaultdict(list)
    previous: dict[str, object] = {}
    for snap in snapshots:
        values = snap.values
        stage = previous.get("stage")
        key = SETTLE if stage in (Stage.FINAL_UPDATE, Stage.SETTLEMENT) else str(previous.get("round", 1))
        for record in values.get("usage") or []:
            if record.id not in seen:
                seen.add(record.id)
                buckets[key].append(record)
        previous = values
    return buckets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--db", default=None, help="Checkpointer (default .sopgraph/state.sqlite).")
    args = parser.parse_args()
    buckets = usage_by_round(args.db, args.run)
    keys = sorted((k for k in buckets if k != SETTLE), key=int) + ([SETTLE] if SETTLE in buckets else [])
    print(f"{'round':>7} {'calls':>6} {'prompt/call':>12} {'max':>6} {'out/call':>9} {'seconds/call':>13}")
    for key in keys:
        calls = buckets[key]
        print(
            f"{key:>7} {len(calls):>6} {mean(c.input_tokens for c in calls):>12.0f} "
            f"{max(c.input_tokens for c in calls):>6} {mean(c.output_tokens for c in calls):>9.0f} "
            f"{mean(c.latency_s for c in calls):>13.1f}"
        )
    total = [c for k in keys for c in buckets[k]]
    print(
        f"{'all':>7} {len(total):>6} {mean(c.input_tokens for c in total):>12.0f} "
        f"{max(c.input_tokens for c in total):>6} {mean(c.output_tokens for c in total):>9.0f} "
        f"{mean(c.latency_s for c in total):>13.1f}"
    )


if __name__ == "__main__":
    main()
