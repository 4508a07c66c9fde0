"""Does a generated program hold together and start? Static guards (parsed only) and sandboxed import and
start checks, shared by the company's test run (feedback inside the debug loop) and the software eval.

Static guards, each one line a model can act on: a program module must parse, must not be test code
(`import pytest`, `def test_...`), must not import itself, must import only the standard library and the
project's own modules, and every name it imports from a project module must exist there.

The sandboxed checks import every module with `python -S` (the standard library alone) and start the entry
point: `--help`, then no arguments, with stdin closed. It **starts** when a run exits 0; or is still running
without a traceback when the timeout kills it (a server, a program waiting on something); or ends with
`EOFError` (an interactive program that asked for input and found stdin closed). Anything else does not.
A program that starts may also be asked to recall (`Recall`): `add X`, then `list` in the same folder must
show X, or it keeps nothing between two runs.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sopgraph.tools import sandbox
from sopgraph.tools.session import run_steps
from sopgraph.tools.workspace import Workspace, module_name

ENTRY_STEMS = frozenset({"main", "app", "cli", "run", "__main__"})
"""Modules that start the program: they import the others, and are not unit-tested on their own."""
TRACEBACK = "Traceback (most recent call last)"
MAIN_GUARD = re.compile(r"""^if\s+__name__\s*==\s*["']__main__["']\s*:""", re.MULTILINE)
RUN_COMMAND = re.compile(r"\bpython3?\s+(?:-m\s+(?P<module>[A-Za-z_][\w.]*)|(?P<path>[\w./-]+\.py)\b)")
PROBE_MARK = "@@sopgraph-import-probe@@"
LET_THROUGH = frozenset({"EOFError", "SystemExit"})
"""Exceptions that end a program rather than show a missing piece."""
MISSING = frozenset({"ImportError", "ModuleNotFoundError"})
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
TEST_PACKAGES = frozenset({"pytest", "_pytest"})
"""What tests may import beside the project and the standard library."""

# Our own code, run inside the sandbox: compile one module, import it, report how that went as JSON.
IMPORT_PROBE = f"""
import sys
here = sys.path.pop(0)  # the project: its modules must not stand in for the probe's own (a json.py, say)
import importlib, json, os, runpy, traceback
sys.path.insert(0, here)
path, module = sys.argv[1], sys.argv[2]
report = {{"stage": "compile", "type": None}}
try:
    with open(path, "rb") as handle:
        compile(handle.read(), path, "exec")
    report["stage"] = "import"
    if all(part.isidentifier() for part in module.split(".")):
        importlib.import_module(module)
    else:
        runpy.run_path(path, run_name="__sopgraph_import__")
except BaseException as exc:
    report["type"] = type(exc).__name__
    report["error"] = " ".join(str(exc.msg if isinstance(exc, SyntaxError) else exc).split())[:300]
    root = os.getcwd() + os.sep
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.abspath(f.filename).startswith(root)]
    if isinstance(exc, SyntaxError) and exc.lineno:
        report["where"] = f"line {{exc.lineno}}"
    elif frames:
        report["where"] = f"{{os.path.relpath(frames[-1].filename)}}:{{frames[-1].lineno}}"
print("\\n{PROBE_MARK}" + json.dumps(report), flush=True)
"""


def stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def is_test_path(path: str) -> bool:
    return path.startswith("tests/") or path.rsplit("/", 1)[-1].startswith("test_") or path.endswith("conftest.py")


# -- static guards (parsed, never run) ------------------------------------------------------------------


def _defined_names(tree: ast.Module) -> set[str]:
    """Names a module binds at top level (what `from it import NAME` can find)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def is_test_code(code: str) -> str | None:
    """Why this program text is test code (a model asked for the program returned its tests), or None."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "pytest" for a in node.names):
            return "imports pytest"
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pytest":
            return "imports pytest"
    tests = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    tests = [n for n in tests if n.startswith("test_")]
    if tests and len(tests) * 2 >= len([n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]):
        return f"defines pytest test functions ({', '.join(tests[:3])})"
    return None


def _parsed(files: dict[str, str], problems: list[str]) -> dict[str, ast.Module]:
    trees: dict[str, ast.Module] = {}
    for path, text in files.items():
        try:
            trees[path] = ast.parse(text, filename=path)
        except SyntaxError as exc:
            problems.append(f"{path} does not parse: {exc.msg} (line {exc.lineno})")
        except (ValueError, RecursionError, MemoryError) as exc:
            problems.append(f"{path} does not parse: {type(exc).__name__}")
    return trees


def _import_problems(
    path: str, tree: ast.Module, program: list[str], trees: dict[str, ast.Module], allowed: frozenset[str] = frozenset()
) -> list[str]:
    """What `path` imports that is not there: itself, a module neither of the project (`program`, parsed in
    `trees`) nor of the standard library (nor `allowed`), a name its project module does not define."""
    modules = {module_name(p): p for p in program}
    tops = {m.split(".")[0] for m in modules} | {p.split("/")[0] for p in program if "/" in p}
    own = module_name(path)
    problems: list[str] = []
    for node in ast.walk(tree):
        targets: list[tuple[str, list[str] | None]]
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [(node.module, [a.name for a in node.names])]
        else:
            continue
        for target, names in targets:
            top = target.split(".")[0]
            if target == own or (own.endswith(".__init__") and target == own.removesuffix(".__init__")):
                problems.append(f"{path} imports itself (line {node.lineno}): `{target}` is this very module")
            elif top not in tops and top not in STDLIB and top not in allowed:
                problems.append(
                    f"{path} imports `{target}` (line {node.lineno}), which is neither a module of this project "
                    "nor in the standard library"
                )
            elif names and target in modules and modules[target] in trees:
                other = modules[target]
                missing = [n for n in names if n != "*" and n not in _defined_names(trees[other])]
                if missing:
                    problems.append(
                        f"{path} imports {', '.join(missing)} from {other} (line {node.lineno}), "
                        f"which {other} does not define"
                    )
    return problems


def static_problems(files: dict[str, str]) -> list[str]:
    """One line per structural problem of the program modules (tests/ are not judged here)."""
    code = {p: c for p, c in files.items() if p.endswith(".py") and not is_test_path(p)}
    problems: list[str] = []
    trees = _parsed(code, problems)
    for path, tree in trees.items():
        why = is_test_code(code[path])
        if why:
            problems.append(f"{path} is test code, not the program: it {why}; tests belong in tests/")
        problems += _import_problems(path, tree, list(code), trees)
    return list(dict.fromkeys(problems))


def problems_in_tests(files: dict[str, str]) -> list[str]:
    """One line per structural problem of the test files among `files` (the program modules there are what
    they test): a name imported from a program module that does not define it, a module neither of the
    project nor of the standard library (pytest aside). Each line starts with the test file's path."""
    program = [p for p in files if p.endswith(".py") and not is_test_path(p)]
    trees = _parsed({p: files[p] for p in program}, [])
    problems: list[str] = []
    tests = _parsed({p: c for p, c in files.items() if p.endswith(".py") and is_test_path(p)}, problems)
    # pytest puts the tests' folder on the path (import conftest); a package of tests imports as tests.x
    helpers = frozenset(stem(p) for p in tests) | {p.split("/")[0] for p in tests if "/" in p}
    for path, tree in tests.items():
        problems += _import_problems(path, tree, program, trees, allowed=TEST_PACKAGES | helpers)
    return list(dict.fromkeys(problems))


def fixture_names(code: str) -> frozenset[str]:
    """The pytest fixtures a module (a conftest.py) defines: functions decorated with `pytest.fixture`."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return frozenset()
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and any("fixture" in ast.unparse(d) for d in node.decorator_list)
    )


def without_definitions(code: str, names: frozenset[str]) -> tuple[str, list[str]]:
    """`code` without its top-level definitions (functions with their decorators, assignments) of `names`,
    and the names removed. A test file that defines its own `cli` hides the fixture our conftest provides."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code, []
    spans: list[tuple[int, int]] = []
    removed: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in names:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            removed.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound = [t.id for t in targets if isinstance(t, ast.Name)]
            if not bound or not set(bound) <= names:
                continue
            first = node.lineno
            removed += bound
        else:
            continue
        spans.append((first, node.end_lineno or node.lineno))
    if not spans:
        return code, []
    lines = code.splitlines()
    keep = [line for number, line in enumerate(lines, 1) if not any(a <= number <= b for a, b in spans)]
    text = re.sub(r"\n{4,}", "\n\n\n", "\n".join(keep)).strip("\n") + "\n"
    return text, list(dict.fromkeys(removed))


def missing_commands(code: str, commands: list[str]) -> list[str]:
    """The commands an entry module never compares or registers: no string literal of it equals the command
    (`"add"`, `--add`, `add_parser("add")`, `case "add":`). A module with the request's commands as
    methods only (a copy of a library class) handles none of them. Code that does not parse: [] (the parse
    failure is its problem)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    wanted = {c.lower() for c in commands}
    declared = _declared_commands(tree, wanted)
    if declared:  # argparse names its commands: the others are not handled, whatever strings the code holds
        return [c for c in commands if c.lower() not in declared]
    literals = {
        node.value.strip().lstrip("-").lower()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    return [c for c in commands if c.lower() not in literals]


def _declared_commands(tree: ast.AST, wanted: set[str]) -> set[str]:
    """The commands an argparse argument declares with `choices=[...]` holding one of `wanted` (argparse
    refuses any other value): `choices=['add', 'list', 'mark']` declares mark, not done, though the code says
    "done" elsewhere. Empty when no such argument."""
    declared: set[str] = set()
    for node in ast.walk(tree):
        for keyword in node.keywords if isinstance(node, ast.Call) else []:
            if keyword.arg != "choices" or not isinstance(keyword.value, (ast.List, ast.Tuple, ast.Set)):
                continue
            found = {
                n.value.strip().lower()
                for n in keyword.value.elts
                if isinstance(n, ast.Constant) and isinstance(n.value, str)
            }
            if found & wanted:
                declared |= found
    return declared


READS = frozenset(
    {"load", "read", "read_text", "read_bytes", "readlines", "readline", "reader", "DictReader", "safe_load"}
)
"""Calls that read a file: json.load, Path.read_text, csv.reader, f.read, ..."""
WRITES = frozenset(
    {"dump", "write", "write_text", "write_bytes", "writelines", "writer", "DictWriter", "writerow", "safe_dump"}
)
"""Calls that write a file: json.dump, Path.write_text, csv.writer, f.write, ..."""
READ_WRITE = frozenset({"connect"})
"""sqlite3.connect, shelve.open: a store read and written through one handle."""


def _open_mode(call: ast.Call) -> str | None:
    """The mode of an open() call: builtin or io.open (the second argument), Path.open (the first); None
    when it is not a constant."""
    func = call.func
    path_method = isinstance(func, ast.Attribute) and not (
        isinstance(func.value, ast.Name) and func.value.id in ("io", "codecs", "os")
    )
    at = 0 if path_method else 1
    mode: ast.expr | None = call.args[at] if len(call.args) > at else None
    mode = next((k.value for k in call.keywords if k.arg == "mode"), mode)
    if mode is None:
        return "r"
    return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else None


def file_use(files: dict[str, str], name: str) -> tuple[list[str], bool, bool]:
    """How a program uses the data file `name`: (its modules that spell the name in a string, whether it
    reads any file, whether it writes any). Parsed, never run, and lenient: a read or write of another file
    counts too, so only a program that never reads (or never writes) at all is caught."""
    naming: list[str] = []
    reads = writes = False
    for path, text in files.items():
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and name in node.value:
                naming.append(path)
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called == "open" and isinstance(func, ast.Attribute) and ast.unparse(func.value) in ("shelve", "dbm"):
                called = "connect"
            if called == "open":
                mode = _open_mode(node)
                reads |= mode is None or "r" in mode or "+" in mode or not set(mode) & set("wax")
                writes |= mode is None or bool(set(mode) & set("wax+"))
            reads |= called in READS or called in READ_WRITE
            writes |= called in WRITES or called in READ_WRITE
            writes |= called == "print" and any(k.arg == "file" for k in node.keywords)
    return list(dict.fromkeys(naming)), reads, writes


def interface(code: str) -> str:
    """A module's public interface as stubs: classes, functions and methods with their signatures and the first
    line of their docstrings, bodies elided (what spec-first tests may rely on, not how it is done)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code
    out: list[str] = []

    def stub(node: ast.FunctionDef | ast.AsyncFunctionDef, indent: str) -> None:
        prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
        returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
        out.append(f"{indent}{prefix} {node.name}({ast.unparse(node.args)}){returns}: ...")
        doc = ast.get_docstring(node)
        if doc:
            out[-1] += f"  # {doc.strip().splitlines()[0][:100]}"

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            stub(node, "")
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            bases = f"({', '.join(ast.unparse(b) for b in node.bases)})" if node.bases else ""
            out.append(f"class {node.name}{bases}:")
            members = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            fields = [ast.unparse(n) for n in node.body if isinstance(n, ast.AnnAssign)]
            out += [f"    {f}" for f in fields]
            for member in members:
                if not member.name.startswith("_") or member.name == "__init__":
                    stub(member, "    ")
            if not members and not fields:
                out.append("    ...")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]
            out += [f"{n} = ..." for n in names]
    return "\n".join(out) or "# (no public names)"


