"""A scripted software company for the tests: fixed documents and a tiny, really testable calculator project.

The code it "writes" is chosen by what each prompt asks for, so the sandbox really runs it: a buggy first
calc.py makes the tests fail, and the engineer's fix (asked for with the failure) makes them pass.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sopgraph.nodes.company import architect, engineer, product_manager, project_manager, qa, reviewer
from sopgraph.nodes.company.reviewer import ReviewReply
from sopgraph.nodes.scripted import ScriptedFault, ScriptedRequest
from sopgraph.state.company import PRD, Arbitration, SystemDesign, TaskPlan

ROLES = {
    module.ROLE.profile: module.ROLE.name
    for module in (product_manager, architect, project_manager, engineer, reviewer, qa)
} | {qa.ARBITER.profile: qa.ARBITER.name}

GOOD_CALC = '''"""Arithmetic."""


def add(a, b):
    return a + b


def sub(a, b):
    return a - b
'''
BUGGY_CALC = GOOD_CALC.replace("return a + b", "return a - b")
FORMAT = '''"""Formatting."""


def show(value):
    return f"= {value}"
'''
MAIN = '''"""Command line entry."""

import sys

from calc import add
from fmt import show


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python main.py A B")
        return
    print(show(add(int(args[0]), int(args[1]))))


if __name__ == "__main__":
    main()
'''
TEST_CALC = """from calc import add, sub


def test_add():
    assert add(2, 3) == 5


def test_sub():
    assert sub(5, 3) == 2
"""
TEST_FMT = """def test_show():  # the import is forgotten, as small models do: QA's worker completes it
    assert show(3) == "= 3"
"""
TEST_MAIN_CLI = """def test_adds_two_numbers(cli):
    done = cli("2", "3")
    assert done.returncode == 0 and done.stdout.strip() == "= 5"


def test_usage_without_arguments(cli):
    assert "usage" in cli().stdout
