"""The repository on disk: intake (new or existing project), documents as markdown, and delivery.

The pool is the source of truth; the disk is a rendering of it. Everything written here is a pure
function of documents already in the pool, so a node re-run after a crash writes the same bytes.
`docs/sopgraph.json` keeps the documents machine-readable, which is what lets a later run update the
repository incrementally.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from langgraph.config import get_config
from langgraph.runtime import Runtime
from pydantic import ValidationError

from sopgraph.nodes.company import coverage, diagrams
from sopgraph.nodes.company.common import every, latest, latest_files
from sopgraph.nodes.company.markdown import design_markdown, prd_markdown, tasks_markdown
from sopgraph.state.company import (
    DELIVER,
    EXISTING_CODE,
    EXISTING_DESIGN,
    EXISTING_DOC,
    EXISTING_PRD,
    EXISTING_TASKS,
    PRD,
    RUN_TESTS,
    TESTS_DIR,
    USER_REQUIREMENT,
    WRITE_CODE,
    WRITE_DESIGN,
    WRITE_PRD,
    WRITE_TASKS,
    WRITE_TEST,
    CodeFile,
    CompanyState,
    Delivery,
    QAReport,
    SystemDesign,
    TaskPlan,
    UserRequirement,
)
from sopgraph.state.context import Context
from sopgraph.state.pool import Document, Message, Pool, Subscription
from sopgraph.tools.workspace import Workspace, WorkspaceError

# Where the rendered documents go (a human review point points at the PRD's and the design's).
PRD_DOC = "docs/prd.md"
DESIGN_DOC = "docs/design.md"
TASKS_DOC = "docs/tasks.md"
TEST_REPORT_DOC = "docs/test_report.md"
MANIFEST = "docs/sopgraph.json"
MANIFEST_FORMAT = 1
DEFAULT_ROOT = Path(".sopgraph") / "workspaces"
SENDER = "company"
EXISTING_DOCS = ("README.md", PRD_DOC, DESIGN_DOC, TASKS_DOC, TEST_REPORT_DOC, MANIFEST)
EVERYTHING = Subscription(all_kinds=True, own=True)


def default_out_dir(thread_id: str) -> Path:
    return DEFAULT_ROOT / thread_id


def _thread_id() -> str:
    try:
        return str(get_config()["configurable"]["thread_id"])
    except (RuntimeError, KeyError):
        return f"company-{uuid.uuid4().hex[:10]}"


def load_manifest(root: str | Path) -> dict[str, Any] | None:
    """The documents of a repository an earlier run generated, or None if it is not one."""
    text = Workspace(root).read(MANIFEST, max_bytes=2 * 1024 * 1024)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


def intake(state: CompanyState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Publish the requirement; for an update, also what the repository already holds."""
    ws = Workspace(state.get("out_dir") or default_out_dir(_thread_id()))
    manifest = load_manifest(ws.root)
    incremental = state.get("incremental")
    warnings: list[str] = []
    if incremental is None:  # company_input decides up front; here only for input that did not say
        incremental = manifest is not None and bool(state.get("out_dir"))
    elif incremental and manifest is None:
        warnings.append(f"no {MANIFEST} in {ws.root}: not a generated repository, starting a new project")
        incremental = False
    history = [str(r) for r in (manifest or {}).get("requirements", [])] if incremental else []
    messages = [
        Message(
            sender="user",
            kind=USER_REQUIREMENT,
            content=state["idea"],
            payload=UserRequirement(text=state["idea"], history=history),
        )
    ]
    if incremental and manifest is not None:
        messages += _existing(ws, manifest, warnings)
    ws.ensure()
    return {"out_dir": str(ws.root), "incremental": incremental, "pool": messages, "warnings": warnings}


def _existing(ws: Workspace, manifest: dict[str, Any], warnings: list[str]) -> list[Message]:
    out: list[Message] = []
    for key, kind, cls in (
        ("prd", EXISTING_PRD, PRD),
        ("design", EXISTING_DESIGN, SystemDesign),
        ("tasks", EXISTING_TASKS, TaskPlan),
    ):
        raw = manifest.get(key)
        if raw is None:
            continue
        try:
            doc: Document = cls.model_validate(raw)
        except ValidationError as exc:
            warnings.append(f"existing {key} in {MANIFEST} is invalid, ignored: {exc.error_count()} errors")
            continue
        out.append(Message(sender="repository", kind=kind, content=f"existing {key}", payload=doc))
    for path in [*manifest.get("files", []), *manifest.get("tests", [])]:
        try:
            content = ws.read(str(path))
        except WorkspaceError:
            content = None
        if content is None:
            warnings.append(f"existing file {path!r} is missing or unreadable, ignored")
            continue
        doc = CodeFile(path=str(path), content=content, version=0, note="existing")
        out.append(Message(sender="repository", kind=EXISTING_CODE, content=f"existing {path}", payload=doc))
    for path in EXISTING_DOCS:  # kept byte for byte unless this run writes a new version
        content = ws.read(path, max_bytes=2 * 1024 * 1024)
        if content is not None:
            doc = CodeFile(path=path, content=content, version=0, note="existing")
            out.append(Message(sender="repository", kind=EXISTING_DOC, content=f"existing {path}", payload=doc))
    return out


