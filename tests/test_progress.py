"""Custom stream events from long nodes (nodes/progress.py): which file the engineer and QA write, rewrite or
fix, the test run's start check and counts, the debug round and its judged candidates; the group chat's stage
and round as they start and who speaks in each turn; and the CLI spinner showing them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from company_script import FILES
from groupchat_script import Playbook
from langgraph.checkpoint.memory import InMemorySaver

from sopgraph.graphs import runner
from sopgraph.graphs.company import build_company_graph, company_input
from sopgraph.graphs.groupchat import build_groupchat_graph, groupchat_input
from sopgraph.nodes.progress import emit, reporter
from sopgraph.scenarios import parse_scenario
from sopgraph.state.context import Context
from sopgraph.state.groupchat import Scenario

IDEA = "a command-line calculator"


def story() -> Scenario:
    """Two rounds, two group-chat sub-rounds, three principals and one bystander."""
    characters = [
        {
            "id": cid,
            "name": cid.title(),
            "principal": cid != "dora",
            "background": f"{cid.title()} is here.",
            "scratch": f"{cid.title()} keeps a secret.",
            "objective": "Win.",
            "beliefs": {"The river is clean": 50},
        }
        for cid in ("ann", "ben", "cal", "dora")
    ]
    return parse_scenario(
        {
            "title": "River town",
            "rules": "Four neighbours argue about the river.",
            "characters": characters,
            "settings": {"rounds": 2, "group_subrounds": 2, "seed": 1},
        }
    )


def of(events: list[dict[str, Any]], event: str, **fields: Any) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == event and all(e.get(k) == v for k, v in fields.items())]


def test_a_company_run_streams_files_test_runs_and_debug_rounds(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.buggy_until_fix = True  # test run 1 fails on calc.py, one debug round fixes it
    graph = build_company_graph().compile()
    payload = company_input(IDEA, out_dir=tmp_path, max_debug=2)
    events = list(graph.stream(payload, context=Context(model=name), stream_mode="custom"))
    assert all({"node", "event", "message"} <= set(e) for e in events)

    written = of(events, "file", node="write_code", role="engineer", action="write")
    assert sorted(e["file"] for e in written) == sorted(FILES) and {e["version"] for e in written} == {1}
    assert "engineer writes calc.py v1" in next(e["message"] for e in written if e["file"] == "calc.py")
    tests = {e["file"]: e["tests_of"] for e in of(events, "file", node="write_test", role="qa")}
    assert tests["tests/test_calc.py"] == "calc.py" and tests["tests/test_fmt.py"] == "fmt.py"

    runs = of(events, "tests", node="run_tests")
    assert [(e["attempt"], e["phase"]) for e in runs] == [(a, p) for a in (1, 2) for p in ("start", "checked", "done")]
    checked = of(runs, "tests", phase="checked")
    assert all(e["starts"] is True and e["problems"] == 0 and e["test_files"] == 2 for e in checked)
    first, second = of(runs, "tests", phase="done")
    assert (first["passed"], first["failed"], first["errors"], first["all_passed"]) == (2, 1, 0, False)
    assert (second["passed"], second["failed"], second["all_passed"]) == (3, 0, True)
    assert first["message"] == "test run 1 done: 2 passed, 1 failed, 0 errors"

    (start,) = of(events, "debug", node="debug", phase="start")
    assert (start["round"], start["max_rounds"], start["files"]) == (1, 2, ["calc.py"])
    (fix,) = of(events, "file", node="debug", action="fix")
    assert (fix["file"], fix["version"], fix["role"]) == ("calc.py", 2, "engineer")
    candidates = of(events, "debug", phase="candidate", file="calc.py")
    assert candidates and [e["judged"] for e in candidates] == list(range(1, len(candidates) + 1))
    (judged,) = of(events, "debug", phase="judged")
    assert (judged["file"], judged["changed"], judged["passed"], judged["total"]) == ("calc.py", True, 3, 3)
    assert judged["candidates"] == 4 and judged["judged"] == len(candidates)
    # The order a watcher sees: the fix is announced before its candidates, the run after the debug round.
    order = [(e["event"], e.get("phase"), e.get("attempt")) for e in events if e["event"] != "model"]
    assert order.index(("debug", "judged", None)) < order.index(("tests", "start", 2))


def _played(scripted: tuple[str, Any]) -> list[dict[str, Any]]:
    name, model = scripted
    model.script = Playbook()
    graph = build_groupchat_graph().compile()
    return list(graph.stream(groupchat_input(story()), context=Context(model=name), stream_mode="custom"))


def test_a_group_chat_streams_its_stages_and_speakers(scripted) -> None:  # type: ignore[no-untyped-def]
    events = _played(scripted)
    stages = [(e["round"], e["stage"], e["sub_round"]) for e in of(events, "stage")]
    for round_ in (1, 2):
        assert (round_, "update", 0) in stages
        for stage in ("private_chat", "meeting"):
            assert (round_, stage, 0) in stages
        assert stages.index((round_, "group_chat", 1)) < stages.index((round_, "group_chat", 2))
    assert stages[0] == (1, "update", 0) and stages[-1][1] == "settlement"
    assert len(stages) == len(set(stages))  # each stage announced once, as it starts
    assert of(events, "stage", stage="group_chat", sub_round=2)[0]["message"] == (
        "round 1 of 2: group chat, sub-round 2 of 2"
    )

    group = of(events, "speaker", stage="group_chat")
    assert {(e["character"], e["round"], e["sub_round"]) for e in group} == {
        (c, r, s) for c in ("ann", "ben", "cal", "dora") for r in (1, 2) for s in (1, 2)
    }
    assert all(e["node"] == "speak" and e["name"] == e["character"].title() for e in group)
    private = of(events, "speaker", stage="private_chat", round=1)
    assert private and all(e["node"] == "private_turn" and e["to"] != e["character"] for e in private)
    first = private[0]
    assert first["line"] == 1 and first["message"].startswith(f"{first['name']} speaks to {first['to'].title()}")
    # Lines alternate between the two sides of a conversation.
    convo = [e for e in private if e["sub_round"] == first["sub_round"]]
    assert [e["character"] for e in convo[:2]] == [first["character"], first["to"]]


class _Spinner:
    """The part of rich's Console that runner.execute uses: every status line it shows."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def print(self, *args: object, **kwargs: object) -> None:
        pass

    @contextmanager
    def status(self, text: str, **kwargs: object) -> Iterator[Any]:
        self.shown.append(text)
        shown = self.shown

        class Status:
            def update(self, text: str) -> None:
                shown.append(text)

        yield Status()


