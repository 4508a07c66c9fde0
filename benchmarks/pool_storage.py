"""Checkpoint bytes per pool size: DeltaChannel pool vs a plain `operator.add` list channel.

Prints the stored bytes (checkpoint blobs, metadata and pending writes in SQLite) for each size and the
growth ratios. Linear storage doubles with the message count; quadratic storage quadruples.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_pool import _ListState, _PoolState, _write_messages  # noqa: E402


def main() -> None:
    sizes = (50, 100, 200, 400)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in sizes:
            start = time.perf_counter()
            delta = _write_messages(_PoolState, n, Path(tmp) / f"delta{n}.sqlite")
            mid = time.perf_counter()
            plain = _write_messages(_ListState, n, Path(tmp) / f"plain{n}.sqlite")
            rows.append((n, delta, plain, mid - start, time.perf_counter() - mid))
    print(f"{'messages':>8} {'delta bytes':>12} {'plain bytes':>12} {'plain/delta':>11} {'delta s':>8} {'plain s':>8}")
    for n, delta, plain, td, tp in rows:
        print(f"{n:>8} {delta:>12,} {plain:>12,} {plain / delta:>11.1f} {td:>8.2f} {tp:>8.2f}")
    for (n1, d1, p1, *_), (n2, d2, p2, *_) in zip(rows, rows[1:], strict=False):
        print(f"growth {n1}->{n2}: delta x{d2 / d1:.2f}, plain x{p2 / p1:.2f}")


if __name__ == "__main__":
    main()
