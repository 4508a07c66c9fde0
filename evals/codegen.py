"""Code-generation problems: getting a function out of a model's reply and judging it in the sandbox.

Shared by HumanEval and MBPP. What the harness does, and why:

- The code is taken from the reply's ``` fences (the block that defines the entry point; else the longest
  Python block; else the reply itself), because small models wrap code in prose.
- A reply that defines the entry point is *sanitized*: only imports, definitions and constant assignments
  are kept, so example calls, prints, top-level asserts and ``if __name__ == "__main__"`` blocks the model
  added cannot fail, hang or exit a program before the tests run. A reply with no such definition is taken
  as the function's body and appended to the problem's stub (HumanEval's prompt), re-indented if needed.
- Generated code runs only through tools/sandbox/. Our process parses code (``ast``) but never executes it.
- A hidden-test verdict is a pass only if the program exits 0 *and* prints a random per-run token after the
  tests, so code that calls ``sys.exit(0)`` (or kills its own process) before the tests cannot pass.
- Visible tests are run one by one in a single program that reports, per test, what the code returned or
  raised (with the line of the model's code), which becomes the feedback for a fix. A problem without
  visible tests gets a smoke test (the code loads and defines the function). A function whose body is only
  its docstring (a small model repeating the prompt) fails the visible check without a run, saying so.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

from sopgraph.tools.sandbox import SandboxLimits, SandboxResult, run_python

__all__ = [
    "DEFAULT_LIMITS",
    "HiddenVerdict",
    "Problem",
    "VisibleOutcome",
    "assemble_solution",
    "defines_function",
    "empty_function",
    "extract_code",
    "feedback_summary",
    "run_hidden",
    "run_visible",
    "sanitize",
]

DEFAULT_LIMITS = SandboxLimits(wall_s=15.0, cpu_s=10, memory_mb=1024)
"""Tests of both benchmarks finish in well under a second; the wall limit leaves room for a busy machine."""

MAX_SHOWN = 300
"""Characters of a value, test or message shown back to the model."""


# The system prompt of every code-generation benchmark (HumanEval, MBPP).
SYSTEM = "You are an expert Python programmer. Answer with Python code in one ```python block, no explanations."


@dataclass(frozen=True)
class Problem:
    """One benchmark item, as the harness needs it."""

    task_id: str
    prompt: str
    """The user message sent to the model."""
    entry_point: str
    """The function the tests call."""
    hidden_tests: str
    """Test code run after the solution for the verdict; raises on failure."""
    visible_tests: tuple[str, ...] = ()
    """`assert` statements the model may be shown failing, for executable feedback."""
    context: str = ""
    """Code placed before the solution in every program (HumanEval: the prompt's imports and helpers)."""
    stub: str = ""
    """Signature and docstring to complete when a reply holds only a function body (HumanEval: the prompt)."""
    setup: str = ""
    """Test set-up code run after the solution, before any test (MBPP's test_setup_code)."""
    reference: str | None = None
    """A known-correct solution; visible tests it fails are dropped (HumanEval docstring examples)."""
    meta: dict[str, str] = field(default_factory=dict, compare=False)


# ------------------------------------------------------------------------------------------ extraction

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n`]*\n(.*?)```", re.DOTALL)
_OPEN_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n`]*\n")
_PYTHON_TAGS = {"", "python", "py", "python3", "py3", "pycon"}
_CODE_START = re.compile(r"^(def |async def |class |import |from \S+ import |@)", re.MULTILINE)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: source with NUL bytes
        return False
    return True


def _def_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", re.MULTILINE)


def _blocks(reply: str) -> list[tuple[str, str]]:
    """(language tag, code) of each fenced block, including a last one the model never closed."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(reply)]
    last_end = max((m.end() for m in _FENCE.finditer(reply)), default=0)
    tail = _OPEN_FENCE.search(reply, last_end)
    if tail is not None:
        blocks.append((tail.group(1).lower(), reply[tail.end() :]))
    return blocks


def _trim_prose(text: str) -> str:
    """Unfenced reply: start at the first line that looks like code, drop trailing lines until it parses."""
    start = _CODE_START.search(text)
    if start is None:
        return text.strip("\n")
    lines = text[start.start() :].rstrip().splitlines()
    for end in range(len(lines), max(0, len(lines) - 40), -1):
        candidate = "\n".join(lines[:end])
        if _parses(candidate):
            return candidate
    return "\n".join(lines)


def extract_code(reply: str, entry_point: str) -> str:
    """The code in a model reply: the fenced block defining `entry_point`, else the longest Python block,
    else the reply itself (from its first line of code)."""
    blocks = _blocks(reply)
    defining = [code for _, code in blocks if _def_pattern(entry_point).search(code)]
    if defining:
        return next((code for code in defining if _parses(code)), defining[0]).strip("\n")
    python = [code for tag, code in blocks if tag in _PYTHON_TAGS and code.strip()]
    if python:
        return max(python, key=len).strip("\n")
    if any(code.strip() for _, code in blocks):
        return max((code for _, code in blocks), key=len).strip("\n")
    return _trim_prose(reply)


def defines_function(code: str, name: str) -> bool:
    """Whether the code defines `name` at top level (by regex when it does not parse)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", code, re.MULTILINE) is not None
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name for n in tree.body)


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    names = [node.test.left, *node.test.comparators]
    return any(isinstance(n, ast.Name) and n.id == "__name__" for n in names)


def _calls_any(node: ast.AST, names: set[str]) -> bool:
    return any(
        isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in names for sub in ast.walk(node)
    )


def sanitize(code: str) -> str:
    """Keep imports, definitions, constant assignments and try-blocks; drop everything that only runs
    example code (calls, prints, asserts, loops, main guards) and ``from __future__`` imports (which must
    come first in a file and would break the assembled program). Unparseable code is returned as is."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    lines = code.splitlines()
    kept: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        keep = isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        keep = keep or (isinstance(node, ast.Assign | ast.AnnAssign) and not _calls_any(node, defined))
        keep = keep or (isinstance(node, ast.Try) and not _calls_any(node, defined))
        if not keep or _is_main_guard(node):
            continue
        decorators = getattr(node, "decorator_list", [])
        start = min([node.lineno, *(d.lineno for d in decorators)])
        end = node.end_lineno or node.lineno
        kept.append("\n".join(lines[start - 1 : end]))
    return "\n\n".join(kept) if kept else code


def _is_filler(statement: ast.stmt) -> bool:
    """A docstring, `pass` or `...`: what a function has when a reply only repeats the prompt."""
    if isinstance(statement, ast.Pass):
        return True
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def empty_function(code: str, name: str) -> bool:
    """Whether the code's (last) top-level definition of `name` has no body beyond a docstring or pass."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name]
    return bool(defs) and all(_is_filler(s) for s in defs[-1].body)


def _body_candidates(code: str) -> list[str]:
    """Ways to read a reply as a function body: re-indented as a whole, or with only its first line
    re-indented (replies often lose the first line's indentation), or as given."""
    dedented = textwrap.dedent(code)
    candidates = [textwrap.indent(dedented, "    ")]
    lines = code.splitlines()
    if lines and not lines[0].startswith((" ", "\t")):
        candidates.append("\n".join(["    " + lines[0], *lines[1:]]))
    candidates.append(code)
    return candidates


def assemble_solution(problem: Problem, reply: str) -> str:
    """The solution a reply amounts to: sanitized code defining the entry point, or the problem's stub
    completed with the reply as body."""
    code = extract_code(reply, problem.entry_point)
    if defines_function(code, problem.entry_point) or not problem.stub:
        return sanitize(code)
    stub = problem.stub if problem.stub.endswith("\n") else problem.stub + "\n"
    for body in _body_candidates(code):
        if body.strip() and _parses(stub + body):
            return stub + body.rstrip() + "\n"
    return stub + code  # does not parse: the SyntaxError is what the model will be told


# ------------------------------------------------------------------------------------- programs


def _join(*parts: str) -> str:
    return "\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"


def _lines_before(*parts: str) -> int:
    """Line number at which the next part starts when `parts` are joined with _join."""
    text = "\n\n".join(p.strip("\n") for p in parts if p.strip())
    return text.count("\n") + 3 if text else 1


_TOKEN_LINE = "sys.stdout.write({token!r} + '\\n')\nsys.stdout.flush()\n"


def hidden_program(problem: Problem, solution: str, token: str) -> str:
    """Solution, set-up and tests, then the token that proves the tests ran to the end."""
    tail = "import sys\n" + _TOKEN_LINE.format(token=token)
    return _join(problem.context, solution, problem.setup, problem.hidden_tests, tail)


_VISIBLE_RUNNER = """
import json as _sg_json
import sys as _sg_sys
import traceback as _sg_tb


class _SgMismatch(Exception):
    pass


def _sg_short(value):
    try:
        text = repr(value)
    except BaseException as exc:
        text = "<unprintable %s>" % type(exc).__name__
    return text if len(text) <= {max_shown} else text[:{max_shown}] + "..."


def _sg_explain(exc):
    text = "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__
    text = text[:{max_shown}]
    for frame in reversed(_sg_tb.extract_tb(exc.__traceback__)):
        if frame.filename == __file__ and {first} <= frame.lineno <= {last}:
            line = (frame.line or "").strip()
            return "%s (line %d of your code: %s)" % (text, frame.lineno - {first} + 1, line[:200])
    return text


_sg_report = []
for _sg_test in _SG_TESTS:
    try:
        _sg_test()
        _sg_report.append(None)
    except _SgMismatch as _sg_exc:
        _sg_report.append(str(_sg_exc))
    except BaseException as _sg_exc:
        _sg_report.append(_sg_explain(_sg_exc))
_sg_sys.stdout.write({token!r} + _sg_json.dumps(_sg_report) + "\\n")
_sg_sys.stdout.flush()
"""


def _test_function(index: int, test: str) -> str:
    """A test as a function that raises _SgMismatch saying what came back, for `assert a == b`."""
    try:
        tree = ast.parse(textwrap.dedent(test))
    except (SyntaxError, ValueError):
        tree = None
    name = f"_sg_t{index}"
    if tree is not None and len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
        check = tree.body[0].test
        if isinstance(check, ast.Compare) and len(check.ops) == 1 and isinstance(check.ops[0], ast.Eq):
            got, want = ast.unparse(check.left), ast.unparse(check.comparators[0])
            return (
                f"def {name}():\n    _sg_got = {got}\n    _sg_want = {want}\n    if not (_sg_got == _sg_want):\n"
                f'        raise _SgMismatch("returned %s, expected %s" % (_sg_short(_sg_got), _sg_short(_sg_want)))\n'
            )
        condition = ast.unparse(check)
        return f'def {name}():\n    if not ({condition}):\n        raise _SgMismatch("the assertion is false")\n'
    return f"def {name}():\n" + textwrap.indent(textwrap.dedent(test).strip("\n") or "pass", "    ") + "\n"


def visible_program(problem: Problem, solution: str, tests: Sequence[str], token: str) -> str:
    first = _lines_before(problem.context) if problem.context.strip() else 1
    last = first + solution.strip("\n").count("\n")
    functions = "\n\n".join(_test_function(i, t) for i, t in enumerate(tests))
    table = f"_SG_TESTS = [{', '.join(f'_sg_t{i}' for i in range(len(tests)))}]"
    runner = _VISIBLE_RUNNER.format(max_shown=MAX_SHOWN, first=first, last=last, token=token)
    return _join(problem.context, solution, problem.setup, functions, table, runner)


# ------------------------------------------------------------------------------------- verdicts


def _failure(result: SandboxResult, limits: SandboxLimits) -> str:
    """One line on why a run failed, for the results file."""
    if result.timed_out or result.limit_hit == "wall":
        return f"stopped at the wall-clock limit ({limits.wall_s:g} s)"
    if result.limit_hit:
        return f"hit the {result.limit_hit.replace('_', ' ')} limit"
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    if lines:
        return lines[-1].strip()[:MAX_SHOWN]
    return f"exit code {result.exit_code} without finishing the tests"


@dataclass(frozen=True)
class HiddenVerdict:
    passed: bool
    limit_hit: str | None
    failure: str | None
    seconds: float


def run_hidden(problem: Problem, solution: str, limits: SandboxLimits = DEFAULT_LIMITS) -> HiddenVerdict:
    token = f"SOPGRAPH-OK-{secrets.token_hex(16)}"
    result = run_python(hidden_program(problem, solution, token), limits=limits)
    passed = result.ok and token in result.stdout.splitlines()
    limit = result.stopped_by
    failure = None if passed else _failure(result, limits)
    return HiddenVerdict(passed, limit, failure, result.duration_s)


@dataclass(frozen=True)
class VisibleOutcome:
    tests: tuple[str, ...]
    failures: tuple[str | None, ...]
    """Per test: None for a pass, else what went wrong. Empty when the program never reached the tests."""
    crash: str | None
    """Why the program did not get through the tests (syntax error, exit, limit), or None."""
    limit_hit: str | None
    seconds: float

    @property
    def passed(self) -> bool:
        return self.crash is None and len(self.failures) == len(self.tests) and all(f is None for f in self.failures)

    @property
    def failed_count(self) -> int:
        return len(self.tests) if self.crash else sum(f is not None for f in self.failures)


def _program_error(result: SandboxResult, limits: SandboxLimits, first_line: int, last_line: int) -> str:
    """The tail of a crash's stderr, with the program's line numbers turned into the model's."""
    if result.timed_out or result.limit_hit == "wall":
        return (
            f"The run was stopped after {limits.wall_s:g} s (the time limit): "
            "the code probably loops forever or is far too slow."
        )
    if result.limit_hit:
        return f"The run hit the sandbox's {result.limit_hit.replace('_', ' ')} limit."

    def renumber(match: re.Match[str]) -> str:
        line = int(match.group(1))
        if line < first_line:
            return "the problem's own code"
        return f"line {line - first_line + 1} of your code" if line <= last_line else "the test code"

    text = re.sub(r'File "[^"]*", line (\d+)(, in <module>)?', renumber, result.stderr.strip())
    tail = [ln for ln in text.splitlines() if ln.strip()][-8:]
    return "\n".join(tail)[:1000] or f"The program exited with code {result.exit_code} before the tests ran."


def run_visible(
    problem: Problem, solution: str, tests: Sequence[str], limits: SandboxLimits = DEFAULT_LIMITS
) -> VisibleOutcome:
    """Run each visible test against the solution; with no tests, just check that the solution loads and
    defines the entry point. A function with no body (the reply repeated the prompt) fails without a run,
    with a message that says so: a weak model does this, and "returned None" would not tell it why."""
    tests = tuple(tests) or (f"assert callable({problem.entry_point})",)
    if empty_function(solution, problem.entry_point):
        message = (
            f"The function `{problem.entry_point}` has no body: your reply only repeats its signature and "
            "docstring. Write the code that implements it."
        )
        return VisibleOutcome(tests, (), message, None, 0.0)
    token = f"SOPGRAPH-REPORT-{secrets.token_hex(16)}"
    result = run_python(visible_program(problem, solution, tests, token), limits=limits)
    limit = result.stopped_by
    report: list[str | None] | None = None
    for line in result.stdout.splitlines():
        if line.startswith(token):
            try:
                parsed = json.loads(line[len(token) :])
            except ValueError:
                break
            if isinstance(parsed, list) and len(parsed) == len(tests):
                report = [p if p is None else str(p) for p in parsed]
            break
    if report is not None and result.ok:
        return VisibleOutcome(tests, tuple(report), None, limit, result.duration_s)
    first = _lines_before(problem.context) if problem.context.strip() else 1
    last = first + solution.strip("\n").count("\n")
    return VisibleOutcome(tests, (), _program_error(result, limits, first, last), limit, result.duration_s)


def _shorten(text: str, limit: int = MAX_SHOWN) -> str:
    text = " ".join(text.split()) if "\n" not in text.strip() else text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def feedback_summary(outcome: VisibleOutcome, max_failures: int = 3) -> str:
    """What a model is told about its failing code: short, concrete, at most a few failures."""
    if outcome.crash:
        return f"Your code failed before the tests could run:\n{outcome.crash}"
    failed = [(t, f) for t, f in zip(outcome.tests, outcome.failures, strict=True) if f is not None]
    lines = [f"Your code failed {len(failed)} of {len(outcome.tests)} tests:"]
    for test, failure in failed[:max_failures]:
        lines.append(f"- {_shorten(test)}")
        lines.append(f"  {_shorten(failure)}")
    if len(failed) > max_failures:
        lines.append(f"... and {len(failed) - max_failures} more.")
    return "\n".join(lines)
