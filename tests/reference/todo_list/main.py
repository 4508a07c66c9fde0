"""Reference solution of the todo_list task (never shown to a model): validates its acceptance checks."""

import json
import sys
from pathlib import Path

STORE = Path("todo.json")


def load():
    return json.loads(STORE.read_text()) if STORE.exists() else []


def save(items):
    STORE.write_text(json.dumps(items))


def run(argv, items):
    if not argv or argv[0] not in ("add", "list", "done", "remove"):
        return items, "usage: main.py add TEXT | list | done N | remove N"
    command, rest = argv[0], argv[1:]
    if command == "add":
        items.append({"text": " ".join(rest), "done": False})
        return items, f"added {len(items)}"
    if command == "list":
        lines = [f"{i}. [{'x' if it['done'] else ' '}] {it['text']}" for i, it in enumerate(items, 1)]
        return items, "\n".join(lines) or "no items"
    index = int(rest[0]) - 1
    if not 0 <= index < len(items):
        return items, "no such item"
    if command == "done":
        items[index]["done"] = True
        return items, f"done {index + 1}"
    items.pop(index)
    return items, f"removed {index + 1}"


if __name__ == "__main__":
    items, message = run(sys.argv[1:], load())
    save(items)
    print(message)