# -- sandboxed checks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    root: Path
    code: list[str]
    tests: list[str]
    text: dict[str, str]

    def lines(self, paths: list[str]) -> int:
        return sum(len(self.text[p].splitlines()) for p in paths)


def survey(root: Path) -> Project:
    ws = Workspace(root)
    files = [p for p in ws.files() if p.endswith(".py")] if root.is_dir() else []
    tests = [p for p in files if is_test_path(p) and not p.endswith("conftest.py")]
    code = [p for p in files if not is_test_path(p) and not p.startswith("docs/")]
    text = {p: (root / p).read_text(encoding="utf-8", errors="replace") for p in files}
    return Project(root, code, tests, text)


def _entry_argv(path: str) -> list[str]:
    if path.endswith("/__main__.py"):
        return ["-m", module_name(path.rsplit("/", 1)[0])]
    return [path]


def find_entry(project: Project) -> tuple[list[str], str] | None:
    """(the arguments after `python -S` that start the program, the module they run), or None.

    In this order: a module named main, __main__, app, cli or run (the shallowest, main first); else the
    shallowest module with an `if __name__ == "__main__":` guard; else the file (or `-m` module) of the
    first `python ...` command in README.md; else the only module, if there is one.
    """
    named = [p for p in project.code if stem(p) in ENTRY_STEMS]
    if named:
        path = min(named, key=lambda p: (p.count("/"), stem(p) != "main", stem(p) != "__main__", p))
        return _entry_argv(path), path
    guarded = [p for p in project.code if MAIN_GUARD.search(project.text[p])]
    if guarded:
        path = min(guarded, key=lambda p: (p.count("/"), p))
        return _entry_argv(path), path
    readme = Workspace(project.root).read("README.md") or ""
    for match in RUN_COMMAND.finditer(readme):
        if match.group("path") in project.code:
            return [match.group("path")], match.group("path")
        module = match.group("module")
        if module:
            for path in (module.replace(".", "/") + ".py", module.replace(".", "/") + "/__main__.py"):
                if path in project.code:
                    return ["-m", module], path
    if len(project.code) == 1:
        return _entry_argv(project.code[0]), project.code[0]
    return None


