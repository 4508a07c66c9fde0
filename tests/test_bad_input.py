"""Weak input a user meets gets a short error before anything runs or is stored (issue #15, point 6)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from company_script import Company
from rich.console import Console

from sopgraph.graphs import runner
from sopgraph.graphs.company import company_input
from sopgraph.graphs.demo import demo_input
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.nodes.company.common import extract_code
from sopgraph.nodes.llm import register_model, unregister_model
from sopgraph.nodes.scripted import ScriptedChatModel
from sopgraph.scenarios import ScenarioError, load_scenario
from sopgraph.state.context import Context
from sopgraph.state.limits import MAX_GENERATED_CHARS, MAX_IDEA_CHARS, MAX_SCENARIO_BYTES, MAX_YAML_DEPTH
from sopgraph.tools.persistence import describe


def _short_error(code: int, err: str, needle: str) -> None:
    assert code != 0 and "Traceback" not in err and needle in " ".join(err.split()), err
    assert len([line for line in err.splitlines() if line.strip()]) <= 6, err  # click's usage box at most


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("demo", ""), "the idea is empty"),
        (("demo", "x", "--max-revisions", "-3"), "max_revisions must be >= 0"),
        (("demo", "an idea \udcff\udcfe"), "not valid UTF-8"),  # undecodable argv bytes arrive as surrogates
        (("demo", "x" * (MAX_IDEA_CHARS + 1)), "the limit is"),
        (("company", "an idea \udcff"), "not valid UTF-8"),
        (("company", "x", "--budget", "$0"), "has no price"),
        (("demo", "x", "--budget-usd", "0.5"), "use --budget-tokens"),
        (("groupchat", ""), "no scenario given"),
        (("draw", "demo", "--out", "/nonexistent/dir/x.mmd"), "cannot write /nonexistent/dir/x.mmd"),
    ],
)
def test_bad_command_line_input_is_a_short_error(tmp_path: Path, cli, args, needle) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "s.sqlite"
    code, _, err = cli(*args, "--model", "scripted", "--db", str(db)) if args[0] != "draw" else cli(*args)
    _short_error(code, err, needle)
    if db.exists():  # nothing was stored
        with open_checkpointer(str(db)) as saver:
            assert runner.list_runs(saver) == []


def test_inputs_are_bounded_before_they_are_stored() -> None:
    with pytest.raises(ValueError, match="limit is"):
        company_input("x" * (MAX_IDEA_CHARS + 1))
    with pytest.raises(ValueError, match="not valid UTF-8"):
        demo_input("bad \udcff")
    assert demo_input("  a kettle ")["idea"] == "a kettle"
    huge = "```python\n" + "x = 1\n" * (MAX_GENERATED_CHARS // 3) + "```"
    assert len(extract_code(huge)) <= MAX_GENERATED_CHARS


def test_scenario_files_are_bounded_before_parsing(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 10_000 + "]" * 10_000)
    with pytest.raises(ScenarioError, match=f"nested deeper than {MAX_YAML_DEPTH} levels"):
        load_scenario(deep)
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(MAX_SCENARIO_BYTES + 1)  # sparse: refused by its size, never read
    with pytest.raises(ScenarioError, match="the limit for a YAML data file"):
        load_scenario(big)
    with pytest.raises(ScenarioError, match="is a directory"):
        load_scenario(tmp_path)


def test_database_urls_are_shown_without_passwords() -> None:
    assert describe("postgresql://u:s3cret@db.example:5432/x") == "postgresql://u:***@db.example:5432/x"
    assert describe("postgresql://u:p@ss@h/x") == "postgresql://u:***@h/x"
    assert (
        describe("postgresql://u@h/x?sslmode=require&password=s3cret")
        == "postgresql://u@h/x?sslmode=require&password=***"
    )
    assert describe("postgresql://h/x") == "postgresql://h/x"


def test_a_password_never_reaches_the_output(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli("runs", "--db", "postgresql://nobody:s3cretpw@127.0.0.1:1/x")
    assert code == 1 and "s3cretpw" not in out + err and "nobody:***@" in err


def test_two_identical_scripted_runs_send_identical_prompts() -> None:
    """No random host path (the sandbox's run directory) reaches a prompt, even through a failing test run."""
    quiet = Console(file=io.StringIO())
    prompts = []
    for i in range(2):
        model, script = ScriptedChatModel(), Company(buggy_until_fix=True)
        model.script = script
        name = f"scripted:same-{i}"
        register_model(name, model)
        try:
            with open_checkpointer("memory") as saver:
                payload = dict(company_input("a calculator", out_dir=Path(tempfile.mkdtemp()) / "repo"))
                outcome = runner.start_run("company", payload, saver, Context(model=name), console=quiet)
        finally:
            unregister_model(name)
        assert outcome.status == "done"
        prompts.append(sorted(r.prompt for r in model.requests))  # parallel calls come in any order
    assert any("Fix calc.py" in p for p in prompts[0])  # the failure report did reach a prompt
    assert prompts[0] == prompts[1]
