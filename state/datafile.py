"""YAML data files of our own writing (group-chat scenarios, software-task sets): read and validate them with
errors that name the file, the item and the field, one line per problem, never a traceback.

A list item is named by its `id` when it has one (`tasks[tic_tac_toe].category`), by its index otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from sopgraph.state.limits import MAX_SCENARIO_BYTES, MAX_YAML_DEPTH

M = TypeVar("M", bound=BaseModel)


def where(loc: Sequence[int | str], data: Any) -> str:
    """A validation location as a readable path; list items are named by their id when they have one."""
    parts: list[str] = []
    node = data
    for key in loc:
        if isinstance(key, int) and isinstance(node, list):
            item = node[key] if key < len(node) else None
            label = item.get("id") if isinstance(item, dict) else None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{label or key}]"]
            node = item
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def validate(model: type[M], data: Any, source: str, error: type[ValueError]) -> M:
    """`model` validated from `data`, or `error` with one `source: item.field: problem` line per problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            at = where(err["loc"], data)
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{source}: {at}: {msg}" if at != "(top level)" else f"{source}: {msg}")
        raise error("\n".join(problems)) from None


class _TooDeep(yaml.YAMLError):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting past MAX_YAML_DEPTH while composing (before Python's recursion limit)."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise _TooDeep(f"nested deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def read_mapping(path: Path, expected: str, error: type[ValueError]) -> dict[str, Any]:
    """The YAML mapping in `path`; `error` for a missing file, bad YAML (with its line) or another shape.
    `expected` says what the mapping holds, for that last message. Size and depth are bounded first."""
    try:
        if path.is_dir():
            raise error(f"{path}: is a directory, not a YAML file")
        size = path.stat().st_size
        if size > MAX_SCENARIO_BYTES:
            raise error(f"{path}: {size:,} bytes; the limit for a YAML data file is {MAX_SCENARIO_BYTES:,}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader subclass
    except _TooDeep as exc:
        raise error(f"{path}: not accepted: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping with {expected}")
    return data
