"""What every company role shares: its profile and subscription, pool look-ups, and code replies.

A role reads the pool only through `Role.view` (its subscription), so what a prompt can contain is decided
by what the role watches. Code is asked for as plain text (a weak model writes code far better than it
escapes code into JSON) and only ever parsed here (`ast.parse`), never run: running is the sandbox's job.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.types import Send

from sopgraph.nodes.llm import ModelGateway
from sopgraph.nodes.progress import emit
from sopgraph.state.company import (
    PRD,
    USER_REQUIREMENT,
    CodeFile,
    FileJob,
    JobInput,
    SystemDesign,
    TaskPlan,
    UserRequirement,
)
from sopgraph.state.context import Context
from sopgraph.state.limits import MAX_GENERATED_CHARS
from sopgraph.state.pool import Document, Message, Pool, Subscription
from sopgraph.state.usage import UsageTotals
from sopgraph.tools.workspace import Workspace, module_name

D = TypeVar("D", bound=Document)

ENTRY_STEMS = frozenset({"main", "app", "cli", "run", "__main__"})
"""Modules that start the program: they import the others, and are not unit-tested on their own."""


ENGINEER = "engineer"
"""The engineer's role name: review verdicts, test runs and arbitrations are addressed to it."""

UNTOUCHED = "unchanged: the new requirement does not touch its task"
"""The note of a file an incremental run keeps as it was (no model call)."""


@dataclass(frozen=True)
class Role:
    """A company role: who it is, what it is for, what it must not do, and what it watches."""

    name: str
    profile: str
    goal: str
    constraints: str
    watches: Subscription

    @property
    def system(self) -> str:
        return f"You are {self.profile}. Your goal: {self.goal}. Constraints: {self.constraints}."

    def view(self, state: Any) -> list[Message]:
        return Pool(state.get("pool")).view(self.name, self.watches)

    def gateway(self, state: Any, runtime: Any) -> ModelGateway:
        return ModelGateway.for_node(state, runtime, self.name)

    def worker_gateway(self, runtime: Any, job: FileJob) -> ModelGateway:
        """A gateway for a Send worker, which gets the usage so far in its job instead of the ledger."""
        ctx = getattr(runtime, "context", None) or Context()
        return ModelGateway(ctx, self.name, job.spent)

    def say(self, kind: str, content: str, payload: Document | None = None, to: Sequence[str] = ()) -> Message:
        """A message from this role (to everyone, or to the roles named in `to`)."""
        return Message(sender=self.name, kind=kind, content=content, payload=payload, send_to=tuple(to))

    def dispatch(self, state: Any, runtime: Any, worker: str, jobs: Sequence[FileJob]) -> list[Send]:
        """One Send per job to `worker` (only the first job when the run is not parallel). The budget is
        checked here, once: workers then never pause in parallel (one resume answers one pause)."""
        if not state.get("parallel", True):
            jobs = jobs[:1]
        self.gateway(state, runtime).check_budget()
        so_far = spent(state)
        return [Send(worker, {"job": job.model_copy(update={"spent": so_far})}) for job in jobs]


