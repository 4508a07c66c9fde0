"""What containment costs: a trivial program run bare vs in each available sandbox level, and how well
concurrent runs overlap. Prints ratios; run with `python benchmarks/sandbox_overhead.py [N]`."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from sopgraph.tools import sandbox as sb
from sopgraph.tools.sandbox import files, uids

PROGRAM = "print(sum(range(1000)))"


def timed(fn: object, n: int) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(n: int = 10) -> None:
    bare = timed(lambda: subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, check=True), n)
    print(f"bare subprocess              {bare * 1000:7.1f} ms   1.00x")
    unreachable = files.first_blocked(os.path.realpath(sys.executable), uids.uid_base())
    for iso in sb.available_isolations():
        if iso.name == "none" and iso.uid_drop and unreachable:
            print(f"{iso.name:<28} (interpreter unreachable by the sandbox uid here; skipped)")
            continue
        t = timed(lambda iso=iso: sb.run_python(PROGRAM, isolation=iso.name), n)
        print(f"{iso.name + ' (' + iso.detail + ')':<28.28} {t * 1000:7.1f} ms  {t / bare:5.2f}x")

    sleeper = "import time; time.sleep(0.5)"
    one = timed(lambda: sb.run_python(sleeper), 3)
    for workers in (2, 4, 8):
        start = time.perf_counter()
        sb.run_many([lambda: sb.run_python(sleeper)] * workers, max_workers=workers)
        wall = time.perf_counter() - start
        print(
            f"run_many x{workers}: {wall:5.2f} s vs {workers * one:5.2f} s serial  "
            f"speed-up {workers * one / wall:4.1f}x"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
