"""Running compiled graphs as resumable runs: start, resume, replay, fork, list, with rich progress.

A run is a LangGraph thread. Its first checkpoint's metadata records the graph name and the run context
(models, budget), so `resume`, `replay` and `fork` rebuild the same graph with the same settings.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from langgraph._internal._constants import NULL_TASK_ID
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.constants import START
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot
from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from sopgraph.graphs.registry import builder_for, files_hook
from sopgraph.state import checkpoint_types
from sopgraph.state.context import Context
from sopgraph.state.usage import UsageRecord
from sopgraph.tools import persistence
from sopgraph.tools.cancel import cancel_on_interrupt
from sopgraph.tools.persistence import Holder, Lease, run_lease, store_error_line, store_errors

GRAPH_KEY = "sopgraph_graph"
DURABILITY = "sync"
"""Each step's checkpoint is stored before the next step starts: a kill or a failed write loses at most the
step that was running (LangGraph's default, "async", let stores lag several steps behind the run)."""
CONTEXT_KEY = "sopgraph_context"


class RunError(RuntimeError):
    """A run cannot be found or continued; one line for the user."""


@dataclass
class RunOutcome:
    thread_id: str
    status: str
    """`done`, or `paused` when the run waits on an interrupt (budget spent, human review)."""
    values: dict[str, Any]
    interrupts: list[Any] = field(default_factory=list)
    seconds: float = 0.0
    checkpoint_id: str | None = None


@dataclass
class RunInfo:
    thread_id: str
    graph: str
    checkpoints: int
    last_step: int
    updated: str
    next_nodes: tuple[str, ...] = ()
    started: str = ""


def open_checkpointer(setting: str | None = None) -> AbstractContextManager[BaseCheckpointSaver]:
    """The checkpointer a setting names (a SQLite path, `postgresql://...`, `memory`; see
    `sopgraph.tools.persistence`), reviving exactly the types sopgraph.state defines for checkpoints."""
    return persistence.open_checkpointer(setting, allowed=checkpoint_types())


def new_thread_id(graph: str) -> str:
    return f"{graph}-{uuid.uuid4().hex[:10]}"


def compile_graph(name: str, checkpointer: BaseCheckpointSaver | None) -> CompiledStateGraph:
    return builder_for(name)().compile(checkpointer=checkpointer, name=name)


def run_config(thread_id: str, checkpoint_id: str | None = None, **metadata: Any) -> Any:
    """A RunnableConfig for a run (typed Any: LangGraph's TypedDict does not take our extra keys kindly)."""
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable, "metadata": metadata, "recursion_limit": 10_000}


def _run_metadata(name: str, context: Context) -> dict[str, str]:
    return {GRAPH_KEY: name, CONTEXT_KEY: json.dumps(context.to_dict())}


def finished(snapshot: StateSnapshot) -> bool:
    """Nothing left to run: no next task, and no task of the latest checkpoint's step (a step interrupted
    after all its parallel workers saved their writes has tasks but no `next`; resuming commits it)."""
    return not snapshot.next and not snapshot.tasks


def _interrupts(snapshot: StateSnapshot) -> list[Any]:
    return [i.value for task in snapshot.tasks for i in task.interrupts]


def _tokens(update: Any) -> int:
    if not isinstance(update, dict):
        return 0
    records = update.get("usage") or []
    return sum(r.total_tokens for r in records if isinstance(r, UsageRecord))