def clip(text: str, limit: int) -> str:
    """Bound a piece of a prompt; a weak model with an 8k context cannot take whole documents."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 20)].rstrip() + "\n...[truncated]"


def prd_brief(prd: PRD) -> str:
    """The PRD as compact text for a prompt."""
    lines = [f"Project: {prd.project_name}", "Goals:", *[f"- {g}" for g in prd.product_goals]]
    lines += ["User stories:", *[f"- {s}" for s in prd.user_stories]]
    lines += ["Requirements:", *[f"- [{r.priority}] {r.text}" for r in prd.requirements]]
    if prd.ui_notes:
        lines.append(f"UI: {prd.ui_notes}")
    return "\n".join(lines)


def design_brief(design: SystemDesign, diagrams: bool = True, limit: int = 1500) -> str:
    """The design as compact text for a prompt: approach, files and (clipped) the class diagram."""
    lines = [f"Approach: {design.implementation_approach}", f"Files: {', '.join(design.file_list)}"]
    if diagrams:
        lines.append(f"Classes:\n{clip(design.data_structures, limit)}")
    return "\n".join(lines)


def tasks_brief(plan: TaskPlan) -> str:
    """The task plan as compact text for a prompt: one line per file."""
    lines = [f"- {t.file}: {t.description}" for t in plan.logic_analysis]
    if plan.shared_knowledge:
        lines.append(f"Shared knowledge: {plan.shared_knowledge}")
    return "\n".join(lines)


def spent(state: Any) -> UsageTotals:
    return UsageTotals.of(state.get("usage") or [])


def latest(messages: Iterable[Message], cls: type[D], kinds: Sequence[str] | None = None) -> D | None:
    """The newest payload of a document class (optionally only from some message kinds)."""
    found: D | None = None
    for message in messages:
        if isinstance(message.payload, cls) and (kinds is None or message.kind in kinds):
            found = message.payload
    return found


IDEA = Subscription(kinds=frozenset({USER_REQUIREMENT}))
"""The user's own words, which roles read beside their subscription (a small model's documents lose them)."""


def idea_of(state: Any, reader: str) -> str:
    """The newest user requirement's text, as `reader` sees it in the pool ("" when there is none)."""
    request = latest(Pool(state.get("pool")).view(reader, IDEA), UserRequirement, [USER_REQUIREMENT])
    return request.text if request else ""


def every(messages: Iterable[Message], cls: type[D], kinds: Sequence[str] | None = None) -> list[D]:
    return [m.payload for m in messages if isinstance(m.payload, cls) and (kinds is None or m.kind in kinds)]


def latest_files(messages: Iterable[Message], kinds: Sequence[str]) -> dict[str, CodeFile]:
    """Path -> newest version of each file published under the given kinds."""
    files: dict[str, CodeFile] = {}
    for doc in every(messages, CodeFile, kinds):
        files[doc.path] = doc
    return files


def workspace(state: Any) -> Workspace:
    return Workspace(state["out_dir"])


def stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def fence(path: str, text: str, limit: int) -> str:
    """A file for a prompt, clipped, in a fence tagged with its language."""
    lang = "python" if path.endswith(".py") else ""
    return f"--- {path} ---\n```{lang}\n{clip(text, limit).rstrip()}\n```"


# -- code replies -----------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(reply: str) -> str:
    """The code in a reply: the fenced block (the longest python one if several), else the whole text."""
    reply = reply[:MAX_GENERATED_CHARS]  # bounded before parsing or storing
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(reply)]
    if blocks:
        python = [body for lang, body in blocks if lang in ("python", "py", "python3")]
        body = max(python or [body for _, body in blocks], key=len)
    else:
        body = reply
    return body.strip("\n").rstrip() + "\n" if body.strip() else ""


def syntax_problem(path: str, code: str) -> str | None:
    """Why a .py file cannot be parsed (parsed only, never run), or None."""
    if not path.endswith(".py"):
        return None
    if not code.strip():
        return "the reply held no code"
    try:
        ast.parse(code, filename=path)
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"{type(exc).__name__}: cannot parse"
    return None


_KEYWORD_START = re.compile(
    r"^(def|class|if|elif|else|for|while|with|try|except|finally|import|from|return|async|@|#|\"\"\"|''')"
)


def _is_prose(line: str) -> bool:
    text = line.strip()
    if not text:
        return True
    if line[0].isspace() or _KEYWORD_START.match(text):
        return False
    try:
        ast.parse(text)
    except SyntaxError:
        return True
    return False


def _trim_prose(path: str, code: str) -> str:
    """Drop chatter a model wrote around unfenced code ("Here is the code:"), if that makes it parse."""
    if syntax_problem(path, code) is None:
        return code
    lines = code.splitlines()
    head = 0
    while head < len(lines) and _is_prose(lines[head]):
        head += 1
    tail = len(lines)
    while tail > head and _is_prose(lines[tail - 1]):
        tail -= 1
    candidate = "\n".join(lines[head:tail]).strip("\n") + "\n"
    if candidate.strip() and syntax_problem(path, candidate) is None:
        return candidate
    return code


def code_from_reply(path: str, reply: str) -> str:
    """The file's code in a model reply: the fenced block, without chatter around unfenced code."""
    return _trim_prose(path, extract_code(reply))


