"""`sopgraph eval software`: the software tasks through the company graph, scored for executability.

app.py calls `register(eval_app)`. Only typer is imported here; the evaluation itself (the company
graph, the sandbox) is imported when the command runs, so `sopgraph --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sopgraph.graphs.cli.common import Options, err, fail, options
from sopgraph.graphs.cli.common import out as stdout
from sopgraph.graphs.cli.evals import EVAL_OPTIONS, First, Limit, Out, Seed, default_out, finish_eval, show_report
from sopgraph.graphs.outcomes import USAGE_EXIT

if TYPE_CHECKING:
    from sopgraph.evals.software import SoftwareSettings, SoftwareTask, Tally, TaskResult


def register(eval_app: typer.Typer) -> None:
    """Add `software` to the `sopgraph eval` group."""
    eval_app.command("software")(software)


@options(*EVAL_OPTIONS)
def software(
    tasks: Annotated[
        Path | None,
        typer.Option("--tasks", help="Task file (YAML: suffix, tasks with id, category, prompt); default: ours."),
    ] = None,
    only: Annotated[str | None, typer.Option("--only", help="Run only these task ids (comma-separated).")] = None,
    limit: Limit = None,
    first: First = False,
    max_debug: Annotated[
        int, typer.Option("--max-debug", min=0, help="Fix rounds the company may take after failing tests.")
    ] = 3,
    out: Out = None,
    seed: Seed = 0,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="Sampling temperature.")] = 0.2,
    start_timeout: Annotated[
        float,
        typer.Option("--start-timeout", min=0.5, help="Seconds an import or a start may run before it counts as up."),
    ] = 5.0,
    test_timeout: Annotated[float, typer.Option("--test-timeout", min=1.0, help="Seconds per sandboxed test run.")] = (
        60.0
    ),
    *,
    opts: Options,
) -> None:
    """Software tasks built by the company, scored 1-4 (imports, starts, acceptance checks, own tests)."""
    from sopgraph.evals import software as sw
    from sopgraph.state.context import Context, model_name

    ids = [i.strip() for i in (only or "").split(",") if i.strip()]
    try:
        chosen = sw.choose_tasks(sw.load_tasks(tasks), ids, limit, seed, first)
    except sw.TaskFileError as exc:
        raise fail(exc) from exc
    settings = sw.SoftwareSettings(
        model=opts.model or model_name(Context().model),
        max_debug=max_debug,
        seed=seed,
        temperature=temperature,
        test_timeout=test_timeout,
        start_timeout=start_timeout,
    )
    _run(chosen, settings, out or default_out("software", settings.model), opts.as_json)


def _run(tasks: list[SoftwareTask], settings: SoftwareSettings, out: Path, as_json: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from sopgraph.evals import harness
    from sopgraph.evals import software as sw
    from sopgraph.nodes.llm import preflight

    preflight(settings.context())  # a bad model name fails now; the local server starts before the first task
    err.print(
        f"software: {len(tasks)} tasks, model {settings.model}, ≤ {settings.max_debug} debug rounds; "
        f"results in {out} (checkpoints: {out / sw.CHECKPOINTS})",
        highlight=False,
    )

    def on_start(task: SoftwareTask, position: int, count: int) -> None:
        err.rule(f"[{position}/{count}] {task.id} ({task.category})", style="dim")
        err.print(task.prompt, style="dim", markup=False, highlight=False)

    def on_done(result: TaskResult, tally: Tally) -> None:
        so_far = f"{tally.scored}/{tally.selected} scored"
        if tally.mean_score is not None:
            so_far += f", mean score {tally.mean_score:.2f}"
        if result.error:
            err.print(f"[yellow]{result.task_id}: not scored:[/] {escape(result.error)} ({so_far})", highlight=False)
            return
        per_line = "n/a" if result.tokens_per_line is None else f"{result.tokens_per_line:.1f}"
        err.print(
            f"[bold]{result.task_id}: score {result.score}[/] — {escape(result.reason)}\n"
            f"  {result.tokens_in} in / {result.tokens_out} out tokens, {result.code_lines} lines of code "
            f"({per_line} tokens/line), {result.test_lines} of tests, {result.debug_attempts} debug rounds, "
            f"{result.seconds:.0f} s ({so_far})",
            highlight=False,
        )

    try:
        outcome = sw.run_software(tasks, settings, out, console=err, on_start=on_start, on_done=on_done)
    except KeyboardInterrupt:
        raise fail(
            f"interrupted; scored tasks are kept in {out} and the task in progress continues from its last "
            "checkpoint: run the same command to resume",
            130,
        ) from None
    except harness.EvalAborted as exc:
        raise fail(f"{exc}; scored tasks are kept in {out}: run the same command to resume") from exc
    except harness.SettingsMismatch as exc:
        raise fail(exc, USAGE_EXIT) from exc
    table = Table("task", "category", "score", "tokens out", "code lines", "tokens/line", "seconds", box=None)
    for r in outcome.results:
        per_line = "n/a" if r.tokens_per_line is None else f"{r.tokens_per_line:.1f}"
        row = (r.task_id, r.category, str(r.score), str(r.tokens_out), str(r.code_lines), per_line, f"{r.seconds:.0f}")
        table.add_row(*row)
    if table.row_count:
        (err if as_json else stdout).print(table)
    # The per-task table of summary.md is too wide for a terminal; the one above stands in for it.
    show_report(outcome.report, as_json, upto="\n## Per task")
    finish_eval("software", outcome.report, out, outcome.summary.unscored, outcome.newly_scored, "tasks", as_json)