def execute(
    graph: CompiledStateGraph,
    payload: Any,
    config: dict[str, Any],
    context: Context,
    console: Console | None = None,
    lease: Lease | None = None,
) -> RunOutcome:
    """Stream a run to its end or its next interrupt, printing a line per finished node."""
    console = console or Console(stderr=True)
    thread_id = config["configurable"]["thread_id"]
    config = {**config, "metadata": {**config.get("metadata", {}), **_run_metadata(graph.name, context)}}
    start = time.perf_counter()
    last = start
    with (
        console.status(f"[bold]{graph.name}[/] {thread_id}: starting", spinner="dots") as status,
        stopping_on_store_failure(graph, thread_id),
        cancel_on_interrupt(),  # Ctrl-C abandons the model requests in flight (repair's k candidates among them)
    ):
        stream: Any = graph.stream
        modes = ["updates", "custom"]
        for mode, chunk in stream(payload, config, context=context, stream_mode=modes, durability=DURABILITY):
            now = time.perf_counter()
            if mode == "custom":  # a node saying what it waits on (the gateway: a model call)
                if isinstance(chunk, dict) and chunk.get("node"):
                    doing = f"{chunk['node']}: {chunk.get('message', '')}"
                    status.update(f"[bold]{graph.name}[/] {thread_id}: {doing} ({now - start:.0f}s)")
                continue
            for node, update in chunk.items():
                if node == "__interrupt__":
                    continue
                tokens = _tokens(update)
                extra = f", {tokens} tokens" if tokens else ""
                console.print(f"  [green]✓[/] {node} [dim]({now - last:.1f}s{extra})[/]")
            last = now
            status.update(f"[bold]{graph.name}[/] {thread_id}: running ({now - start:.0f}s)")
            if lease is not None and lease.lost.is_set():
                raise RunError(f"run {thread_id!r}: another process took over its lease; stopped here")
    snapshot = graph.get_state(run_config(thread_id))  # the head of the thread, wherever this run started
    interrupts = _interrupts(snapshot)
    return RunOutcome(
        thread_id=thread_id,
        status="done" if finished(snapshot) else "paused",
        values=dict(snapshot.values),
        interrupts=interrupts,
        seconds=time.perf_counter() - start,
        checkpoint_id=snapshot.config["configurable"].get("checkpoint_id"),
    )


@contextmanager
def stopping_on_store_failure(graph: CompiledStateGraph, thread_id: str) -> Iterator[None]:
    """A checkpoint that cannot be stored stops the run at that step (checkpoints are stored before the next
    step starts), with one line naming the last checkpoint that was stored."""
    try:
        yield
    except store_errors() as exc:
        raise RunError(
            f"run {thread_id!r} stopped: storing its checkpoint failed ({store_error_line(exc)}); "
            f"{_last_good(graph, thread_id)}"
        ) from exc


def _last_good(graph: CompiledStateGraph, thread_id: str) -> str:
    try:
        saved = graph.checkpointer.get_tuple(run_config(thread_id)) if graph.checkpointer else None  # type: ignore[union-attr]
    except Exception:
        return "the store cannot be read now; `sopgraph history` names the last checkpoint once it is back"
    if saved is None:
        return "no checkpoint of it was stored"
    step = (saved.metadata or {}).get("step", "?")
    cp = saved.config["configurable"]["checkpoint_id"]
    return f"last stored checkpoint {cp} (step {step}); continue with `sopgraph resume {thread_id}`"


def start_run(
    name: str,
    payload: dict[str, Any],
    checkpointer: BaseCheckpointSaver,
    context: Context,
    *,
    thread_id: str | None = None,
    console: Console | None = None,
    wait: bool = False,
) -> RunOutcome:
    thread_id = thread_id or new_thread_id(name)
    graph = compile_graph(name, checkpointer)
    with holding(checkpointer, thread_id, wait=wait, console=console) as lease:
        return execute(graph, payload, run_config(thread_id), context, console, lease)


@contextmanager
def holding(
    checkpointer: BaseCheckpointSaver, thread_id: str, *, wait: bool = False, console: Console | None = None
) -> Iterator[Lease]:
    """The run's lease (one live executor per run), telling the console when it waits for another holder."""

    def waiting(holder: Holder) -> None:
        (console or Console(stderr=True)).print(f"waiting for run {thread_id} to be released by {holder.describe()}")

    with run_lease(checkpointer, thread_id, wait=wait, on_wait=waiting) as lease:
        yield lease


def run_metadata(checkpointer: BaseCheckpointSaver, thread_id: str) -> tuple[str, Context]:
    """The graph name and context a run was started with."""
    meta: dict[str, Any] | None = None
    for item in checkpointer.list({"configurable": {"thread_id": thread_id}}):  # newest first
        meta = dict(item.metadata or {})
        if meta.get(GRAPH_KEY):
            break
    if meta is None:
        raise RunError(f"no run {thread_id!r} in this checkpointer")
    name = meta.get(GRAPH_KEY)
    if not name:
        raise RunError(f"run {thread_id!r} was not started by sopgraph (no graph name in its metadata)")
    raw = meta.get(CONTEXT_KEY)
    return str(name), Context.from_dict(json.loads(raw) if isinstance(raw, str) else None)