def generate_file(llm: ModelGateway, prompt: str, path: str, system: str) -> tuple[str, list[str]]:
    """Ask for one file as text; on unparsable Python re-ask once (budget permitting), then keep the best.

    Returns the code and warnings. Never raises on bad code: the test run and debug loop deal with it.
    """
    messages: list[BaseMessage] = [HumanMessage(prompt)]
    reply = llm.text(messages, system=system)
    code = code_from_reply(path, reply)
    problem = syntax_problem(path, code)
    if problem is None:
        return code, []
    if llm.over_budget() is None:
        messages += [
            AIMessage(reply[:6000]),
            HumanMessage(
                f"That code of {path} does not parse: {problem}. Reply with the complete corrected file "
                "in one ```python block and nothing else."
            ),
        ]
        second = code_from_reply(path, llm.text(messages, system=system))
        again = syntax_problem(path, second)
        if again is None:
            return second, []
        if second.strip() and not code.strip():
            code, problem = second, again
    return code, [f"{path}: kept code that does not parse ({problem})"]


def file_worker(role: Role, kind: str) -> Any:
    """A Send worker that writes the one file its job names (code for the engineer, tests for QA)."""

    def worker(state: JobInput, runtime: Any) -> dict[str, Any]:
        job = state["job"]
        action = "write" if job.version == 1 else "rewrite"
        announce_file(role.name, job.path, action, job.version, job.note, job.subject)
        llm = role.worker_gateway(runtime, job)
        code, warnings = generate_file(llm, job.prompt, job.path, role.system)
        if job.subject and syntax_problem(job.path, code) is None:
            code, added = complete_imports(code, module_name(job.subject), job.subject_code)
            if added:
                warnings.append(f"{job.path}: added missing imports: {'; '.join(added)}")
        doc = CodeFile(path=job.path, content=code, version=job.version, note=job.note)
        message = role.say(kind, f"{job.path} v{job.version}: {doc.lines} lines", doc)
        return {"pool": [message], "warnings": warnings, **llm.usage_update()}

    worker.__name__ = f"{role.name}_{kind}"
    worker.__doc__ = f"{role.name}: {kind} for one file (a Send worker)."
    return worker


def announce_file(role: str, path: str, action: str, version: int, note: str = "", subject: str = "") -> None:
    """A `file` stream event: which file a role writes (action write), rewrites after review (rewrite) or
    fixes after a test run (fix), and its version."""
    verb = {"write": "writes", "rewrite": "rewrites", "fix": "fixes"}[action]
    what = f"{verb} {path} v{version}" + (f" (tests of {subject})" if subject else f" ({note})" if note else "")
    fields: dict[str, Any] = {"role": role, "file": path, "action": action, "version": version}
    emit("file", f"{role} {what}", **fields, **({"tests_of": subject} if subject else {}))


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {n for n in names if not n.startswith("_")}


def _bound_names(tree: ast.Module) -> set[str]:
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


def _is_future(node: ast.stmt) -> bool:
    return isinstance(node, ast.ImportFrom) and node.module == "__future__"


def complete_imports(test_code: str, module: str, module_code: str) -> tuple[str, list[str]]:
    """Add the imports a generated test forgot: names it uses that the module under test defines, the module
    itself when used as `module.x`, and pytest. Both files are only parsed, never run."""
    try:
        tree = ast.parse(test_code)
        provided = _top_level_names(ast.parse(module_code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return test_code, []
    bound = _bound_names(tree)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    lines: list[str] = []
    missing = sorted((used & provided) - bound)
    if missing:
        lines.append(f"from {module} import {', '.join(missing)}")
    top = module.split(".")[0]
    if top in used and top not in bound:
        lines.append(f"import {module}")
    if "pytest" in used and "pytest" not in bound:
        lines.insert(0, "import pytest")
    if not lines:
        return test_code, []
    body = tree.body
    start = 0
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        start = 1  # after the docstring
    while start < len(body) and _is_future(body[start]):
        start += 1
    at = body[start].lineno - 1 if start < len(body) else len(test_code.splitlines())
    source = test_code.splitlines()
    fixed = "\n".join([*source[:at], *lines, *source[at:]]) + "\n"
    return fixed, lines
