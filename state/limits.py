"""Bounds on what a user or a model hands in, checked before it is parsed or stored in a checkpoint.

Every checkpoint stores the run's inputs and documents, so an unbounded idea or file is copied into the
database again and again (a 1 MB idea made a 29 MB database for one run). The README lists these limits.
"""

from __future__ import annotations

MAX_IDEA_CHARS = 20_000
"""An idea or change request (company, demo)."""
MAX_SCENARIO_BYTES = 1_000_000
"""A scenario YAML file, checked before it is read."""
MAX_YAML_DEPTH = 50
"""Nesting of a scenario's YAML (a 10,000-deep document exhausted Python's recursion)."""
MAX_GENERATED_CHARS = 256 * 1024
"""A model reply holding one generated file; longer replies are cut before the code is extracted (the
same bound as reading an existing repository's files)."""


def checked_text(what: str, text: str, limit: int = MAX_IDEA_CHARS) -> str:
    """`text` stripped, or ValueError with one line: empty, not UTF-8 (undecodable command-line bytes), too long."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid UTF-8 text") from None
    text = text.strip()
    if not text:
        raise ValueError(f"{what} is empty")
    if len(text) > limit:
        raise ValueError(f"{what} has {len(text):,} characters; the limit is {limit:,}")
    return text
