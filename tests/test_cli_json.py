"""The CLI for scripts: --json summaries on stdout and exit codes that tell done, paused, gave up and error."""

from __future__ import annotations

import json
from pathlib import Path

from sopgraph.graphs.outcomes import EXIT_CODES


def test_demo_json_and_runs_status(tmp_path: Path, cli) -> None:
    db = str(tmp_path / "j.sqlite")
    code, out, err = cli("demo", "a kettle", "--model", "scripted", "--db", db, "--json")
    data = json.loads(out)
    assert data["graph"] == "demo" and data["result"] in {"done", "gave up"}
    assert code == data["exit_code"] == EXIT_CODES[data["result"]], err
    assert data["outcome"] == {"done": "approved", "gave up": "gave up"}[data["result"]]
    assert data["usage"]["calls"] >= 2 and data["pitch"]["title"]

    code, out, _ = cli("demo", "--model", "scripted", "--budget-tokens", "150", "--db", db, "--json")
    paused = json.loads(out)
    assert code == 4 and paused["result"] == "paused" and paused["interrupts"][0]["reason"] == "budget"
    used = paused["usage"]["input_tokens"] + paused["usage"]["output_tokens"]
    assert 0 < used <= 150  # paused before the call that would exceed it (it used to stop at 334)

    code, out, _ = cli("runs", "--db", db, "--json")
    rows = {r["run"]: r for r in json.loads(out)}
    assert code == 0 and rows[data["run"]]["result"] == data["result"]
    assert rows[data["run"]]["outcome"] == data["outcome"] and rows[data["run"]]["tokens"] > 0
    assert rows[paused["run"]]["result"] == "paused" and rows[paused["run"]]["started"]
    code, out, _ = cli("runs", "--db", db)
    assert code == 0 and "status" in out and "paused" in out

    code, out, _ = cli("history", paused["run"], "--db", db, "--json")
    assert code == 0 and json.loads(out)[0]["checkpoint"] == paused["checkpoint"]

    code, out, _ = cli("resume", paused["run"], "--budget-tokens", "100000", "--db", db, "--json")
    resumed = json.loads(out)
    assert resumed["run"] == paused["run"] and resumed["result"] in {"done", "gave up"} and code == resumed["exit_code"]


def test_company_json_gave_up_exits_3(tmp_path: Path, cli) -> None:
    """The scripted model writes nonsense: the QA loop runs pytest, the tests fail, the company gives up."""
    out_dir = tmp_path / "repo"
    code, out, err = cli(
        "company", "a calculator", "--model", "scripted", "--max-debug", "0", "--out", str(out_dir), "--db", "memory",
        "--json",
    )  # fmt: skip
    data = json.loads(out)
    assert code == 3 and data["result"] == "gave up", err
    assert data["tests"].startswith("gave up") and data["out_dir"] == str(out_dir)
    assert data["files"] and all((out_dir / path).is_file() for path in data["files"])


def test_errors_exit_1_and_usage_errors_exit_2(cli) -> None:
    code, out, err = cli("demo", "--model", "nonsense", "--db", "memory", "--json")
    assert code == 1 and out == "" and "unknown model name" in err
    code, _, _ = cli("demo", "--max-revisions", "many")
    assert code == 2


def test_groupchat_json(tmp_path: Path, cli) -> None:
    report = tmp_path / "story.html"
    code, out, err = cli(
        "groupchat", "court", "--model", "scripted", "--rounds", "1", "--ablate", "meeting,private_chat,group_chat",
        "--db", "memory", "--report", str(report), "--json",
    )  # fmt: skip
    data = json.loads(out)
    assert code == 0 and data["graph"] == "groupchat" and data["result"] == "done", err
    assert data["report"] == str(report) and report.is_file()
    assert set(data["outcome"]) >= {"winner", "tallies", "rule"}


def test_runs_tells_a_stopped_run_from_a_running_one(tmp_path: Path, cli, scripted) -> None:
    import os
    import time

    from sopgraph.graphs.runner import open_checkpointer
    from sopgraph.tools.persistence import Holder, lease_store

    name, model = scripted
    model.fail_calls = frozenset({2})  # the critic's call fails: the run stops after the writer
    db = str(tmp_path / "s.sqlite")
    code, _, err = cli("demo", "--model", name, "--db", db)
    assert code == 1, err
    code, out, _ = cli("runs", "--db", db, "--json")
    (row,) = json.loads(out)
    assert row["result"] == "stopped"
    with open_checkpointer(db) as saver:
        now = time.time()
        assert (
            lease_store(saver).try_acquire(row["run"], Holder("test", os.getpid(), os.uname().nodename, now, now + 60))
            is None
        )
        code, out, _ = cli("runs", "--db", db, "--json")
    assert json.loads(out)[0]["result"] == "running"


def test_the_readme_states_the_exit_codes() -> None:
    """The README's exit-code sentence says what graphs/outcomes.py returns."""
    from sopgraph.graphs.outcomes import DONE, ERROR_EXIT, GAVE_UP, INCOMPLETE, INTERRUPTED_EXIT, PAUSED, USAGE_EXIT

    text = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    said = text[text.index("Exit codes:") :]
    for words, code in [
        (DONE, EXIT_CODES[DONE]),
        ("error", ERROR_EXIT),
        ("bad usage", USAGE_EXIT),
        (GAVE_UP, EXIT_CODES[GAVE_UP]),
        (PAUSED, EXIT_CODES[PAUSED]),
        ("interrupted", INTERRUPTED_EXIT),
    ]:
        assert f"{code} {words}" in said, words
    assert f"result `done` or `{INCOMPLETE}`" in said and f"{EXIT_CODES[INCOMPLETE]} when some could not be" in said