def target_dir(state: CompanyState, runtime: Runtime[Context] | None) -> str:
    """Where this run writes: the run context's directory (a replay's or fork's own), else the state's."""
    context = getattr(runtime, "context", None)
    return str(getattr(context, "out_dir", None) or state["out_dir"])


def write_docs(state: CompanyState, runtime: Runtime[Context] | None, new: list[Message] | None = None) -> list[str]:
    """Materialise the repository of the state that `new` messages lead to (a node's output checkpoint)."""
    pool = [*Pool(state.get("pool")).messages, *(new or [])]
    return materialize({**state, "pool": pool}, target_dir(state, runtime))


def materialize(values: Mapping[str, Any], out_dir: str | None = None) -> list[str]:
    """Make the directory hold exactly the files of these checkpointed values; returns warnings (backups).

    Called by the nodes that change what the repository holds, and by the runner when it resumes, replays
    or forks a run, so that the directory always shows the checkpoint the run stands on.
    """
    out_dir = out_dir or values.get("out_dir")
    if not out_dir:
        return []
    report = Workspace(out_dir).sync(render(values))
    return [f"kept a copy of a file edited outside sopgraph: {path}" for path in report.backed_up]


def render(values: Mapping[str, Any]) -> dict[str, str]:
    """The repository (path -> text) that the pool of these values describes: a pure function of it."""
    seen = Pool(values.get("pool")).view(SENDER, EVERYTHING)
    request = latest(seen, UserRequirement, [USER_REQUIREMENT])
    prd = latest(seen, PRD, [WRITE_PRD])
    design = latest(seen, SystemDesign, [WRITE_DESIGN])
    tasks = latest(seen, TaskPlan, [WRITE_TASKS])
    files: dict[str, str] = {d.path: d.content for d in latest_files(seen, [EXISTING_DOC]).values()}
    code = {p: d.content for p, d in latest_files(seen, [EXISTING_CODE, WRITE_CODE, WRITE_TEST]).items()}
    files.update(code)
    if design is not None:
        design, _ = _with_diagrams(design, {p: c for p, c in code.items() if not p.startswith(f"{TESTS_DIR}/")})
    if prd is not None:
        files[PRD_DOC] = prd_markdown(prd, request.text if request else "")
    if design is not None:
        files[DESIGN_DOC] = design_markdown(design)
    if tasks is not None:
        files[TASKS_DOC] = tasks_markdown(tasks)
    delivery = latest(seen, Delivery, [DELIVER])
    if delivery is not None:
        reports = every(seen, QAReport, [RUN_TESTS])
        history = [*(request.history if request else []), *([request.text] if request else [])]
        files[TEST_REPORT_DOC] = report_markdown(reports, delivery)
        prd = prd or latest(seen, PRD, [EXISTING_PRD])
        design = design or latest(seen, SystemDesign, [EXISTING_DESIGN])
        tasks = tasks or latest(seen, TaskPlan, [EXISTING_TASKS])
        manifest = {
            "format": MANIFEST_FORMAT,
            "requirements": history,
            "prd": prd.model_dump(mode="json") if prd else None,
            "design": design.model_dump(mode="json") if design else None,
            "tasks": tasks.model_dump(mode="json") if tasks else None,
            "files": delivery.files,
            "tests": delivery.tests,
            "outcome": delivery.headline(),
        }
        files[MANIFEST] = json.dumps(manifest, indent=2) + "\n"
        files["README.md"] = readme(prd, design, delivery, history)
    return files


