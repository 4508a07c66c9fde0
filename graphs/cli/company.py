"""`sopgraph company`: run the software company on an idea (or a change to a generated repository)."""

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sopgraph.graphs.cli.common import (
    RUN_OPTIONS,
    Options,
    err,
    finish,
    make_context,
    options,
    report,
    stopping_on_ctrl_c,
    usage_error,
)
from sopgraph.state.company import RUN_TESTS, WRITE_CODE, WRITE_TEST, CodeFile, Delivery, QAReport
from sopgraph.state.usage import UsageTotals

_BUDGET = re.compile(r"^\s*(\$)?\s*([0-9]*\.?[0-9]+)\s*(k|m|usd|\$|tokens?)?\s*$", re.IGNORECASE)


def parse_budget(text: str) -> tuple[int | None, float | None]:
    """`20000`, `20k`, `1.5m` tokens, or `$0.50` / `0.5usd` dollars."""
    match = _BUDGET.match(text)
    if not match:
        raise usage_error(f"--budget: expected tokens (20000, 20k, 1.5m) or dollars ($0.50), got {text!r}")
    dollar, number, unit = match.group(1), float(match.group(2)), (match.group(3) or "").lower()
    if dollar or unit in ("usd", "$"):
        return None, number
    scale = {"k": 1_000, "m": 1_000_000}.get(unit, 1)
    return int(number * scale), None


def parse_review(text: str | None) -> list[str]:
    from sopgraph.graphs.company import REVIEW_STAGES

    stages = [s.strip().lower() for s in (text or "").split(",") if s.strip()]
    unknown = [s for s in stages if s not in REVIEW_STAGES]
    if unknown:
        raise usage_error(f"--review: unknown review point {', '.join(unknown)}; use {', '.join(REVIEW_STAGES)}")
    return stages


def file_versions(values: dict[str, Any]) -> dict[str, list[CodeFile]]:
    """Every version of every file the engineer and QA wrote, by path, oldest first."""
    versions: dict[str, list[CodeFile]] = {}
    for message in values.get("pool") or []:
        if message.kind in (WRITE_CODE, WRITE_TEST) and isinstance(message.payload, CodeFile):
            versions.setdefault(message.payload.path, []).append(message.payload)
    return versions


def summary_table(values: dict[str, Any]) -> tuple[Table, list[str]]:
    """Files with their lines and versions, then one line each for tests, usage and where the code is."""
    pool = values.get("pool") or []
    versions = file_versions(values)
    table = Table("file", "lines", "versions", "last change", box=None)
    for path in sorted(versions, key=lambda p: (p.startswith("tests/"), p)):
        docs = versions[path]
        table.add_row(path, str(docs[-1].lines), str(len(docs)), docs[-1].note)
    lines: list[str] = []
    delivered = [m.payload for m in pool if isinstance(m.payload, Delivery)]
    reports = [m.payload for m in pool if m.kind == RUN_TESTS and isinstance(m.payload, QAReport)]
    code_lines = sum(v[-1].lines for p, v in versions.items() if not p.startswith("tests/"))
    test_lines = sum(v[-1].lines for p, v in versions.items() if p.startswith("tests/"))
    lines.append(f"files: {len(versions)} written, {code_lines} lines of code, {test_lines} lines of tests")
    if delivered:
        lines.append(f"tests: {delivered[-1].headline()}")
    elif reports:
        last = reports[-1]
        lines.append(f"tests: run {last.attempt}: {last.passed} passed, {last.failed} failed, {last.errors} errors")
    else:
        lines.append("tests: not run yet")
    totals = UsageTotals.of(values.get("usage") or [])
    lines.append(
        f"usage: {totals.calls} model calls, {totals.input_tokens} in / {totals.output_tokens} out tokens, "
        f"${totals.cost_usd:.4f}"
    )
    warnings = values.get("warnings") or []
    if warnings:
        lines.append(f"warnings ({len(warnings)}):")
        lines += [f"  - {w}" for w in warnings[:10]]
        if len(warnings) > 10:
            lines.append(f"  ... and {len(warnings) - 10} more")
    where = delivered[-1].out_dir if delivered and delivered[-1].out_dir else values.get("out_dir")
    if where:  # a replay or fork delivers into a folder of its own
        lines.append(f"repository: {where}")
    return table, lines


