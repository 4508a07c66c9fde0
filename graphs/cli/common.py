"""What every command shares: the two consoles, `fail()`, the shared options (decorators), the run context
they make, and the closing lines and exit code of a run (the exit codes are in graphs/outcomes.py)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sopgraph.graphs import outcomes, runner
from sopgraph.state.context import Context, model_name
from sopgraph.state.usage import UsageTotals, totals_by

out = Console()
"""Results a user or a script reads (tables, drawings, --json summaries)."""
err = Console(stderr=True)
"""Everything else: progress, the closing lines of a run, errors."""


def fail(message: object, code: int = outcomes.ERROR_EXIT) -> SystemExit:
    """A one-line error on stderr, to raise: `raise fail("...")` (code 2 for bad usage). A SystemExit, so it
    passes typer's standalone handling unchanged; the message is text, not rich markup (`tasks[x1]`)."""
    err.print(f"[red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    return SystemExit(code)


def usage_error(message: object) -> SystemExit:
    return fail(message, outcomes.USAGE_EXIT)


@dataclass
class Options:
    """The shared options a command was given; those it does not take keep these defaults."""

    db: str | None = None
    model: str | None = None
    role_model: list[str] | None = None
    budget_tokens: int | None = None
    budget_usd: float | None = None
    wait: bool = False
    as_json: bool = False


MODEL_HELP = (
    "Model for every role or character: local, local:1.5b, a LangChain provider string (openai:gpt-4o-mini, "
    "ollama:llama3.2, ...), scripted."
)
SHARED: dict[str, Any] = {
    "db": Annotated[
        str | None,
        typer.Option(
            "--db", help="Checkpointer: SQLite path (default .sopgraph/state.sqlite), postgresql://..., memory."
        ),
    ],
    "model": Annotated[str | None, typer.Option("--model", help=MODEL_HELP)],
    "role_model": Annotated[
        list[str] | None,
        typer.Option("--role-model", help="Per-role (company, demo) or per-character model, NAME=MODEL (repeatable)."),
    ],
    "budget_tokens": Annotated[
        int | None, typer.Option("--budget-tokens", help="Pause the run after this many tokens.")
    ],
    "budget_usd": Annotated[float | None, typer.Option("--budget-usd", help="Pause the run after this many dollars.")],
    "wait": Annotated[
        bool, typer.Option("--wait", help="If another process is executing the run, wait for it instead of failing.")
    ],
    "as_json": Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout (progress stays on stderr).")
    ],
}
"""Each shared option's annotation, by its `Options` field; its default is the field's."""
assert set(SHARED) == {f.name for f in fields(Options)}

RUN_OPTIONS = ("db", "model", "role_model", "budget_tokens", "budget_usd", "as_json")
"""What every command that starts a run takes."""

F = TypeVar("F", bound=Callable[..., Any])


def options(*names: str) -> Callable[[F], F]:
    """Decorator: the command also takes the shared options `names` (after its own), and receives them as
    one keyword argument `opts: Options`. One definition per option, so `--db` means the same everywhere."""
    unknown = set(names) - set(SHARED)
    if unknown:
        raise ValueError(f"no shared option {', '.join(sorted(unknown))}")
    defaults = Options()

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name != "opts"]
        keyword = inspect.Parameter.KEYWORD_ONLY
        added = [
            inspect.Parameter(name, keyword, default=getattr(defaults, name), annotation=SHARED[name]) for name in names
        ]

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in names if name in kwargs}
            return func(*args, opts=Options(**given), **kwargs)

        params = [*own, *added]
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}  # typer reads these, not func's
        return command  # type: ignore[return-value]

    return decorate


def role_models(items: list[str] | None) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items or []:
        role, sep, model = item.partition("=")
        if not sep or not role or not model:
            raise usage_error(f"--role-model: expected NAME=MODEL, got {item!r}")
        pairs[role] = model
    return pairs