def last_line(text: str) -> str:
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")


def ending(result: sandbox.SandboxResult) -> str:
    """How a sandboxed run ended, in a few words, with the last line it printed to stderr."""
    last = last_line(result.stderr)
    if result.timed_out or result.limit_hit:
        how = f"killed at the {result.limit_hit or 'wall'} limit"
    else:
        how = f"exit {result.exit_code}"
    return f"{how}: {last[:200]}" if last else how


def probe_limits(timeout: float) -> sandbox.SandboxLimits:
    return sandbox.SandboxLimits.for_start(timeout)


def import_problem(project: Project, path: str, script: bool, timeout: float) -> str | None:
    """Why `path` does not install (compile and import with the standard library alone), or None.

    `script`: the entry point without a `__main__` guard runs its program on import; for it only a missing
    module or name counts here (the rest is the start check's business).
    """
    argv = [sys.executable, "-S", "-c", IMPORT_PROBE, path, module_name(path)]
    result = sandbox.run_command(argv, project.root, limits=probe_limits(timeout))
    tail = result.stdout.rsplit(PROBE_MARK, 1)
    if len(tail) < 2:
        if (result.timed_out and result.limit_hit in (None, "wall")) or result.exit_code == 0:
            return None  # still running its program, or it ended that program itself (os._exit)
        return f"{path}: the import ended without a report ({ending(result)})"
    try:
        report = json.loads(tail[1].strip().splitlines()[0])
    except (ValueError, IndexError):
        return f"{path}: the import printed an unreadable report"
    kind = report.get("type")
    if kind is None:
        return None
    error = f"{kind}: {report.get('error') or ''}".rstrip(": ")
    where = f" ({report['where']})" if report.get("where") else ""
    if report.get("stage") == "compile":
        return f"{path} does not compile: {error}{where}"
    if kind in LET_THROUGH or (script and kind not in MISSING):
        return None
    return f"{path} does not import: {error}{where}"


