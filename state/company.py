"""The checkpointed types of the software company graph (MetaGPT's SOP): its state, the documents its pool
stores and the jobs it hands to parallel workers. Every type here may sit in a checkpoint, so its module
path is part of the stored data (see sopgraph.state).

Every role publishes one kind of typed document into the pool. The documents a model fills (PRD,
SystemDesign, TaskPlan, Arbitration) are small and flat, and their validators are lenient about the usual
slips of a weak model (tools/lenient.py; "P0: ..." where an object was asked, a file name in backticks), so
a reply is repaired rather than re-asked whenever its meaning is clear. Documents the framework fills itself
(CodeFile, CodeReview, QAReport, Delivery) are plain records. How the documents read in a prompt or as
markdown lives beside the nodes that use them (nodes/company/common.py, nodes/company/markdown.py); reply
schemas that are never stored (ReviewReply) beside the prompt that asks for them.
"""

from __future__ import annotations

import operator
import re
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from typing_extensions import TypedDict

from sopgraph.state.pool import Document, PoolChannel
from sopgraph.state.usage import UsageChannel, UsageTotals
from sopgraph.tools.lenient import LIST_LIMIT, Items, Text, drop_echoes, flatten, mermaid, split_lines, string_list
from sopgraph.tools.sandbox import NO_TESTS_COLLECTED
from sopgraph.tools.workspace import WorkspaceError, clean_path, validate_path

# Message kinds (MetaGPT's cause_by): what each role publishes and the others watch.
USER_REQUIREMENT = "user_requirement"
EXISTING_PRD = "existing_prd"
EXISTING_DESIGN = "existing_design"
EXISTING_TASKS = "existing_tasks"
EXISTING_CODE = "existing_code"
EXISTING_DOC = "existing_doc"
"""A file of the repository being updated that no role reads (README, rendered docs): kept as it was."""
WRITE_PRD = "write_prd"
WRITE_DESIGN = "write_design"
WRITE_TASKS = "write_tasks"
WRITE_CODE = "write_code"
REVIEW_CODE = "review_code"
WRITE_TEST = "write_test"
RUN_TESTS = "run_tests"
HUMAN_REVIEW = "human_review"
ARBITRATE = "arbitrate"
DELIVER = "deliver"

TESTS_DIR = "tests"
"""Where QA writes the project's tests (and where the test run looks for them)."""
RESERVED_PREFIXES = ("docs/", f"{TESTS_DIR}/")
RESERVED_FILES = ("README.md", "conftest.py")
"""Paths the framework writes itself (documents, QA's tests, the README): never code files."""


# -- documents the models write ----------------------------------------------------------------------------


def normalize_file_name(raw: Any) -> str:
    """A model's file name made regular: cleaned, `.py` added to a bare name, `-` made `_` in a module."""
    name = clean_path(raw)
    if name and not PurePosixPath(name).suffix and not name.endswith("/"):
        name += ".py"
    if name.endswith(".py"):
        parts = name.split("/")
        parts[-1] = parts[-1].replace("-", "_").replace(" ", "_")
        name = "/".join(parts)
    return name


def check_code_path(name: str) -> str:
    """A validated code file name, or WorkspaceError (also for paths the framework reserves)."""
    path = validate_path(name)
    if path in RESERVED_FILES or path.startswith(RESERVED_PREFIXES):
        raise WorkspaceError(f"{path!r}: reserved for the framework (docs, tests and README are written by others)")
    return path