def register(app: typer.Typer) -> None:
    """Add the `company`, `company-summary` and `export` commands to the sopgraph CLI."""

    @app.command("company")
    @options(*RUN_OPTIONS)
    def company(
        idea: Annotated[str, typer.Argument(help="The product idea, or a change to the repository given by --out.")],
        review: Annotated[
            str | None, typer.Option("--review", help="Pause for human review after: prd, design (comma-separated).")
        ] = None,
        max_debug: Annotated[int, typer.Option("--max-debug", help="Fix rounds allowed after failing tests.")] = 3,
        max_files: Annotated[int, typer.Option("--max-files", help="Cap on the number of code files.")] = 5,
        one_file: Annotated[
            bool | None,
            typer.Option(
                "--one-file/--split-files",
                help="The whole program in main.py, or the design's files (default: one file for a small idea, "
                "one that spells its command line).",
            ),
        ] = None,
        review_rounds: Annotated[
            int, typer.Option("--review-rounds", help="Times code review may send a file back (0: no review).")
        ] = 1,
        out: Annotated[
            Path | None,
            typer.Option(
                "--out", help="Repository folder (default .sopgraph/workspaces/RUN); a generated one is updated."
            ),
        ] = None,
        sequential: Annotated[bool, typer.Option("--sequential", help="Write one file at a time.")] = False,
        test_timeout: Annotated[float, typer.Option("--test-timeout", help="Seconds per sandboxed test run.")] = 60.0,
        budget: Annotated[
            str | None, typer.Option("--budget", help="Pause after this many tokens (20000, 20k) or dollars ($0.50).")
        ] = None,
        *,
        opts: Options,
    ) -> None:
        """Run the software company (PM, architect, project manager, engineer, reviewer, QA) on an idea."""
        from sopgraph.graphs import runner
        from sopgraph.graphs.company import company_input
        from sopgraph.graphs.runner import open_checkpointer
        from sopgraph.nodes.company.repository import default_out_dir, load_manifest
        from sopgraph.tools.persistence import checkpointer_url, describe

        stages = parse_review(review)
        if budget is not None:
            tokens, usd = parse_budget(budget)
            opts.budget_tokens = opts.budget_tokens if tokens is None else tokens
            opts.budget_usd = opts.budget_usd if usd is None else usd
        thread_id = runner.new_thread_id("company")
        out_dir = (out or default_out_dir(thread_id)).expanduser().absolute()
        incremental = load_manifest(out_dir) is not None
        if not incremental and out_dir.is_dir() and any(out_dir.iterdir()):
            raise usage_error(f"--out: {out_dir} is not empty and not a generated repository")
        try:
            payload = company_input(
                idea,
                out_dir=out_dir,
                review=stages,
                max_debug=max_debug,
                max_files=max_files,
                one_file=one_file,
                max_review_rounds=review_rounds,
                parallel=not sequential,
                test_timeout_s=test_timeout,
            )
        except ValueError as exc:
            raise usage_error(exc) from exc
        ctx = make_context(opts)
        with open_checkpointer(opts.db) as saver, stopping_on_ctrl_c(thread_id, opts.db, saver):
            where = describe(checkpointer_url(opts.db))
            err.print(f"run [bold]{thread_id}[/] (model {ctx.model}, checkpoints in {where})")
            err.print(f"repository {out_dir} ({'update of the existing project' if incremental else 'new'})")
            outcome = runner.start_run("company", dict(payload), saver, ctx, thread_id=thread_id)
        report(outcome)
        _print_summary(outcome.values)
        delivered = [m.payload for m in outcome.values.get("pool") or [] if isinstance(m.payload, Delivery)]
        finish(
            "company",
            outcome,
            opts.as_json,
            out_dir=outcome.values.get("out_dir"),
            tests=delivered[-1].headline() if delivered else None,
            files={path: docs[-1].lines for path, docs in sorted(file_versions(outcome.values).items())},
        )

    @app.command("company-summary")
    @options("db")
    def company_summary(run: str, *, opts: Options) -> None:
        """Files, tests and usage of a company run so far (also after a pause or a resume)."""
        from sopgraph.graphs import runner
        from sopgraph.graphs.runner import open_checkpointer

        with open_checkpointer(opts.db) as saver:
            snapshots = runner.history(saver, run)
        if not snapshots:
            raise runner.RunError(f"run {run!r} has no checkpoints")
        _print_summary(dict(snapshots[0].values))

    @app.command("export")
    @options("db")
    def export(
        run: Annotated[str, typer.Argument(help="A company run (thread) id.")],
        out: Annotated[Path, typer.Option("--out", help="Folder to write the repository into.")],
        *,
        opts: Options,
    ) -> None:
        """Write a company run's repository, as its latest checkpoint holds it, into a folder."""
        from sopgraph.graphs import runner
        from sopgraph.graphs.runner import open_checkpointer
        from sopgraph.nodes.company.repository import load_manifest, materialize, render

        with open_checkpointer(opts.db) as saver:
            name, _ = runner.run_metadata(saver, run)
            if name != "company":
                raise runner.RunError(f"run {run!r} is a {name} run; only company runs have a repository")
            values = dict(runner.compile_graph(name, saver).get_state(runner.run_config(run)).values)
        target = out.expanduser().absolute()
        if target.is_dir() and any(target.iterdir()) and load_manifest(target) is None:
            raise usage_error(f"--out: {target} is not empty and not a generated repository")
        for warning in materialize(values, str(target)):
            err.print(warning, markup=False, highlight=False)
        err.print(f"wrote {len(render(values))} files to {target}", markup=False, highlight=False)


def _print_summary(values: dict[str, Any]) -> None:
    table, lines = summary_table(values)
    if table.row_count:
        err.print(table)
    for line in lines:
        err.print(line, markup=False, highlight=False)
