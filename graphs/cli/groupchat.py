"""`sopgraph groupchat`: run a story with progress per round and stage, then write the HTML report.

`register(app)` adds two commands to the main typer app: `groupchat` (run a scenario) and
`groupchat-report` (rebuild the report of a run, e.g. after `sopgraph resume`). Runs are ordinary
sopgraph runs: `resume`, `history`, `replay` and `fork` work on them as on any other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from langgraph.types import Command
from rich.console import Console

from sopgraph.graphs.cli.common import (
    RUN_OPTIONS,
    Options,
    err,
    fail,
    finish,
    make_context,
    options,
    stopping_on_ctrl_c,
    usage_error,
)
from sopgraph.graphs.cli.common import report as print_summary
from sopgraph.scenarios import ScenarioError, packaged_scenarios
from sopgraph.state.context import Context
from sopgraph.state.groupchat import HUMAN, Ablations, Scenario, Stage
from sopgraph.tools.cancel import cancel_on_interrupt

GRAPH = "groupchat"
REPORTS = Path(".sopgraph") / "reports"

STAGE_TITLE = {
    Stage.UPDATE: "update",
    Stage.PRIVATE_CHAT: "private chat",
    Stage.MEETING: "confidential meeting",
    Stage.GROUP_CHAT: "group chat",
    Stage.FINAL_UPDATE: "final update",
    Stage.SETTLEMENT: "settlement",
    Stage.DONE: "done",
}


def _clip(text: str, width: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


class Progress:
    """Turns graph updates into one line per move, with a header whenever the round or stage changes."""

    def __init__(self, scenario: Scenario, console: Console) -> None:
        self.scenario = scenario
        self.console = console
        self.round = 0
        self.stage: str | None = None

    def name(self, cid: str) -> str:
        return self.scenario.name_of(cid)

    def __call__(self, node: str, update: Any) -> None:
        if not isinstance(update, dict):
            return
        round_ = update.get("round", self.round)
        stage = update.get("stage", self.stage)
        if (round_, stage) != (self.round, self.stage) and stage is not None:
            self.round, self.stage = round_, stage
            rounds = self.scenario.settings.rounds
            title = STAGE_TITLE.get(Stage(stage), str(stage))
            self.console.rule(f"[bold]round {round_}/{rounds} · {title}" if stage != Stage.DONE else "[bold]settled")
        for m in update.get("pool") or []:
            if m.kind in {"private_chat", "meeting"}:
                (to,) = m.send_to
                self.console.print(f"  {self.name(m.sender)} → {self.name(to)}: [dim]{_clip(m.content)}[/]")
            elif m.kind == "group_chat":
                self.console.print(f"  {self.name(m.sender)} (sub-round {m.sub_round}): [dim]{_clip(m.content)}[/]")
            elif m.kind == "plan":
                self.console.print(f"  {self.name(m.sender)} [dim]{_clip(m.content)}[/]")
            elif m.kind == "choice":
                self.console.print(f"  [bold]{self.name(m.sender)}[/] chooses {self.name(m.payload.partner)}")
            elif m.kind == "outcome":
                self.console.print(f"[bold green]{m.content}[/]")
        for b in update.get("ballots") or []:
            choice = self.name(b.candidate) if b.candidate else "nobody (abstains)"
            self.console.print(f"  {self.name(b.voter)} votes {choice} [dim]({b.rule.value})[/]")
        for w in update.get("warnings") or []:
            self.console.print(f"  [yellow]clamped[/] {w.character} {w.action}: [dim]{_clip(w.problem, 70)}[/]")


def ask_person(question: dict[str, Any], console: Console) -> dict[str, Any]:
    """Ask the person at the terminal for a character's move, field by field."""
    console.rule(f"[bold]{question.get('character')}: {question.get('action')}")
    console.print(question.get("prompt", ""), markup=False, highlight=False)
    answer: dict[str, Any] = {}
    for field, spec in (question.get("schema", {}).get("properties") or {}).items():
        options = spec.get("enum")
        label = f"{field} ({spec.get('description', '').strip()})" if spec.get("description") else field
        if options:
            choices = [str(o) for o in options]
            value = typer.prompt(f"{field} [{'/'.join(choices)}]")
            while value not in choices:
                value = typer.prompt(f"{field}: one of {', '.join(choices)}")
            answer[field] = value
        elif spec.get("type") == "array":
            answer[field] = []
        else:
            answer[field] = typer.prompt(label, default="")
    return answer


def stream_run(graph: Any, payload: Any, config: dict[str, Any], context: Context, progress: Progress) -> None:
    from sopgraph.graphs.runner import DURABILITY

    for chunk in graph.stream(payload, config, context=context, stream_mode="updates", durability=DURABILITY):
        for node, update in chunk.items():
            if node != "__interrupt__":
                progress(node, update)