class ModelDocument(Document):
    """A document a model fills in: extra keys are ignored and echoed field descriptions dropped."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _no_echoes(cls, data: Any) -> Any:
        return drop_echoes(cls, data)


class Priority(StrEnum):
    P0 = "P0"
    P1 = "P1"
    P2 = "P2"


PRIORITIES = frozenset(p.value for p in Priority)


_PRIORITY_WORDS = {"high": "P0", "must": "P0", "medium": "P1", "should": "P1", "low": "P2", "nice": "P2"}


class Requirement(BaseModel):
    """One entry of the requirement pool."""

    model_config = ConfigDict(extra="ignore")

    priority: Priority = Field(description="P0 must have, P1 should have, P2 nice to have.")
    text: Text = Field(description="The requirement, one sentence.", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, data: Any) -> Any:
        if isinstance(data, str):
            match = re.match(r"^\s*\[?(P[0-2]|high|medium|low)\b\]?\s*[:\-)]?\s*(.*)$", data, re.IGNORECASE)
            if match:
                return {"priority": match.group(1), "text": match.group(2) or data}
            return {"priority": "P1", "text": data}
        if isinstance(data, (list, tuple)) and len(data) == 2:
            first, second = data
            return (
                {"priority": first, "text": second}
                if str(first).upper() in PRIORITIES
                else {
                    "priority": second,
                    "text": first,
                }
            )
        if isinstance(data, dict):
            data = dict(data)
            for alias in ("requirement", "description", "name", "item"):
                if "text" not in data and alias in data:
                    data["text"] = data.pop(alias)
            data.setdefault("priority", "P1")
        return data

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        text = str(value).strip().upper()
        if text in {"0", "1", "2"}:
            return f"P{text}"
        if text in PRIORITIES or not text:
            return text
        return _PRIORITY_WORDS.get(text.lower().split()[0], text)


class PRD(ModelDocument):
    """Product requirement document for a small Python program."""

    project_name: Text = Field(
        description="Short snake_case name of this product, taken from the requirement.", min_length=1
    )
    product_goals: Items = Field(description="Up to 3 goals.", min_length=1)
    user_stories: Items = Field(description="Up to 5 stories: 'As a user, I want ... so that ...'.", min_length=1)
    competitive_analysis: Items = Field(default_factory=list, description="Up to 3 similar products, one line each.")
    requirements: list[Requirement] = Field(
        description="Requirement pool: up to 6 items with priority P0/P1/P2.", min_length=1
    )
    ui_notes: Text = Field(default="", description="How the user interacts with it (command line, screens).")
    open_questions: Items = Field(default_factory=list, description="What is still unclear.")

    @field_validator("project_name", mode="after")
    @classmethod
    def _snake(cls, value: str) -> str:
        name = re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")[:40]
        if not name:
            raise ValueError("project_name needs letters or digits")
        return name if name[0].isalpha() else f"p_{name}"

    @field_validator("requirements", mode="before")
    @classmethod
    def _requirements(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = split_lines(value)
        if isinstance(value, dict):
            value = [{"priority": k, "text": v} if str(k).upper() in PRIORITIES else v for k, v in value.items()]
        return list(value)[:LIST_LIMIT] if isinstance(value, (list, tuple)) else value


class SystemDesign(ModelDocument):
    """System design of the program: approach, files, class diagram, call flow."""

    implementation_approach: Text = Field(description="How to build it, two or three sentences.", min_length=1)
    file_list: Annotated[list[str], BeforeValidator(string_list(limit=24))] = Field(
        description=(
            "Python files to write, named after what they do in this product, main.py first; at most 5; no tests."
        ),
        min_length=1,
    )
    data_structures: Annotated[str, BeforeValidator(mermaid("classDiagram"))] = Field(
        default="classDiagram", description="Mermaid classDiagram of the classes and their methods."
    )
    call_flow: Annotated[str, BeforeValidator(mermaid("sequenceDiagram"))] = Field(
        default="sequenceDiagram", description="Mermaid sequenceDiagram of the main call flow."
    )

    _rejected: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _keep_usable(self) -> SystemDesign:
        # Unusable names are dropped and remembered (the node records them as warnings); only a list with
        # no usable name at all is sent back to the model.
        kept, problems = usable_files(self.file_list)
        if not kept:
            raise ValueError("no usable file name in file_list: " + "; ".join(problems or ["the list is empty"]))
        self.file_list = kept
        self._rejected = problems
        return self

    @property
    def rejected(self) -> list[str]:
        """Why file names were dropped while validating (not persisted: read it right after the call)."""
        return list(self._rejected)


def usable_files(names: list[str]) -> tuple[list[str], list[str]]:
    """(valid distinct code file names in order, one line per rejected name)."""
    kept: list[str] = []
    problems: list[str] = []
    for raw in names:
        name = normalize_file_name(raw)
        try:
            path = check_code_path(name)
        except WorkspaceError as exc:
            problems.append(f"file name rejected: {exc}")
            continue
        if path not in kept:
            kept.append(path)
    return kept, problems


class FileTask(BaseModel):
    """Logic analysis of one file."""

    model_config = ConfigDict(extra="ignore")

    file: Annotated[str, BeforeValidator(normalize_file_name)] = Field(description="File name from the design.")
    description: Text = Field(default="", description="What this file contains: classes and functions.")
    depends_on: Items = Field(default_factory=list, description="Files of the project this file imports.")

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, data: Any) -> Any:
        if isinstance(data, str):
            name, _, rest = data.partition(":")
            return {"file": name, "description": rest.strip()}
        if isinstance(data, (list, tuple)) and data:
            return {"file": data[0], "description": flatten(list(data[1:]))}
        if isinstance(data, dict):
            data = dict(data)
            for key, aliases in (
                ("file", ("path", "filename", "file_name", "name")),
                ("description", ("logic", "analysis", "desc", "content", "details")),
                ("depends_on", ("dependencies", "deps", "imports", "requires")),
            ):
                for alias in aliases:
                    if key not in data and alias in data:
                        data[key] = data.pop(alias)
        return data

    @field_validator("depends_on", mode="after")
    @classmethod
    def _dep_names(cls, value: list[str]) -> list[str]:
        return [normalize_file_name(v) for v in value]


class TaskPlan(ModelDocument):
    """Task plan: per-file logic analysis and the order to write the files in."""

    required_packages: Items = Field(default_factory=list, description="Third-party packages; usually none.")
    logic_analysis: list[FileTask] = Field(description="One entry per file.", min_length=1)
    task_list: Items = Field(description="All files, each after the files it imports.", min_length=1)
    shared_knowledge: Text = Field(default="", description="Conventions all files share.")

    @field_validator("logic_analysis", mode="before")
    @classmethod
    def _analysis(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = split_lines(value)
        if isinstance(value, dict):
            value = [{"file": k, "description": v} for k, v in value.items()]
        return list(value)[:LIST_LIMIT] if isinstance(value, (list, tuple)) else value

    @field_validator("task_list", mode="after")
    @classmethod
    def _task_names(cls, value: list[str]) -> list[str]:
        return [normalize_file_name(v) for v in value]

    def task_for(self, path: str) -> FileTask | None:
        return next((t for t in self.logic_analysis if t.file == path), None)


class Arbitration(ModelDocument):
    """Which side of a failing test contradicts the request and the PRD: the test's expectation, the code's
    behaviour, or both at once (then the test goes to QA and the code to the engineer in the same round)."""

    wrong: Literal["code", "test", "both"] = Field(
        description="'test' if the test expects something the request does not ask for (an exact output format "
        "it does not give, a message it never mentions); 'code' if the code does not do what the request asks; "
        "'both' if the test expects something not asked AND the code also fails something that is asked."
    )
    reason: Text = Field(default="", description="One sentence, citing the request or the PRD.")

    @field_validator("wrong", mode="before")
    @classmethod
    def _side(cls, value: Any) -> Any:
        text = str(value).strip().lower()
        if "both" in text:
            return "both"
        blames_code = any(word in text for word in ("code", "program", "implementation", "module"))
        if "test" in text:
            return "both" if blames_code and " and " in text else "test"
        if blames_code:
            return "code"
        return text


# -- documents the framework writes ----------------------------------------------------------------------


class UserRequirement(Document):
    """What the user asks for in this run (and, for an update, what earlier runs asked)."""

    text: str
    history: list[str] = Field(default_factory=list)
    """Earlier requirements of the repository being updated, oldest first."""


class CodeFile(Document):
    """One version of a generated file (code or test)."""

    path: str
    content: str
    version: int = 1
    """1 for the first write in this run, +1 per rewrite (review send-back or debug fix)."""
    note: str = ""
    """Why this version was written."""

    @property
    def lines(self) -> int:
        return len(self.content.splitlines())


class CodeReview(Document):
    """The review of one version of one file."""

    path: str
    version: int
    verdict: Literal["LGTM", "LBTM"]
    comments: list[str] = Field(default_factory=list)


NO_TESTS = "no tests to run"
"""QAReport.note of a run that found no test file."""
NO_REPORT = "pytest wrote no report"
"""QAReport.note of a run whose pytest left no JUnit report."""


class QAReport(Document):
    """What one sandboxed test run showed."""

    attempt: int
    """1 for the first run, +1 after each debug fix."""
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    all_passed: bool = False
    exit_code: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    summary: str = ""
    """The sandbox's brief for a model: counts and trimmed failing assertions."""
    suspects: list[str] = Field(default_factory=list)
    """Files the failures point at, which the engineer rewrites."""
    test_files: list[str] = Field(default_factory=list)
    failures: list[str] = Field(default_factory=list)
    """`test: message` of each failing test, to tell whether a fix changed anything."""
    failing_tests: list[str] = Field(default_factory=list)
    """Test files with failing tests."""
    note: str = ""
    problems: list[str] = Field(default_factory=list)
    """What stops the program before any test: static guards (test code in a program module, a self-import,
    a name imported that does not exist, a package outside the standard library) and imports that fail."""
    starts: bool | None = None
    """Whether the entry point starts in the sandbox (`--help`, then no arguments, stdin closed)."""
    start: str = ""
    """What the start check saw."""
    test_problems: list[str] = Field(default_factory=list)
    """What is wrong with the tests themselves before they run (a name imported from the program that it
    does not define, a module that does not exist): QA fixes these, the program is not blamed."""

    @property
    def ran_tests(self) -> bool:
        return self.passed + self.failed + self.errors > 0

    @property
    def program_ok(self) -> bool:
        return not self.problems and self.starts is not False

    @property
    def nothing_to_test(self) -> bool:
        """No test file, or pytest collected no test: nothing a fix could make pass."""
        return self.note == NO_TESTS or self.exit_code == NO_TESTS_COLLECTED

    @property
    def score(self) -> int:
        """Tests passed, plus one for a program that holds together and starts: what a fix must not lower."""
        return self.passed + (1 if self.program_ok else 0)