@contextmanager
def _opened(checkpointer: BaseCheckpointSaver, thread_id: str) -> Iterator[tuple[CompiledStateGraph, Context]]:
    name, context = run_metadata(checkpointer, thread_id)
    yield compile_graph(name, checkpointer), context


def _merge(context: Context, overrides: dict[str, Any] | None) -> Context:
    data = context.to_dict()
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return Context.from_dict(data)


def resume_run(
    checkpointer: BaseCheckpointSaver,
    thread_id: str,
    *,
    answer: Any = None,
    overrides: dict[str, Any] | None = None,
    console: Console | None = None,
    wait: bool = False,
) -> RunOutcome:
    """Continue a run after a crash, a spent budget or an interrupt (with `answer` as the resume value)."""
    with _opened(checkpointer, thread_id) as (graph, context), holding(checkpointer, thread_id, wait=wait) as lease:
        context = _merge(context, overrides)
        config = run_config(thread_id)
        snapshot = graph.get_state(config)
        if finished(snapshot):
            raise RunError(f"run {thread_id!r} has finished; nothing to resume (use replay or fork)")
        payload: Any = _resume_payload(snapshot, True if answer is None else answer)
        context = _checkpoint_files(graph, snapshot, context, thread_id)
        return execute(graph, payload, config, context, console, lease)


def _resume_payload(snapshot: StateSnapshot, answer: Any) -> Command | None:
    """Parallel tasks can pause together (all over budget at once); LangGraph then wants one answer per
    interrupt id. An answer already keyed by those ids is passed on; any other goes to every question."""
    pending = [i for task in snapshot.tasks for i in task.interrupts]
    if not pending:
        return None
    ids = {i.id for i in pending}
    if len(pending) > 1 and not (isinstance(answer, dict) and answer and set(answer) <= ids):
        answer = {i: answer for i in ids}
    return Command(resume=answer)


def history(checkpointer: BaseCheckpointSaver, thread_id: str) -> list[StateSnapshot]:
    """Every checkpoint of a run, newest first."""
    with _opened(checkpointer, thread_id) as (graph, _):
        return list(graph.get_state_history(run_config(thread_id)))


def _checkpoint_config(checkpointer: BaseCheckpointSaver, thread_id: str, checkpoint_id: str) -> Any:
    config = run_config(thread_id, checkpoint_id)
    if checkpointer.get_tuple(config) is None:
        raise RunError(f"run {thread_id!r} has no checkpoint {checkpoint_id!r}")
    return config


def replay_run(
    checkpointer: BaseCheckpointSaver,
    thread_id: str,
    checkpoint_id: str,
    *,
    console: Console | None = None,
    wait: bool = False,
) -> RunOutcome:
    """Re-run from a past checkpoint: steps after it execute again, on a new branch of the run."""
    with _opened(checkpointer, thread_id) as (graph, context), holding(checkpointer, thread_id, wait=wait) as lease:
        config = _checkpoint_config(checkpointer, thread_id, checkpoint_id)
        context = _checkpoint_files(graph, graph.get_state(config), context, thread_id, branch="replay")
        return execute(graph, None, config, context, console, lease)