def start_verdict(result: sandbox.SandboxResult, timeout: float) -> tuple[bool, str]:
    crashed = TRACEBACK in result.stderr or TRACEBACK in result.stdout
    if result.timed_out and result.limit_hit in (None, "wall") and not crashed:
        return True, f"still running after {timeout:g}s, no traceback"
    if not result.timed_out and result.exit_code == 0:
        return True, "exit 0"
    if crashed and last_line(result.stderr).startswith("EOFError"):
        return True, "waited for input: EOFError on the closed stdin"
    return False, ending(result)


def start(project: Project, argv: list[str], timeout: float) -> tuple[bool, str, str]:
    """(started, the command judged, what it did): with --help first, then with no arguments."""
    tried: list[str] = []
    command = ""
    for extra in (["--help"], []):
        command = " ".join(["python -S", *argv, *extra])
        result = sandbox.run_command([sys.executable, "-S", *argv, *extra], project.root, limits=probe_limits(timeout))
        started, how = start_verdict(result, timeout)
        if started:
            return True, command, f"{command}: {how}"
        tried.append(f"{command}: {how}")
    return False, command, "; ".join(tried)


@dataclass(frozen=True)
class Recall:
    """A short session that shows whether a program keeps what it is told between two runs: `steps` (the
    arguments of each run, e.g. `add X`, then `list`) run one after another in one folder, and `text` must
    show in what the last one prints (case aside)."""

    steps: tuple[tuple[str, ...], ...]
    text: str


