"""`sopgraph groupchat` end to end on the scripted model: progress, report, a human player, resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from groupchat_script import Playbook

from sopgraph.graphs.cli import groupchat as groupchat_cli
from sopgraph.graphs.cli.groupchat_report import render_report
from sopgraph.graphs.groupchat import groupchat_input
from sopgraph.state.context import Context


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports default to ./.sopgraph/reports: keep them out of the working tree."""
    monkeypatch.chdir(tmp_path)


def _thread(err: str) -> str:
    match = re.search(r"run (groupchat-[0-9a-f]+)", err)
    assert match, err
    return match.group(1)


def test_groupchat_command_runs_a_story_and_writes_the_report(tmp_path: Path, cli) -> None:
    db, report = str(tmp_path / "gc.sqlite"), tmp_path / "story.html"
    code, _, err = cli(
        "groupchat", "casting", "--model", "scripted", "--rounds", "1", "--ablate", "think",
        "--db", db, "--report", str(report),
    )  # fmt: skip
    assert code == 0, err
    thread = _thread(err)
    for header in ("round 1/1 · update", "round 1/1 · private chat", "round 1/1 · confidential meeting",
                   "round 1/1 · group chat", "round 1/1 · settlement", "settled"):  # fmt: skip
        assert header in err
    assert "chooses" in err and "votes" in err and "Winner:" in err and "ablations no_think" in err
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 2  # relationship heatmaps and belief trajectories
    assert "Casting the lead" in page and "Winner:" in page and "own_noself" in page

    again = tmp_path / "again.html"
    code, _, err = cli("groupchat-report", thread, "--db", db, "--out", str(again))
    assert code == 0 and again.exists(), err
    code, _, err = cli("history", thread, "--db", db)
    assert code == 0


def test_bad_scenario_and_ablation_are_one_line_errors(tmp_path: Path, cli) -> None:
    code, _, err = cli("groupchat", "atlantis", "--model", "scripted", "--db", "memory")
    assert code == 1 and "no such scenario file" in err
    code, _, err = cli("groupchat", "court", "--ablate", "gossip", "--db", "memory")
    assert code != 0 and "unknown ablation" in err
    code, _, err = cli("groupchat", "court", "--human", "zed", "--db", "memory")
    assert code == 1 and "no character zed" in err


def test_a_human_player_pauses_the_run_and_resume_answers(tmp_path: Path, cli) -> None:
    db = str(tmp_path / "human.sqlite")
    args = ["groupchat", "philosophers", "--model", "scripted", "--rounds", "1", "--human", "lina"]
    code, _, err = cli(*args, "--no-interactive", "--ablate", "meeting,private_chat", "--db", db)
    assert code == 4 and "paused" in err and "sopgraph resume" in err, err
    thread = _thread(err)
    for _ in range(12):
        action = re.findall(r"is yours to play: (\w+)", err)[-1]
        answer = {"candidate": "aria", "reason": "clear"} if action == "vote" else {"speech": "Lina speaks up."}
        code, _, err = cli("resume", thread, "--answer", json.dumps(answer), "--db", db)
        assert code == (4 if "paused" in err else 0), err
        if "paused" not in err:
            break
    assert "done" in err
    code, _, err = cli("groupchat-report", thread, "--db", db, "--out", str(tmp_path / "h.html"))
    assert "Lina speaks up." in (tmp_path / "h.html").read_text()


def test_interactive_play_asks_at_the_terminal(monkeypatch: pytest.MonkeyPatch, cli) -> None:
    asked: list[str] = []

    def prompt(label: str, default: str | None = None) -> str:
        asked.append(label)
        options = re.search(r"\[(.*)\]", label)
        return options.group(1).split("/")[0] if options else "my words"

    monkeypatch.setattr(groupchat_cli.typer, "prompt", prompt)
    code, _, err = cli(
        "groupchat", "philosophers", "--model", "scripted", "--rounds", "1", "--human", "aria",
        "--ablate", "meeting", "--db", "memory",
    )  # fmt: skip
    assert code == 0 and "done" in err, err
    assert any(a.startswith("partner") for a in asked) and any(a.startswith("candidate") for a in asked)
    assert any(a.startswith("speech") for a in asked)


def test_report_marks_visibility_and_clamps(scripted) -> None:  # type: ignore[no-untyped-def]
    from sopgraph.graphs.groupchat import build_groupchat_graph

    name, model = scripted
    model.script = Playbook().on("Vote", lambda r, c: {"candidate": c, "reason": "me"})
    out = build_groupchat_graph().compile().invoke(groupchat_input("court", rounds=1), context=Context(model=name))
    page = render_report(out, run_id="r1")
    assert "badge private" in page and "badge confidential" in page and "badge public" in page
    assert "clamped" in page and "Clamped answers" in page
    assert "Judge Hale" in page and out["outcome"].winner in {"dana", "victor"}