def fork_run(
    checkpointer: BaseCheckpointSaver,
    thread_id: str,
    checkpoint_id: str,
    values: dict[str, Any],
    *,
    console: Console | None = None,
    run: bool = True,
    wait: bool = False,
) -> RunOutcome:
    """Edit the state at a past checkpoint (a new branch) and continue from there: a "what if"."""
    with _opened(checkpointer, thread_id) as (graph, context), holding(checkpointer, thread_id, wait=wait) as lease:
        config = _checkpoint_config(checkpointer, thread_id, checkpoint_id)
        snapshot = graph.get_state(config)
        edits = validated_edits(graph, dict(snapshot.values), values)
        writes = list(edits.items())
        if START in snapshot.next:  # the input checkpoint: edit the input its first task will write
            saved = checkpointer.get_tuple(config)
            given = saved.checkpoint["channel_values"].get(START) if saved else None
            if not isinstance(given, dict):
                raise RunError(f"checkpoint {checkpoint_id} holds no input to edit; fork from a later one")
            writes = [(START, {**given, **edits})]
        # A copy of the checkpoint keeps its pending tasks (Send fan-outs, Command gotos); the edits go on it as
        # the writes a resume applies first, as LangGraph stores a Command(update=...) given on resume.
        forked = graph.update_state(config, None, as_node="__copy__")
        if writes:
            checkpointer.put_writes(forked, writes, NULL_TASK_ID)
        out_dir = values.get("out_dir")
        context = _checkpoint_files(
            graph, graph.get_state(forked), context, thread_id, branch="fork", out_dir=str(out_dir) if out_dir else None
        )
        if not run:
            snap = graph.get_state(forked)
            return RunOutcome(
                thread_id, "paused", dict(snap.values), checkpoint_id=forked["configurable"]["checkpoint_id"]
            )
        return execute(graph, None, run_config(thread_id), context, console, lease)


def validated_edits(graph: CompiledStateGraph, current: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Check a fork's edits against the state schema before anything is written: each key must be a state
    field, and the field's value after the edit (through its reducer, if it has one) must be of its type.
    Returns the edits to apply, as the field's types (a JSON object becomes its model)."""
    unknown = set(values) - set(graph.builder.channels)
    if unknown:
        raise RunError(f"cannot set {', '.join(sorted(unknown))}: not in the {graph.name} state")
    hints = get_type_hints(graph.builder.state_schema, include_extras=True)
    edits: dict[str, Any] = {}
    for key, raw in values.items():
        hint = hints.get(key, Any)
        base, reducer = hint, None
        if get_origin(hint) is Annotated:
            base, *meta = get_args(hint)
            reducer = next((getattr(m, "reducer", m) for m in meta if callable(getattr(m, "reducer", m))), None)
        adapter: TypeAdapter[Any] = TypeAdapter(base)
        try:
            value = adapter.validate_python(raw)
        except ValidationError as exc:
            if reducer is None:
                raise RunError(f"cannot set {key}: {_first_error(exc)}") from None
            value = raw  # a partial update its reducer understands (a persona patch), checked below
        try:
            if reducer is not None:
                adapter.validate_python(reducer(current.get(key), value))
        except ValidationError as exc:
            raise RunError(f"cannot set {key}: {_first_error(exc)}") from None
        except Exception as exc:
            raise RunError(f"cannot set {key}: {' '.join(str(exc).split())[:200]}") from None
        edits[key] = value
    return edits


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ()))
    return f"{where + ': ' if where else ''}{error['msg']} (got {error.get('input')!r:.60})"


def _checkpoint_files(
    graph: CompiledStateGraph,
    snapshot: StateSnapshot,
    context: Context,
    thread_id: str,
    *,
    branch: str | None = None,
    out_dir: str | None = None,
) -> Context:
    """Files on disk are a function of the checkpoint: a graph that writes files materialises the one a run
    continues from (a replay or fork into a directory of its own); returns the context to run with."""
    hook = files_hook(graph.name)
    if hook is None:
        return context
    try:
        result: Context = hook(dict(snapshot.values), context, thread_id=thread_id, branch=branch, out_dir=out_dir)
    except ValueError as exc:
        raise RunError(str(exc)) from exc
    return result


def list_runs(checkpointer: BaseCheckpointSaver) -> list[RunInfo]:
    """One entry per run (thread), most recently updated first."""
    runs: dict[str, RunInfo] = {}
    for item in checkpointer.list(None):
        thread_id = item.config["configurable"]["thread_id"]
        if item.config["configurable"].get("checkpoint_ns"):
            continue
        ts = str(item.checkpoint.get("ts", ""))
        step = int((item.metadata or {}).get("step", -1))
        info = runs.get(thread_id)
        if info is None:
            runs[thread_id] = RunInfo(
                thread_id, str((item.metadata or {}).get(GRAPH_KEY, "?")), 1, step, ts, started=ts
            )
            continue
        info.checkpoints += 1
        if ts > info.updated:
            info.updated, info.last_step = ts, step
        info.started = min(info.started, ts)
    return sorted(runs.values(), key=lambda r: r.updated, reverse=True)