def _said(output: str, code: int | None) -> str:
    how = "timed out" if code is None else f"exit {code}"
    shown = " ".join(output.split())
    return f"{how}, printed {shown[:160]!r}" if shown else f"{how}, printed nothing"


def recall_problem(project: Project, argv: list[str], entry: str, recall: Recall, timeout: float) -> str | None:
    """One line with the facts when the program started by `argv` forgets between two runs, or None (also
    when the session itself could not be run: that is no fault of the program)."""
    ran = run_steps(project.root, argv, [{"args": list(step)} for step in recall.steps], step_timeout=timeout)
    if ran.error or len(ran.outputs) != len(recall.steps) or recall.text.lower() in ran.last.lower():
        return None
    runs = [
        f"`{shlex.join(['python', *argv, *step])}` ({_said(out, code)})"
        for step, out, code in zip(recall.steps, ran.outputs, ran.exits, strict=False)
    ]
    return (
        f"{entry} does not keep what a command is given for the next run: in one folder, {' then '.join(runs)}; "
        f"the last does not show {recall.text!r}"
    )


@dataclass
class ProgramCheck:
    """Whether a project holds together and starts, with one line per problem for a model."""

    problems: list[str] = field(default_factory=list)
    """Static guards and imports that fail, each naming its file."""
    entry: str | None = None
    """The entry module, or None when none is found."""
    starts: bool = False
    start: str = ""
    """What the start check saw."""

    @property
    def ok(self) -> bool:
        return not self.problems and self.starts

    def summary(self) -> str:
        lines = [f"- {p}" for p in self.problems]
        if not self.starts:
            lines.append(f"- the program does not start: {self.start}")
        return "\n".join(lines)


def check_program(
    root: Path, *, timeout: float = 5.0, static: bool = True, recall: Recall | None = None
) -> ProgramCheck:
    """Static guards, then import every module and start the entry point, in the sandbox; a program that
    starts is then asked to `recall` (when given), and a miss is one more problem."""
    project = survey(root)
    check = ProgramCheck()
    if not project.code:
        check.problems.append("no program module (a .py file outside tests/ and docs/)")
        check.start = "nothing to start"
        return check
    if static:
        check.problems += static_problems({p: project.text[p] for p in project.code})
    found = find_entry(project)
    script = found[1] if found and not MAIN_GUARD.search(project.text[found[1]]) else None
    check.problems += [p for p in (import_problem(project, m, m == script, timeout) for m in project.code) if p]
    check.problems = list(dict.fromkeys(check.problems))
    if found is None:
        check.start = "no entry point: no main.py, no __main__ guard, no run command in README.md"
        return check
    check.entry = found[1]
    check.starts, _, check.start = start(project, found[0], timeout)
    forgot = recall_problem(project, found[0], found[1], recall, timeout) if recall and check.starts else None
    check.problems += [forgot] if forgot else []
    return check


def suspects_of(check: ProgramCheck, code_paths: list[str]) -> list[str]:
    """The program files a check's problems name (the entry module when only the start failed)."""
    text = "\n".join(check.problems)
    found = [p for p in code_paths if re.search(rf"(?:^|[\s(]){re.escape(p)}\b", text, re.MULTILINE)]
    if not check.starts and check.entry and check.entry in code_paths:
        found.append(check.entry)
    return list(dict.fromkeys(found))
