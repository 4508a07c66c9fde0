"""`sopgraph eval groupchat`: the dislike test (T1/T2), understanding probes and dialogue entropy, per ablation.

app.py calls `register(eval_app)` to add the command; everything heavy is imported when it runs, so
`sopgraph --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sopgraph.graphs.cli.common import Options, err, fail, options
from sopgraph.graphs.cli.common import out as stdout
from sopgraph.graphs.cli.evals import EVAL_OPTIONS, finish_eval
from sopgraph.graphs.outcomes import USAGE_EXIT

if TYPE_CHECKING:
    from sopgraph.evals.groupchat_ablation import EvalOutcome, GroupChatEvalSettings

DEFAULT_SCENARIO = "philosophers"


def _default_out(settings: GroupChatEvalSettings) -> Path:
    from sopgraph.evals.harness import safe_name

    name = f"groupchat-{Path(settings.scenario).stem}-{settings.observed}-{settings.model}"
    return Path(".sopgraph") / "evals" / safe_name(name)


def _verdict(value: bool | None) -> str:
    return "n/a" if value is None else ("[green]yes[/]" if value else "[red]no[/]")


def _print_summary(outcome: EvalOutcome, as_json: bool) -> None:
    from rich.table import Table

    from sopgraph.evals.harness import pct

    table = Table(
        "switch", "T1", "T2", "affinity", "probes (const.)", "echo+leak/refusal/silence", "distinct-2", box=None
    )
    for r in outcome.records:
        table.add_row(
            r.switch,
            f"{_verdict(r.t1)} ({r.falling_steps}/{r.steps})",
            _verdict(r.t2),
            " → ".join(f"{a:.1f}" for _, a in r.affinity) or "n/a",
            f"{pct(r.probe_accuracy)} ({pct(r.probe_constant_baseline)})",
            f"{pct(r.echo_leak_rate)}/{pct(r.refusal_rate)}/{pct(r.silence_rate)}",
            "n/a" if r.distinct_2 is None else f"{r.distinct_2:.3f}",
        )
    (err if as_json else stdout).print(table)


def register(eval_app: typer.Typer) -> None:
    """Add `groupchat` to the `sopgraph eval` group."""

    @eval_app.command("groupchat")
    @options(*EVAL_OPTIONS)
    def groupchat(
        scenario: Annotated[
            str, typer.Argument(help="A packaged story (philosophers, casting, court, succession) or a YAML path.")
        ] = DEFAULT_SCENARIO,
        observed: Annotated[
            str | None,
            typer.Option("--observed", help="Whom everyone else is told to dislike (default: the first principal)."),
        ] = None,
        rounds: Annotated[int | None, typer.Option("--rounds", min=1, help="Override the story's rounds.")] = None,
        ablations: Annotated[
            str,
            typer.Option(
                "--ablations",
                help="Switches besides the baseline: all, none, or names from private_chat, meeting, group_chat, "
                "reflection, think (comma-separated).",
            ),
        ] = "all",
        no_probes: Annotated[
            bool, typer.Option("--no-probes", help="Skip the understanding probes (T1/T2 and entropy only).")
        ] = False,
        out: Annotated[
            Path | None,
            typer.Option("--out", help="Output directory (default .sopgraph/evals/groupchat-<story>-<id>-<model>)."),
        ] = None,
        seed: Annotated[
            int | None, typer.Option("--seed", help="Override the story's seed (seeds the model too).")
        ] = None,
        *,
        opts: Options,
    ) -> None:
        """Group chat: T1/T2 toward a disliked character, understanding probes, dialogue entropy, per ablation."""
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from sopgraph.evals.groupchat_ablation import GroupChatEvalSettings, parse_switches, run_groupchat_eval
        from sopgraph.evals.harness import SettingsMismatch
        from sopgraph.graphs.cli.groupchat_report import write_report
        from sopgraph.nodes.llm import preflight
        from sopgraph.scenarios import ScenarioError

        try:
            switches = parse_switches(ablations)
        except ValueError as exc:
            raise fail(f"--ablations: {exc}", USAGE_EXIT) from None
        try:
            settings = GroupChatEvalSettings.build(scenario, observed, opts.model, rounds, seed, not no_probes)
        except ScenarioError as exc:
            raise fail(str(exc).splitlines()[0]) from None
        preflight(settings.context())  # a bad model name fails now; the local server starts before the first run
        out_dir = out or _default_out(settings)
        story = settings.story
        err.print(
            f"group chat eval: {story.title}, observed {settings.observed}, {story.settings.rounds} rounds, "
            f"model {settings.model}, switches {', '.join(switches)}"
            + ("" if settings.probes else ", no probes")
            + f"; results in {out_dir}",
            highlight=False,
        )
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=False) as bar:
            tasks = {s: bar.add_task(f"{s}: waiting", total=1) for s in switches}

            def on_progress(switch: str, what: str) -> None:
                done = what.startswith(("scored", "failed"))
                bar.update(tasks[switch], description=f"{switch}: {what[:100]}", completed=int(done))

            try:
                outcome = run_groupchat_eval(settings, switches, out_dir, on_progress, story_report=write_report)
            except KeyboardInterrupt:
                bar.stop()
                raise fail(
                    f"interrupted; scored switches and every run's checkpoints are kept in {out_dir}: "
                    "run the same command to resume",
                    130,
                ) from None
            except SettingsMismatch as exc:
                raise fail(exc, USAGE_EXIT) from exc
        _print_summary(outcome, opts.as_json)
        if outcome.failed:
            names = ", ".join(f"{r.switch} ({r.error})" for r in outcome.failed)
            err.print(f"not scored: {names}; they resume from their checkpoints", highlight=False, markup=False)
        finish_eval(
            "groupchat", outcome.report, out_dir, len(outcome.failed), outcome.newly_scored, "switches", opts.as_json
        )