def run_story(
    input_state: Mapping[str, Any],
    saver: Any,
    context: Context,
    *,
    thread_id: str,
    interactive: bool,
    console: Console,
) -> Any:
    """Start a run and stream it to its end (or to a question nobody is here to answer)."""
    from sopgraph.graphs import runner

    graph = runner.compile_graph(GRAPH, saver)
    config = runner.run_config(thread_id)
    config["metadata"] = {runner.GRAPH_KEY: GRAPH, runner.CONTEXT_KEY: json.dumps(context.to_dict())}
    progress = Progress(input_state["scenario"], console)
    start = time.perf_counter()
    payload: Any = input_state
    with (
        runner.holding(saver, thread_id, console=console),
        runner.stopping_on_store_failure(graph, thread_id),
        cancel_on_interrupt(),  # Ctrl-C abandons the model requests in flight, as in runner.execute
    ):
        while True:
            stream_run(graph, payload, config, context, progress)
            snapshot = graph.get_state(runner.run_config(thread_id))
            pending = [i for task in snapshot.tasks for i in task.interrupts]
            people = [i for i in pending if isinstance(i.value, dict) and i.value.get("reason") == "human"]
            if not (interactive and people and len(people) == len(pending)):
                break
            answers = {i.id: ask_person(i.value, console) for i in people}
            payload = Command(resume=answers if len(answers) > 1 else next(iter(answers.values())))
    return runner.RunOutcome(
        thread_id=thread_id,
        status="done" if runner.finished(snapshot) else "paused",
        values=dict(snapshot.values),
        interrupts=[i.value for i in pending],
        seconds=time.perf_counter() - start,
        checkpoint_id=snapshot.config["configurable"].get("checkpoint_id"),
    )


def _ablations(items: list[str] | None) -> Ablations:
    names = [n for item in items or [] for n in item.split(",") if n.strip()]
    try:
        return Ablations.of(names)
    except ValueError as exc:
        raise usage_error(f"--ablate: {exc}") from None


def register(app: typer.Typer) -> None:
    """Add the `groupchat` and `groupchat-report` commands to the sopgraph CLI."""

    @app.command("groupchat")
    @options(*RUN_OPTIONS)
    def groupchat(
        scenario: Annotated[str, typer.Argument(help=f"A story ({', '.join(packaged_scenarios())}) or a YAML path.")],
        rounds: Annotated[int | None, typer.Option(help="Override the scenario's number of rounds.")] = None,
        human: Annotated[list[str] | None, typer.Option(help="A character id you play (repeatable).")] = None,
        ablate: Annotated[
            list[str] | None,
            typer.Option(help="Switch off: private_chat, meeting, group_chat, reflection, think (repeatable)."),
        ] = None,
        seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
        report: Annotated[Path | None, typer.Option(help="Where to write the HTML report.")] = None,
        interactive: Annotated[
            bool, typer.Option(help="Ask at the terminal when a human character must move (else pause the run).")
        ] = True,
        *,
        opts: Options,
    ) -> None:
        """Run a group-chat story: rounds of update, private chat, meeting and group chat, then the vote."""
        from sopgraph.graphs import runner
        from sopgraph.graphs.cli.groupchat_report import write_report
        from sopgraph.graphs.groupchat import groupchat_input
        from sopgraph.graphs.runner import open_checkpointer
        from sopgraph.nodes.llm import resolve_model
        from sopgraph.tools.persistence import checkpointer_url, describe

        people = set(human or [])
        extra = [item for item in opts.role_model or [] if item.partition("=")[2] == HUMAN]
        people |= {item.partition("=")[0] for item in extra}
        try:
            state = groupchat_input(scenario, rounds=rounds, ablate=_ablations(ablate), seed=seed, humans=people)
        except ScenarioError as exc:
            raise fail(exc) from None
        story = state["scenario"]
        ctx = make_context(opts, role_model=[i for i in opts.role_model or [] if i not in extra])
        for character in story.characters:
            if character.model and character.model != HUMAN:
                resolve_model(character.model, ctx)
        thread_id = runner.new_thread_id(GRAPH)
        with open_checkpointer(opts.db) as saver, stopping_on_ctrl_c(thread_id, opts.db, saver):
            off = ", ".join(state["ablations"].names()) or "none"
            err.print(
                f"run [bold]{thread_id}[/]: {story.title} — {story.settings.rounds} rounds, model {ctx.model}, "
                f"ablations {off}, checkpoints in {describe(checkpointer_url(opts.db))}"
            )
            outcome = run_story(state, saver, ctx, thread_id=thread_id, interactive=interactive, console=err)
        print_summary(outcome)
        try:
            path = write_report(
                outcome.values, report or REPORTS / f"{thread_id}.html", run_id=thread_id, model=ctx.model
            )
        except RuntimeError as exc:  # matplotlib missing: the run itself is fine and checkpointed
            err.print(f"[yellow]no report:[/] {exc}")
            path = None
        else:
            err.print(f"report: {path}")
        finish(GRAPH, outcome, opts.as_json, report=str(path) if path else None)

    @app.command("groupchat-report")
    @options("db")
    def groupchat_report(
        run: Annotated[str, typer.Argument(help="The run (thread) id.")],
        out: Annotated[Path | None, typer.Option("--out", help="Where to write the HTML.")] = None,
        *,
        opts: Options,
    ) -> None:
        """Write the HTML report of a group-chat run (finished or not)."""
        from sopgraph.graphs import runner
        from sopgraph.graphs.cli.groupchat_report import write_report
        from sopgraph.graphs.runner import open_checkpointer

        with open_checkpointer(opts.db) as saver:
            name, ctx = runner.run_metadata(saver, run)
            if name != GRAPH:
                raise runner.RunError(f"run {run!r} is a {name} run, not a group chat")
            values = dict(runner.compile_graph(GRAPH, saver).get_state(runner.run_config(run)).values)
        path = write_report(values, out or REPORTS / f"{run}.html", run_id=run, model=ctx.model)
        err.print(f"report: {path}")
