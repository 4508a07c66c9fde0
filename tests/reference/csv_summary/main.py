"""Reference solution of the csv_summary task (never shown to a model): validates its acceptance checks."""

import csv
import sys


def summarize(rows):
    out = []
    for column in rows[0].keys() if rows else []:
        cells = [r[column] for r in rows]
        values = [c for c in cells if c.strip()]
        line = {"name": column, "values": len(values), "empty": len(cells) - len(values)}
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            numbers = []
        if numbers:
            line.update(min=min(numbers), max=max(numbers), mean=sum(numbers) / len(numbers))
        out.append(line)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] == "--help":
        print("usage: main.py FILE.csv")
        sys.exit(0)
    try:
        with open(sys.argv[1], newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (IndexError, OSError) as exc:
        print(f"error: {exc}")
        sys.exit(1)
    for col in summarize(rows):
        extra = f", min {col['min']:g}, max {col['max']:g}, mean {col['mean']:g}" if "mean" in col else ""
        print(f"{col['name']}: {col['values']} values, {col['empty']} empty{extra}")
