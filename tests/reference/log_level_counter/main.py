"""Reference solution of the log_level_counter task (never shown to a model): validates its checks."""

import re
import sys
from collections import Counter

LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")


def count(lines):
    found = Counter()
    for line in lines:
        match = LEVEL.search(line)
        if match:
            found[match.group(1)] += 1
    return found.most_common()


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] == "--help":
        print("usage: main.py FILE.log")
        sys.exit(0)
    try:
        with open(sys.argv[1]) as handle:
            ranking = count(handle)
    except (IndexError, OSError) as exc:
        print(f"error: {exc}")
        sys.exit(1)
    for level, n in ranking:
        print(f"{level}: {n}")
