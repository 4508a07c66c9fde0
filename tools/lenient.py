"""Lenient reading of a weak model's structured replies: a string where a list was asked, an object where a
string was asked, a bulleted list in one string, a diagram in a code fence, a field that only repeats its
description. Used as pydantic validators (`Text`, `Items`, `mermaid`, `drop_echoes`), so a reply is repaired
rather than re-asked whenever its meaning is clear. Knows nothing of any graph."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator

LIST_LIMIT = 8
"""Longer lists from a model are cut, not rejected: a re-ask costs more than the extra items are worth."""


def flatten(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return "; ".join(f"{flatten(v)}" for v in value.values() if flatten(v))
    if isinstance(value, (list, tuple)):
        return "; ".join(flatten(v) for v in value if flatten(v))
    return str(value)


def as_text(value: Any) -> Any:
    return "\n".join(flatten(v) for v in value) if isinstance(value, (list, tuple)) else flatten(value)


def split_lines(value: str) -> list[str]:
    parts = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", p).strip() for p in re.split(r"[\n;]+", value)]
    return [p for p in parts if p]


def string_list(limit: int = LIST_LIMIT) -> Callable[[Any], Any]:
    def coerce(value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            value = split_lines(value)
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, (list, tuple)):
            items = [flatten(v) for v in value]
            return [i for i in items if i][:limit]
        return value

    return coerce


Text = Annotated[str, BeforeValidator(as_text)]
Items = Annotated[list[str], BeforeValidator(string_list())]


def mermaid(header: str) -> Callable[[Any], Any]:
    """Keep a diagram renderable: no fences, and the diagram type line first."""

    def coerce(value: Any) -> Any:
        text = as_text(value)
        if not isinstance(text, str):
            return text
        text = re.sub(r"^```(?:mermaid)?\s*|\s*```$", "", text.strip()).strip()
        if not text.lstrip().startswith(header):
            text = f"{header}\n{text}" if text else header
        return text

    return coerce


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def _echoes(value: Any, description: str) -> bool:
    """A value that only repeats the field's description (a small model's habit)."""
    if not isinstance(value, str) or not description:
        return False
    said, asked = _normal(value), _normal(description)
    return bool(said) and (said == asked or (len(said) >= 12 and said in asked))


def drop_echoes(schema: type[BaseModel], data: Any) -> Any:
    """Remove field values (and list items) that merely repeat their field's description."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name, info in schema.model_fields.items():
        if name not in out or not info.description:
            continue
        value = out[name]
        if isinstance(value, list):
            out[name] = [v for v in value if not _echoes(v, info.description)]
        elif _echoes(value, info.description):
            del out[name]
    return out