def make_context(opts: Options, role_model: list[str] | None = None) -> Context:
    """The run's Context from the shared options (`role_model` replaces opts.role_model when given); every
    model it names is resolved now, so a bad name fails before anything runs."""
    from sopgraph.nodes.llm import cost_of, preflight

    ctx = Context()
    if opts.model:
        ctx.model = opts.model
    names = role_models(opts.role_model if role_model is None else role_model)
    ctx.models = dict(names)
    ctx.budget_tokens, ctx.budget_usd = opts.budget_tokens, opts.budget_usd
    if opts.budget_usd is not None:  # a dollar budget on a model without a price would never be spent
        named = {model_name(ctx.model), *names.values()}
        unpriced = sorted(n for n in named if cost_of(n, 10**6, 10**6) == 0)
        if unpriced:
            raise usage_error(
                f"--budget-usd: {', '.join(unpriced)} has no price, so a dollar budget is never spent; "
                "use --budget-tokens"
            )
    preflight(ctx)
    return ctx


def report(outcome: runner.RunOutcome) -> None:
    """The closing lines of a run: where it stands, what it cost, how to continue."""
    usage = outcome.values.get("usage") or []
    totals = UsageTotals.of(usage)
    err.print(
        f"[bold]{outcome.thread_id}[/]: {outcome.status} in {outcome.seconds:.1f}s — "
        f"{totals.calls} model calls, {totals.input_tokens} in / {totals.output_tokens} out tokens, "
        f"${totals.cost_usd:.4f}"
    )
    if len(usage) > 0:
        table = Table("role", "calls", "tokens in", "tokens out", "seconds", box=None)
        for role, t in totals_by(usage).items():
            table.add_row(role, str(t.calls), str(t.input_tokens), str(t.output_tokens), f"{t.latency_s:.1f}")
        err.print(table)
    for value in outcome.interrupts:
        message = value.get("message") if isinstance(value, dict) else value
        err.print(f"[yellow]paused:[/] {message}")
        if isinstance(value, dict) and value.get("reason") == "budget":
            flag = "--budget-usd N" if str(message).startswith("dollar") else "--budget-tokens N"
            err.print(f"  continue with: sopgraph resume {outcome.thread_id} {flag}")
        else:
            err.print(f"  continue with: sopgraph resume {outcome.thread_id} --answer JSON")


@contextlib.contextmanager
def stopping_on_ctrl_c(thread_id: str, db: str | None, saver: Any = None) -> Iterator[None]:
    """Ctrl-C during a run (tools/cancel.py stops it at once): one line naming the run and the command that
    continues it, and exit code 130, instead of the CLI library's own "Aborted!" and 1. `saver`, when given,
    tells a run that stored nothing yet (nothing to resume) from one that did."""
    from sopgraph.tools.persistence import checkpointer_url, describe

    try:
        yield
    except KeyboardInterrupt:
        url = checkpointer_url(db)
        if url == "memory":
            line = f"interrupted: run {thread_id} was kept in memory only and is gone (--db keeps runs to resume)"
        elif saver is not None and not _stored(saver, thread_id):
            line = f"interrupted before run {thread_id} stored a checkpoint; nothing to resume"
        else:
            line = (
                f"interrupted: run {thread_id} stopped; continue with: "
                f"sopgraph resume {thread_id} --db {shlex.quote(describe(url))}"
            )
        raise fail(line, outcomes.INTERRUPTED_EXIT) from None


def _stored(saver: Any, thread_id: str) -> bool:
    try:
        return saver.get_tuple(runner.run_config(thread_id)) is not None
    except Exception:  # the store cannot say now: name the command anyway
        return True


def emit(data: Any) -> None:
    """A --json answer: one JSON document on stdout."""
    typer.echo(outcomes.dumps(data))


def finish(graph: str, outcome: runner.RunOutcome, as_json: bool, **extra: Any) -> None:
    """After `report`: the JSON summary when asked, and the exit code of the run's result (0 done, 3 gave up,
    4 paused)."""
    data = outcomes.summary(graph, outcome, **extra)
    if as_json:
        emit(data)
    if data["exit_code"]:
        raise SystemExit(data["exit_code"])
