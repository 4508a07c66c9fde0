"""What callers use: run a command, a Python program or a pytest suite in the sandbox, or several at once."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from .base import SandboxLimits, SandboxResult
from .files import RunPaths, read_child_file, under
from .launcher import OUTPUT_MAX_BYTES
from .parent import execute
from .report import TestReport, parse_junit

JUNIT = "run/junit.xml"  # relative to the run directory


T = TypeVar("T")


def run_command(
    argv: Sequence[str],
    workspace: Path | str | None = None,
    *,
    limits: SandboxLimits | None = None,
    copy: bool = True,
    env: Mapping[str, str] | None = None,
    stdin: str | bytes | None = None,
    isolation: str | None = None,
    ro_paths: Sequence[str] = (),
) -> SandboxResult:
    """Run `argv` in the workspace: by default a fresh copy (`copy=True`); `copy=False` lends the directory
    itself to the sandbox uid for the run. `ro_paths` are extra host paths the child must be able to read."""
    if not argv:
        raise ValueError("empty argv")
    ws = Path(workspace) if workspace is not None else None
    return execute(argv, ws, limits=limits, copy=copy, env=env, stdin=stdin, isolation=isolation, ro_paths=ro_paths)


def run_python(
    code_or_path: str | Path,
    workspace: Path | str | None = None,
    *,
    args: Sequence[str] = (),
    limits: SandboxLimits | None = None,
    copy: bool = True,
    env: Mapping[str, str] | None = None,
    stdin: str | bytes | None = None,
    isolation: str | None = None,
) -> SandboxResult:
    """Run Python source (a str) or a script (a Path; relative paths are taken inside the workspace)
    with this interpreter, so the venv's packages are importable."""
    ws = Path(workspace) if workspace is not None else None
    path = code_or_path if isinstance(code_or_path, Path) else None
    code = code_or_path if isinstance(code_or_path, str) else ""

    def setup(paths: RunPaths) -> list[str]:
        if path is not None:
            src = (path if path.is_absolute() else (ws or Path.cwd()) / path).resolve()
            if ws is not None and under(str(src), str(ws.resolve())):
                script = paths.ws / src.relative_to(ws.resolve())
            else:
                script = paths.run / "run" / src.name
                shutil.copyfile(src, script)
        else:
            script = paths.run / "run" / "main.py"
            script.write_text(code, encoding="utf-8")
        return [sys.executable, paths.inside(script), *args]

    return execute(
        [sys.executable], ws, limits=limits, copy=copy, env=env, stdin=stdin, isolation=isolation, setup=setup
    )


def run_tests(
    workspace: Path | str,
    test_path: str = "tests",
    *,
    limits: SandboxLimits | None = None,
    copy: bool = True,
    pytest_args: Sequence[str] = (),
    plugins: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    isolation: str | None = None,
) -> TestReport:
    """Run pytest (which also runs unittest cases) in the sandbox and read its junit-xml report.

    Plugin autoloading is off: the venv's plugins (langsmith, faker, anyio, ...) cost ~2 s per run and
    generated tests must not depend on them. Name any plugin the tests need in `plugins`."""
    report: dict[str, bytes | None] = {"xml": None}
    env = {**(env or {}), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}

    def setup(paths: RunPaths) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pytest",
            test_path,
            "-q",
            "--tb=short",
            "-p",
            "no:cacheprovider",
            *(arg for name in plugins for arg in ("-p", name)),
            f"--junitxml={paths.inside(paths.run / JUNIT)}",
            "-o",
            "junit_family=xunit1",
            "-o",
            "junit_logging=no",
            *pytest_args,
        ]

    def collect(paths: RunPaths) -> None:
        report["xml"] = read_child_file(paths.run / JUNIT, OUTPUT_MAX_BYTES)

    result = execute(
        [sys.executable],
        Path(workspace),
        limits=limits,
        copy=copy,
        env=env,
        stdin=None,
        isolation=isolation,
        setup=setup,
        collect=collect,
        outputs=[JUNIT],
    )
    parsed = parse_junit(report["xml"])
    cases = parsed or []
    counts = {o: sum(c.outcome == o for c in cases) for o in ("passed", "failed", "error", "skipped")}
    return TestReport(
        counts["passed"],
        counts["failed"],
        counts["error"],
        counts["skipped"],
        cases,
        result,
        report_found=parsed is not None,
    )


def run_many(jobs: Iterable[Callable[[], T]], *, max_workers: int | None = None) -> list[T]:
    """Run sandbox calls concurrently (each gets its own uid, run dir and namespaces); results in order."""
    jobs = list(jobs)
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=max_workers or min(8, len(jobs))) as pool:
        return list(pool.map(lambda job: job(), jobs))