def test_the_cli_spinner_shows_the_file_being_written_and_the_test_counts(company, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, script = company
    script.buggy_until_fix = True
    graph = build_company_graph().compile(checkpointer=InMemorySaver(), name="company")
    spinner = _Spinner()
    payload = company_input(IDEA, out_dir=tmp_path, max_debug=2)
    runner.execute(graph, payload, runner.run_config("spin-co"), Context(model=name), console=spinner)  # type: ignore[arg-type]
    shown = "\n".join(spinner.shown)
    for line in (
        "write_code: engineer writes calc.py v1",
        "write_test: qa writes tests/test_calc.py v1 (tests of calc.py)",
        "run_tests: test run 1: the program starts; running 2 test files",
        "run_tests: test run 1 done: 2 passed, 1 failed, 0 errors",
        "debug: debug round 1 of 2: fixing calc.py",
        "debug: engineer fixes calc.py v2",
        "debug: calc.py: 4 candidates drawn",
    ):
        assert line in shown, line


def test_the_cli_spinner_shows_the_stage_and_who_speaks(scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    model.script = Playbook()
    graph = build_groupchat_graph().compile(checkpointer=InMemorySaver(), name="groupchat")
    spinner = _Spinner()
    runner.execute(graph, groupchat_input(story()), runner.run_config("spin-gc"), Context(model=name), console=spinner)  # type: ignore[arg-type]
    shown = "\n".join(spinner.shown)
    assert "advance: round 1 of 2: private chat" in shown
    assert "close_subround: round 2 of 2: group chat, sub-round 2 of 2" in shown
    assert "speak: Dora speaks (round 2, group chat, sub-round 2)" in shown
    assert "private_turn: " in shown and " speaks to " in shown


def test_events_are_silent_outside_a_graph_run_and_reach_it_from_worker_threads() -> None:
    emit("file", "nobody listens")  # no graph run: nothing to send, no error
    from langgraph.graph import START, StateGraph
    from typing_extensions import TypedDict

    class State(TypedDict):
        n: int

    def node(state: State) -> State:
        progress = reporter()
        workers = [threading.Thread(target=progress, args=("tick", f"worker {i}"), kwargs={"i": i}) for i in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return {"n": state["n"] + 1}

    graph = StateGraph(State).add_node("work", node).add_edge(START, "work").compile()
    events = list(graph.stream({"n": 0}, stream_mode="custom"))
    assert sorted(e["i"] for e in events) == [0, 1, 2]
    assert all(e["node"] == "work" and e["event"] == "tick" for e in events)
