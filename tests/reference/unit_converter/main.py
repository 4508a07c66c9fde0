"""Reference solution of the unit_converter task (never shown to a model): validates its acceptance checks."""

import sys

METRES = {"m": 1.0, "km": 1000.0, "mi": 1609.344, "ft": 0.3048}


def convert(value, source, target):
    if source in METRES and target in METRES:
        return value * METRES[source] / METRES[target]
    if (source, target) == ("c", "f"):
        return value * 9 / 5 + 32
    if (source, target) == ("f", "c"):
        return (value - 32) * 5 / 9
    if source == target and source in ("c", "f"):
        return value
    raise ValueError(f"unknown unit: {source} or {target}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print("usage: main.py VALUE FROM TO")
        sys.exit(0)
    try:
        print(round(convert(float(sys.argv[1]), sys.argv[2], sys.argv[3]), 4))
    except ValueError as exc:
        print(exc)