"""
CRASHING_MAIN = MAIN.replace(
    "    args = sys.argv[1:] if argv is None else argv\n",
    "    args = sys.argv[1:] if argv is None else argv\n    raise RuntimeError('not wired up yet')\n",
)
FILES = ["calc.py", "fmt.py", "main.py"]


def role_of(request: ScriptedRequest) -> str:
    system = request.system
    return next((name for profile, name in ROLES.items() if profile in system), "?")


def prd(name: str = "calculator", extra: str = "") -> PRD:
    return PRD.model_validate(
        {
            "project_name": name,
            "product_goals": ["add numbers from the command line"] + ([extra] if extra else []),
            "user_stories": ["As a user, I want to add two numbers so that I get their sum"],
            "competitive_analysis": ["bc: powerful but arcane"],
            "requirements": [{"priority": "P0", "text": "add two integers"}, "P1: subtract"],
            "ui_notes": "python main.py 2 3 prints = 5",
            "open_questions": [],
        }
    )


def design(files: list[str] | None = None) -> dict[str, Any]:
    return {
        "implementation_approach": "Three small modules: arithmetic, formatting, and a command line entry.",
        "file_list": files or FILES,
        "data_structures": "classDiagram\n  class calc {\n    +add(a, b) int\n    +sub(a, b) int\n  }",
        "call_flow": "sequenceDiagram\n  main->>calc: add(a, b)\n  main->>fmt: show(sum)",
    }


def plan(files: list[str] | None = None) -> dict[str, Any]:
    files = files or FILES
    analysis = {
        "calc.py": ["calc.py", "add(a, b) and sub(a, b)"],
        "fmt.py": ["fmt.py", "show(value) formats a result"],
        "main.py": {
            "file": "main.py",
            "description": "parse argv, call add, print",
            "depends_on": ["calc.py", "fmt.py"],
        },
        "store.py": ["store.py", "keeps the history"],
    }
    return {
        "required_packages": [],
        "logic_analysis": [analysis[f] for f in files],
        "task_list": list(reversed(files)),  # deliberately wrong: the plan is reordered by dependencies
        "shared_knowledge": "functions take ints",
    }


@dataclass
class Company:
    """The script: set attributes to change what a role answers."""

    buggy_until_fix: bool = False
    """calc.py is wrong until the engineer is asked to fix it after a failing test run."""
    always_buggy: bool = False
    wrong_test: bool = False
    """QA's first test_calc.py expects a wrong sum, until the engineer is asked to fix the test itself."""
    lbtm: set[str] = field(default_factory=set)
    """Files whose first version the reviewer sends back."""
    prd: PRD = field(default_factory=prd)
    design: dict[str, Any] = field(default_factory=design)
    plan: dict[str, Any] = field(default_factory=plan)
    crash_main_until_fix: bool = False
    """main.py raises on start until the engineer is asked to fix it."""
    fix_replies: dict[str, str] = field(default_factory=dict)
    """What a request to fix a file (by name) gets instead of the good code."""
    crash_on: str | None = None
    """Raise a provider fault the first time a prompt asks to write this file."""
    prompts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Every prompt, by role."""
    calls: list[tuple[str, str]] = field(default_factory=list)
    """(role, what was asked) in order."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: ScriptedRequest) -> Any:
        role = role_of(request)
        prompt = request.prompt
        with self._lock:
            self.prompts[role].append(prompt)
        asked = request.schema.__name__ if request.schema is not None else _asked_file(prompt)
        with self._lock:
            self.calls.append((role, asked))
        if request.schema is PRD:
            return self.prd
        if request.schema is SystemDesign:
            return self.design
        if request.schema is TaskPlan:
            return self.plan
        if request.schema is Arbitration:  # the script knows which side it made wrong
            wrong = "test" if self.wrong_test and "== 6" in prompt else "code"
            return {"wrong": wrong, "reason": f"the PRD says so ({wrong})"}
        if request.schema is ReviewReply:
            target = _reviewed_file(prompt)
            with self._lock:
                send_back = target in self.lbtm
                self.lbtm.discard(target)
            if send_back:
                return {"verdict": "LBTM", "comments": [f"{target} is wrong"]}
            return {"verdict": "LGTM", "comments": []}
        if self.crash_on and asked == self.crash_on:
            self.crash_on = None
            raise ScriptedFault(f"provider outage while writing {asked}")
        return self.code(asked, prompt)

    def code(self, asked: str, prompt: str) -> str:
        if f"Fix {asked}" in prompt and asked in self.fix_replies:
            return self.fix_replies[asked]
        if asked == "tests/test_calc.py":
            fixing = "itself is broken" in prompt
            test = TEST_CALC.replace("== 5", "== 6") if self.wrong_test and not fixing else TEST_CALC
            return f"Here are the tests:\n```python\n{test}```"
        if asked == "tests/test_main.py":  # only a request that spells its command line gets one
            return f"```python\n{TEST_MAIN_CLI}```"
        if asked == "tests/test_fmt.py":
            return f"```python\n{TEST_FMT}```"
        if asked == "calc.py":
            fixing = "Fix calc.py" in prompt
            if self.always_buggy or (self.buggy_until_fix and not fixing):
                return f"```python\n{BUGGY_CALC}```"
            return f"```python\n{GOOD_CALC}```"
        if asked == "fmt.py":
            return FORMAT
        if asked == "main.py":
            crash = self.crash_main_until_fix and "Fix main.py" not in prompt
            return f"```python\n{CRASHING_MAIN if crash else MAIN}```"
        if asked == "store.py":
            return "```python\nHISTORY = []\n```"
        return "```python\npass\n```"


def _asked_file(prompt: str) -> str:
    for marker in ("Write `", "Fix ", "Rewrite ", "Write tests/", "The test file "):
        if marker in prompt:
            tail = prompt.rsplit(marker, 1)[1]
            name = tail.split("`")[0] if marker == "Write `" else tail.split()[0]
            return ("tests/" + name.rstrip(":")) if marker == "Write tests/" else name.rstrip(":")
    return "?"


def _reviewed_file(prompt: str) -> str:
    return prompt.rsplit("Review ", 1)[1].split(":")[0] if "Review " in prompt else "?"