def deliver(state: CompanyState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Write the finished repository (docs, code, tests, README, manifest) and the closing report."""
    seen = Pool(state.get("pool")).view(SENDER, EVERYTHING)
    design = latest(seen, SystemDesign, [WRITE_DESIGN])
    old_code = latest_files(seen, [EXISTING_CODE])
    code = latest_files(seen, [WRITE_CODE])
    tests = latest_files(seen, [WRITE_TEST])
    reports = every(seen, QAReport, [RUN_TESTS])
    notes: list[str] = []
    if design is not None:
        _, notes = _with_diagrams(design, {p: d.content for p, d in code.items()})
    request = latest(seen, UserRequirement, [USER_REQUIREMENT])
    tasks = latest(seen, TaskPlan, [WRITE_TASKS])
    terms = coverage.idea_terms(request.text) if request else []
    for what, text in (("task plan", tasks_markdown(tasks) if tasks else None), ("code", _joined(code))):
        if text is not None and (missing := coverage.missing_terms(terms, text)):
            notes.append(coverage.coverage_note(what, missing))

    last = reports[-1] if reports else None
    passed_on = next((r.attempt for r in reports if r.all_passed), None)
    outcome: Literal["passed", "gave_up", "no_tests"]
    if passed_on is not None:
        outcome = "passed"
    elif last is None or not last.ran_tests:
        outcome = "no_tests"
    else:
        outcome = "gave_up"
    kept = [p for p in old_code if not p.startswith(f"{TESTS_DIR}/")]  # an update keeps files it did not touch
    files = list(dict.fromkeys([*(design.file_list if design else []), *code, *kept]))
    test_files = sorted({*tests, *(p for p in old_code if p.startswith(f"{TESTS_DIR}/"))})
    every_file = {**old_code, **code, **tests}
    lines = sum(every_file[p].lines for p in [*files, *test_files] if p in every_file)
    delivery = Delivery(
        outcome=outcome,
        attempts=len(reports),
        passed_on_attempt=passed_on,
        files=files,
        tests=test_files,
        lines=lines,
        out_dir=str(Workspace(target_dir(state, runtime)).root),
        incremental=bool(state.get("incremental")),
        warnings=[*(state.get("warnings") or []), *notes],
    )
    message = Message(sender=SENDER, kind=DELIVER, content=delivery.headline(), payload=delivery)
    backups = write_docs(state, runtime, [message])
    repository = render({**state, "pool": [*Pool(state.get("pool")).messages, message]})
    return {"pool": [message], "outcome": delivery.headline(), "warnings": [*notes, *backups], "repository": repository}


def _joined(files: dict[str, CodeFile]) -> str | None:
    return "\n".join(d.content for p, d in files.items() if not p.startswith(f"{TESTS_DIR}/")) if files else None


def entry_module(files: list[str]) -> str | None:
    entry = next((f for f in files if f.rsplit("/", 1)[-1] in ("main.py", "app.py", "cli.py", "__main__.py")), None)
    return entry or next((f for f in files if f.endswith(".py")), None)


def _with_diagrams(design: SystemDesign, code: dict[str, str]) -> tuple[SystemDesign, list[str]]:
    """The design, with any empty diagram read off the code instead (the architect's may come back empty)."""
    update: dict[str, str] = {}
    notes: list[str] = []
    if diagrams.is_empty(design.data_structures) and not diagrams.is_empty(derived := diagrams.class_diagram(code)):
        update["data_structures"] = derived
        notes.append("design: the class diagram was empty; docs/design.md shows one read off the code")
    entry = entry_module(design.file_list)
    if diagrams.is_empty(design.call_flow) and not diagrams.is_empty(flow := diagrams.call_flow(code, entry)):
        update["call_flow"] = flow
        notes.append("design: the call flow was empty; docs/design.md shows one read off the code")
    return (design.model_copy(update=update), notes) if update else (design, notes)


def report_markdown(reports: list[QAReport], delivery: Delivery) -> str:
    out = ["# Test report", "", f"**{delivery.headline()}**", ""]
    if reports:
        out += ["| attempt | passed | failed | errors | seconds | result |", "|---|---|---|---|---|---|"]
        for r in reports:
            result = "pass" if r.all_passed else (r.note or "fail")
            out.append(f"| {r.attempt} | {r.passed} | {r.failed} | {r.errors} | {r.duration_s:.1f} | {result} |")
        last = reports[-1]
        if last.summary and not last.all_passed:
            out += ["", "## Last failure", "", "```", last.summary, "```"]
    out.append("")
    return "\n".join(out)


def usage(prd: PRD, history: list[str], entry: str | None) -> list[str]:
    """How to use each user story: the commands the requirement and the PRD's UI notes name (`...`) that share
    a word with the story, else the program's own help."""
    commands = list(dict.fromkeys(re.findall(r"`([^`\n]{1,80})`", "\n".join([*history, prd.ui_notes]))))
    lines: list[str] = []
    for story in prd.user_stories:
        words = coverage.idea_terms(story)
        shown = [c for c in commands if words and len(coverage.missing_terms(words, c)) < len(words)]
        if not shown and entry:
            shown = [f"python {entry} --help"]
        lines.append(f"- {story}" + ("".join(f"\n  - `{c}`" for c in shown[:3])))
    return lines


def readme(prd: PRD | None, design: SystemDesign | None, delivery: Delivery, history: list[str]) -> str:
    name = prd.project_name if prd else "project"
    files = design.file_list if design else delivery.files
    entry = entry_module(files)
    out = [f"# {name}", ""]
    if history:
        out += ["Built from these requirements:", "", *[f"- {h}" for h in history], ""]
    if prd:
        out += ["## Goals", "", *[f"- {g}" for g in prd.product_goals], ""]
    out += ["## Files", "", *[f"- `{f}`" for f in files], ""]
    if entry:
        out += ["## Run", "", "```", f"python {entry}", "```", ""]
    if prd and prd.user_stories:
        out += ["## Use", "", *usage(prd, history, entry), ""]
    out += ["## Test", "", "```", "python -m pytest tests", "```", "", f"Status: {delivery.headline()}.", ""]
    out += ["Documents: [PRD](docs/prd.md), [design](docs/design.md), [tasks](docs/tasks.md), "]
    out[-1] += "[test report](docs/test_report.md). Generated by sopgraph's software company graph."
    out.append("")
    return "\n".join(out)
