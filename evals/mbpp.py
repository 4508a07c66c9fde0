"""MBPP (Austin et al. 2021, "Program Synthesis with Large Language Models"): 974 short Python tasks, each
with a description, a reference solution and three test asserts. Splits by task id as in the paper: prompt
1-10, test 11-510 (the 500 problems usually reported), validation 511-600, train 601-974.

Prompt and tests. The model sees the description and the first `visible` asserts of `test_list` (the
function name and calling convention come from them). Hidden tests, for the verdict: all of `test_list`
after `test_setup_code`, as the original evaluation does (`challenge_test_list` is not used).

`visible=1` (the default) follows the self-debugging line of work (Chen et al. 2023, "Teaching Large Language
Models to Self-Debug", and later execution-feedback papers): one test in the prompt is the test the feedback
loop may run, and the other two stay hidden, so the with-feedback number is not earned on the tests that
grade it. `visible=3` is the prompt of the original paper, which shows all three asserts; with feedback the
model is then repaired against the very tests that grade it, and the report says so through its settings.

Data: a path (`--data`), else ../shared/data/mbpp/mbpp.jsonl beside the repository, else the public file
downloaded once into the sopgraph cache and checked against its known sha256.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sopgraph.evals import prefill
from sopgraph.evals.codegen import SYSTEM, Problem

__all__ = [
    "DATA_SHA256",
    "DATA_URL",
    "SPLITS",
    "SYSTEM",
    "MbppDataError",
    "default_data_path",
    "download",
    "entry_point",
    "load_problems",
    "resolve_data",
    "to_problem",
]


PROMPT = """{text}
Your code should pass {these}:

{tests}

Write the Python code in one ```python code block."""

SPLITS: dict[str, tuple[int, int]] = {
    "test": (11, 510),
    "validation": (511, 600),
    "train": (601, 974),
    "prompt": (1, 10),
    "all": (1, 974),
}

# google-research/google-research at the commit ../shared/data/mbpp/SOURCE.md names; the file is unchanged
# since, and pinning the commit keeps the sha256 check meaningful.
DATA_URL = (
    "https://raw.githubusercontent.com/google-research/google-research/"
    "2251e8c67a7fe7d6348714967ee101080b28e956/mbpp/mbpp.jsonl"
)
DATA_SHA256 = "0b7004a79cd62d9ec7ecdd5a6e5f0ef1210ff00b286df3c5d5b57bf38c58e19a"
DATA_SIZE = 563_537

REPO_ROOT = Path(__file__).resolve().parent.parent


class MbppDataError(RuntimeError):
    """The data file is missing, unreadable or not the expected one; one line for the user."""


def default_data_path() -> Path:
    """../shared/data/mbpp/mbpp.jsonl relative to the repository (where tests and CI find it)."""
    return REPO_ROOT.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"


def cache_path() -> Path:
    """Where a downloaded copy lives: $SOPGRAPH_HOME/data, else the XDG cache (as the local model does)."""
    home = os.environ.get("SOPGRAPH_HOME")
    if home:
        return Path(home).expanduser() / "data" / "mbpp" / "mbpp.jsonl"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "sopgraph" / "data" / "mbpp" / "mbpp.jsonl"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download(dest: Path, url: str = DATA_URL, timeout_s: float = 60.0) -> Path:
    """Fetch the public MBPP file to dest (atomically), refusing anything but the known bytes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".mbpp-", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            out.write(response.read(DATA_SIZE + 1))
        got = _sha256(tmp)
        if got != DATA_SHA256:
            raise MbppDataError(f"downloaded MBPP file has sha256 {got[:16]}…, expected {DATA_SHA256[:16]}…")
        os.replace(tmp, dest)
    except (OSError, urllib.error.URLError) as exc:
        raise MbppDataError(f"cannot download MBPP from {url}: {exc}; pass --data PATH to a local copy") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def resolve_data(path: Path | None = None, announce: Callable[[str], None] | None = None) -> Path:
    """The data file to read: `path` if given (it must exist), else the shared copy, else the cached
    download (fetched now, with a message, if missing)."""
    if path is not None:
        if not path.is_file():
            raise MbppDataError(f"MBPP data file {path} does not exist")
        return path
    shared = default_data_path()
    if shared.is_file():
        return shared
    cached = cache_path()
    if cached.is_file() and _sha256(cached) == DATA_SHA256:
        return cached
    if announce is not None:
        announce(
            f"MBPP data not found at {shared}; downloading the public file (563 kB, CC-BY-4.0) from {DATA_URL} "
            f"to {cached}"
        )
    return download(cached)


def entry_point(record: dict[str, Any]) -> str:
    """The function the tests call: a function called in the first assert that the reference defines,
    else the first function called there."""
    calls: list[str] = []
    try:
        tree = ast.parse(record["test_list"][0])
        calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    except (SyntaxError, IndexError):
        pass
    try:
        defined = {n.name for n in ast.walk(ast.parse(record.get("code", ""))) if isinstance(n, ast.FunctionDef)}
    except SyntaxError:
        defined = set()
    return next((c for c in calls if c in defined), calls[0] if calls else "solution")


def to_problem(record: dict[str, Any], visible: int = 1, style: str = "chat") -> Problem:
    """One problem; `style` "qwen" asks as the Qwen2.5-Coder team's harness does: the description and the
    shown asserts in a docstring (evalplus's MBPP+ prompt shape), inside their request (evals/prefill.py)."""
    tests = [t.strip() for t in record["test_list"]]
    shown = tests[: max(1, visible)]
    if style == "qwen":
        prompt = prefill.user_prompt('"""\n' + record["text"].strip() + "\n" + "\n".join(shown) + '\n"""')
    else:
        prompt = PROMPT.format(
            text=record["text"].strip(),
            these="this test" if len(shown) == 1 else "these tests",
            tests="\n".join(shown),
        )
    return Problem(
        task_id=f"MBPP/{record['task_id']}",
        prompt=prompt,
        entry_point=entry_point(record),
        hidden_tests="\n".join(tests) + "\n",
        visible_tests=tuple(shown),
        setup=(record.get("test_setup_code") or "").replace("\r\n", "\n"),
        meta={"reference": (record.get("code") or "").replace("\r\n", "\n")},
    )


def load_problems(path: Path, split: str = "test", visible: int = 1, style: str = "chat") -> list[Problem]:
    """The split's problems in task-id order."""
    if split not in SPLITS:
        raise MbppDataError(f"unknown MBPP split {split!r}; use one of {', '.join(SPLITS)}")
    if not 1 <= visible <= 3:
        raise MbppDataError(f"visible tests must be 1, 2 or 3, got {visible}")
    low, high = SPLITS[split]
    records: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    records.append(json.loads(line))
    except (OSError, ValueError) as exc:
        raise MbppDataError(f"cannot read MBPP data {path} (line {len(records) + 1}): {exc}") from exc
    chosen = sorted((r for r in records if low <= int(r["task_id"]) <= high), key=lambda r: int(r["task_id"]))
    if not chosen:
        raise MbppDataError(f"{path} has no MBPP problems in split {split!r} (task ids {low}-{high})")
    return [to_problem(r, visible, style) for r in chosen]
