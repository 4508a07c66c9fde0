"""Reference solution of the json_flattener task (never shown to a model): validates its checks."""

import json
import sys


def flatten(value, prefix=""):
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return [(prefix, value)]
    out = []
    for key, inner in items:
        out += flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] == "--help":
        print("usage: main.py FILE.json")
        sys.exit(0)
    with open(sys.argv[1]) as handle:
        document = json.load(handle)
    for key, value in flatten(document):
        print(f"{key} = {value}")
