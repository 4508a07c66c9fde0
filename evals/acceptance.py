"""Black-box acceptance checks of the software tasks, and the quality of a repository's own tests.

A check runs the delivered program in the sandbox the way a user would: with arguments and stdin, with input
files in its folder, as a sequence of steps in the same folder (`add`, then `list`), or served on a port and
requested over HTTP. It passes when every `expect` pattern is found in what the last step printed (stdout
and stderr; HTTP: `status N` and the body), no `reject` pattern is, and no step ended in a traceback other
than EOFError (an interactive program that ran out of stdin). The checks are ours, never shown to a model.

Own tests count only when they assert behaviour: at least three test functions with an assert, passing,
and failing once every function body of the program is replaced by `raise NotImplementedError`.
"""

from __future__ import annotations

import ast
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sopgraph.tools import sandbox
from sopgraph.tools.program import is_test_path
from sopgraph.tools.session import run_steps
from sopgraph.tools.workspace import Workspace


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    args: list[str] = Field(default_factory=list)
    stdin: str = ""
    http: dict[str, Any] | None = None
    """{path, form}: a GET of path, or a POST of the form fields."""


class AcceptanceCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    args: list[str] = Field(default_factory=list)
    stdin: str = ""
    steps: list[Step] = Field(default_factory=list)
    """Run in order in one folder; `args`/`stdin` alone make a single step."""
    files: dict[str, str] = Field(default_factory=dict)
    expect: list[str] = Field(default_factory=list)
    reject: list[str] = Field(default_factory=list)

    @field_validator("expect", "reject", mode="after")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            re.compile(pattern)
        return value

    def all_steps(self) -> list[Step]:
        return self.steps or [Step(args=self.args, stdin=self.stdin)]


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    why: str


def run_check(root: Path, entry: list[str], check: AcceptanceCheck, timeout: float = 5.0) -> CheckResult:
    """Run one check on the program at `root` (a scratch copy of it), in the sandbox."""
    steps = [s.model_dump(exclude_none=True) for s in check.all_steps()]
    ran = run_steps(root, entry, steps, files=check.files, step_timeout=timeout)
    if ran.error:
        return CheckResult(check.name, False, ran.error.replace("the steps", "the check"))
    last = ran.last
    if ran.crashed:
        return CheckResult(check.name, False, f"crashed: {ran.crashed[0]}")
    missing = [p for p in check.expect if not re.search(p, last, re.MULTILINE)]
    if missing:
        return CheckResult(check.name, False, f"expected {missing[0]!r} in: {' '.join(last.split())[:160]!r}")
    found = [p for p in check.reject if re.search(p, last, re.MULTILINE)]
    if found:
        return CheckResult(check.name, False, f"found {found[0]!r}, which it must not print")
    return CheckResult(check.name, True, "ok")


# -- the quality of the repository's own tests ----------------------------------------------------------


def asserting_tests(files: dict[str, str]) -> int:
    """How many test functions (test_* in test files) contain an assert or pytest.raises."""
    count = 0
    for path, text in files.items():
        if not is_test_path(path):
            continue
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                inner = list(ast.walk(node))
                raises = any(isinstance(n, ast.Attribute) and n.attr == "raises" for n in inner)
                if raises or any(isinstance(n, ast.Assert) for n in inner):
                    count += 1
    return count


class _Gut(ast.NodeTransformer):
    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.body = [ast.Raise(exc=ast.Name(id="NotImplementedError", ctx=ast.Load()), cause=None)]
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AsyncFunctionDef:
        node.body = [ast.Raise(exc=ast.Name(id="NotImplementedError", ctx=ast.Load()), cause=None)]
        return node


def gutted(code: str) -> str:
    """The module with every function body replaced by `raise NotImplementedError` (the code unchanged
    when it does not parse)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    return ast.unparse(ast.fix_missing_locations(_Gut().visit(tree))) + "\n"


def tests_notice_gutting(root: Path, code: list[str], limits: sandbox.SandboxLimits) -> bool:
    """Whether the repository's tests fail once the program's function bodies are gone."""
    scratch = Path(tempfile.mkdtemp(prefix="sopgraph-gutted-")) / "project"
    try:
        shutil.copytree(root, scratch, ignore=shutil.ignore_patterns(".*", "__pycache__"))
        ws = Workspace(scratch)
        for path in code:
            ws.write(path, gutted(ws.read(path) or ""))
        report = sandbox.run_tests(scratch, "tests", limits=limits, copy=True)
    finally:
        shutil.rmtree(scratch.parent, ignore_errors=True)
    return not report.all_passed