class HumanDecision(Document):
    """A human reviewer's answer at a review point."""

    stage: str
    action: Literal["approve", "edit"]
    changed: list[str] = Field(default_factory=list)


class Delivery(Document):
    """The closing report of a run."""

    outcome: Literal["passed", "gave_up", "no_tests"]
    attempts: int = 0
    passed_on_attempt: int | None = None
    files: list[str] = Field(default_factory=list)
    tests: list[str] = Field(default_factory=list)
    lines: int = 0
    out_dir: str = ""
    incremental: bool = False
    warnings: list[str] = Field(default_factory=list)

    def headline(self) -> str:
        if self.outcome == "passed":
            return f"tests passed on attempt {self.passed_on_attempt} of {self.attempts}"
        if self.outcome == "gave_up":
            return f"gave up: tests still failing after {self.attempts} attempts"
        return "no tests ran"


# -- jobs handed to parallel workers (Send) ------------------------------------------------------------


class FileJob(BaseModel):
    """One model call a dispatcher hands to a worker: the prompt is already bounded to what the role watches."""

    path: str
    out_dir: str
    version: int = 1
    prompt: str
    note: str = ""
    subject: str = ""
    """For a test file: the module it tests (its imports are completed from that module's code)."""
    subject_code: str = ""
    spent: UsageTotals = Field(default_factory=UsageTotals)
    """Usage so far, for the worker's budget check (a worker does not receive the whole ledger)."""


