"""Serving the graphs on LangGraph's platform: langgraph.json's serializer allow-list, strict msgpack, and the
delivered repository in the final state."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from sopgraph.state import checkpoint_types

ROOT = Path(__file__).resolve().parents[1]


def _allow_list() -> list[list[str]]:
    config = json.loads((ROOT / "langgraph.json").read_text())
    return config["checkpointer"]["serde"]["allowed_msgpack_modules"]


def test_langgraph_json_allows_exactly_the_checkpoint_types() -> None:
    # Other test modules register Document types of their own in this process: only the package's count.
    expected = [list(t) for t in sorted(checkpoint_types()) if t[0].startswith("sopgraph.")]
    assert _allow_list() == expected, "run `make langgraph-json` to refresh langgraph.json"


def test_langgraph_json_serves_exactly_the_registered_graphs() -> None:
    """graphs/registry.py is the one graph list: langgraph.json's graphs are made from it (`make
    langgraph-json`, with the checkpointer and its allow-list), and each entry is its module's compiled graph
    under the registered name."""
    import importlib

    from sopgraph.graphs.registry import GRAPHS, SERVER_CHECKPOINTER, langgraph_config, served_graphs

    config = json.loads((ROOT / "langgraph.json").read_text())
    assert config == langgraph_config(config), "run `make langgraph-json` to refresh langgraph.json"
    assert config["checkpointer"]["path"] == SERVER_CHECKPOINTER  # the saver that carries the allow-list
    served = config["graphs"]
    assert served == served_graphs()
    for name, spec in served.items():
        path, attr = spec.split(":")
        assert (ROOT / path).is_file(), spec
        module = importlib.import_module(GRAPHS[name].split(":")[0])
        assert Path(module.__file__ or "").resolve() == (ROOT / path).resolve()
        assert getattr(module, attr).name == name


STRICT_RUN = textwrap.dedent(
    """
    import json, logging, sys
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from sopgraph.graphs.company import build_company_graph, company_input
    from sopgraph.graphs.demo import build_demo_graph
    from sopgraph.state.company import PRD, Delivery
    from sopgraph.state.context import Context
    from sopgraph.state.demo import Pitch

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    allowed = [tuple(t) for t in json.loads(sys.argv[1])] if sys.argv[1] != "none" else None
    serde = JsonPlusSerializer(allowed_msgpack_modules=allowed)
    ctx = Context(model="scripted")
    cases = [
        (build_demo_graph, {"idea": "a kite"}, Pitch),
        (build_company_graph, company_input("a calculator", out_dir=sys.argv[2], max_debug=0), PRD),
    ]
    for build, payload, kind in cases:
        graph = build().compile(checkpointer=InMemorySaver(serde=serde))
        config = {"configurable": {"thread_id": "t"}}
        graph.invoke(payload, config, context=ctx)
        values = graph.get_state(config).values
        assert any(isinstance(m.payload, kind) for m in values["pool"]), f"{kind.__name__} not revived"
        assert all(type(r).__name__ == "UsageRecord" for r in values["usage"])
    print("revived")
    """
)


def _strict(tmp_path: Path, allowed: str) -> subprocess.CompletedProcess[str]:
    env = {"LANGGRAPH_STRICT_MSGPACK": "true", "SOPGRAPH_MODEL": "scripted", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", STRICT_RUN, allowed, str(tmp_path / "repo")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
        check=False,
    )


def test_strict_msgpack_with_the_allow_list_revives_every_type_without_warnings(tmp_path: Path) -> None:
    done = _strict(tmp_path, json.dumps(_allow_list()))
    assert done.returncode == 0 and "revived" in done.stdout, done.stderr[-3000:]
    assert "unregistered" not in done.stderr and "allowed_msgpack_modules" not in done.stderr, done.stderr[-3000:]


def test_strict_msgpack_without_it_blocks_our_types(tmp_path: Path) -> None:
    """The check above could fail: without the list LangGraph's strict mode refuses sopgraph's types."""
    done = _strict(tmp_path, "none")
    assert "not in allowed_msgpack_modules" in done.stderr and "sopgraph.state." in done.stderr


def test_the_final_state_carries_the_repository_and_export_writes_it(tmp_path: Path, cli) -> None:
    db, out_dir = str(tmp_path / "runs.sqlite"), tmp_path / "repo"
    code, out, err = cli(
        "company", "a calculator", "--model", "scripted", "--max-debug", "0", "--out", str(out_dir), "--db", db,
        "--json",
    )  # fmt: skip
    run = json.loads(out)["run"]

    from sopgraph.graphs import runner
    from sopgraph.graphs.runner import open_checkpointer

    with open_checkpointer(db) as saver:
        values = runner.compile_graph("company", saver).get_state(runner.run_config(run)).values
    repository = values["repository"]
    on_disk = {
        str(p.relative_to(out_dir)): p.read_text()
        for p in out_dir.rglob("*")
        if p.is_file() and ".sopgraph" not in p.parts
    }
    assert "README.md" in repository and "docs/prd.md" in repository
    assert all(on_disk.get(path) == text for path, text in repository.items())
    assert set(json.loads(out)["files"]) <= set(repository)

    copy = tmp_path / "copy"
    code, _, err = cli("export", run, "--out", str(copy), "--db", db)
    assert code == 0 and f"wrote {len(repository)} files" in err, err
    assert {p: (copy / p).read_text() for p in repository} == repository
    code, _, err = cli("export", "no-such-run", "--out", str(copy), "--db", db)
    assert code == 1 and "no run 'no-such-run'" in err


def test_drawings_label_edges_mark_review_points_and_ascii_never_crashes(cli) -> None:
    code, out, err = cli("draw", "groupchat", "--format", "ascii")
    assert code == 0 and "Traceback" not in err, err
    assert "| advance |" in out and "private_turn -> private_turn  (next line)" in out
    code, out, _ = cli("draw", "company")
    assert code == 0
    for label in ("LGTM", "LBTM", "fail, fixes left", "pass or out of fixes", "review point"):
        assert label in out, label
    code, out, _ = cli("draw", "demo", "--format", "ascii")
    assert code == 0 and "publish" in out and "loops" not in out


def test_model_calls_send_custom_stream_events_naming_the_node() -> None:
    from sopgraph.graphs.demo import build_demo_graph, demo_input
    from sopgraph.state.context import Context

    graph = build_demo_graph().compile()
    events = list(graph.stream(demo_input(max_revisions=0), context=Context(model="scripted"), stream_mode="custom"))
    assert [e["node"] for e in events] == ["writer", "critic"]
    assert events[0]["message"] == "writer waits for scripted (Pitch)"
    assert {k: events[0][k] for k in ("event", "role", "model", "schema")} == {
        "event": "model",
        "role": "writer",
        "model": "scripted",
        "schema": "Pitch",
    }


def test_the_cli_spinner_names_the_node_a_model_call_waits_in() -> None:
    """runner.execute (what every CLI run shows) puts each custom event in its status line: a long local call
    reads "writer: writer waits for scripted (Pitch)", not a bare spinner."""
    from contextlib import contextmanager

    from langgraph.checkpoint.memory import InMemorySaver

    from sopgraph.graphs import runner
    from sopgraph.graphs.demo import build_demo_graph, demo_input
    from sopgraph.state.context import Context

    shown: list[str] = []

    class Status:
        def update(self, text: str) -> None:
            shown.append(text)

    class Console:
        def print(self, *args: object, **kwargs: object) -> None:
            pass

        @contextmanager
        def status(self, text: str, **kwargs: object):  # type: ignore[no-untyped-def]
            shown.append(text)
            yield Status()

    graph = build_demo_graph().compile(checkpointer=InMemorySaver(), name="demo")
    config = runner.run_config("spinner")
    runner.execute(graph, demo_input(max_revisions=0), config, Context(model="scripted"), console=Console())  # type: ignore[arg-type]
    assert any("writer: writer waits for scripted (Pitch)" in line for line in shown), shown
    assert any("critic: critic waits for scripted" in line for line in shown), shown