class JobInput(TypedDict):
    job: FileJob


# -- graph state --------------------------------------------------------------------------------------------


class CompanyState(TypedDict, total=False):
    idea: str
    """The requirement: a new product idea, or a change to an existing generated repository."""
    out_dir: str
    """Where the repository is written; resolved to an absolute path by the intake node."""
    review: list[str]
    """Human review points: any of `prd`, `design`."""
    max_debug: int
    """Engineer fix rounds allowed after a failing test run (test runs <= max_debug + 1)."""
    max_files: int
    """Cap on the design's file list."""
    one_file: bool | None
    """One file (the entry module) holds the whole program: True always, False never, None (unset) for a
    small idea, one that spells its command line (nodes/company/request.py, the architect's rule)."""
    max_review_rounds: int
    """How many times code review may send a file back (0: no review)."""
    parallel: bool
    """Write independent files (and reviews, tests) in parallel."""
    incremental: bool | None
    """True: update the repository in out_dir; None: decide by whether out_dir holds one."""
    test_timeout_s: float
    """Wall-clock limit of one sandboxed test run."""
    warnings: Annotated[list[str], operator.add]
    """Things dropped or repaired on the way (rejected file names, unparsable code...)."""
    outcome: str
    """One line, set by the delivery node."""
    repository: dict[str, str]
    """The delivered repository, path -> text (what the delivery node wrote to out_dir), so that a client
    of the LangGraph API gets the files with the final state."""
    pool: PoolChannel
    usage: UsageChannel
