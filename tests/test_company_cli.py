"""`sopgraph company` end to end on the scripted company: progress, summary, review pause and resume."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from company_script import Company

from sopgraph.graphs.cli.company import parse_budget, parse_review


def _thread(err: str) -> str:
    match = re.search(r"run (company-[0-9a-f]+)", err)
    assert match, err
    return match.group(1)


def test_company_command_builds_a_repository_and_summarises(  # type: ignore[no-untyped-def]
    scripted, tmp_path: Path, cli
) -> None:
    name, model = scripted
    model.script = Company(buggy_until_fix=True)
    out_dir, db = tmp_path / "repo", str(tmp_path / "cli.sqlite")
    code, _, err = cli("company", "a calculator", "--model", name, "--out", str(out_dir), "--db", db)
    assert code == 0, err
    for role in ("product_manager", "architect", "project_manager", "write_code", "review_code", "run_tests", "debug"):
        assert f"✓ {role}" in err
    assert "tests: tests passed on attempt 2 of 2" in err
    assert re.search(r"files: 5 written, \d+ lines of code, \d+ lines of tests", err)
    assert re.search(r"usage: \d+ model calls, \d+ in / \d+ out tokens, \$0\.0000", err)
    assert f"repository: {out_dir}" in err and (out_dir / "README.md").exists()
    thread = _thread(err)
    code, _, err = cli("company-summary", thread, "--db", db)
    assert code == 0 and "passed on attempt 2" in err and "calc.py" in err


def test_review_pause_and_resume_from_the_cli(  # type: ignore[no-untyped-def]
    scripted, tmp_path: Path, cli
) -> None:
    name, model = scripted
    model.script = Company()
    out_dir, db = tmp_path / "repo", str(tmp_path / "cli.sqlite")
    args = ["--model", name, "--out", str(out_dir), "--db", db, "--review", "design", "--budget", "200k"]
    code, _, err = cli("company", "a calculator", *args)
    assert code == 4 and "paused:" in err and "review the SystemDesign" in err, err
    assert "tests: not run yet" in err
    thread = _thread(err)
    code, _, err = cli("resume", thread, "--answer", '{"action": "approve"}', "--db", db)
    assert code == 0 and "done" in err, err
    code, _, err = cli("company-summary", thread, "--db", db)
    assert "tests passed on attempt 1" in err


def test_bad_options_are_one_line_errors(tmp_path: Path, cli) -> None:
    code, _, err = cli("company", "x", "--model", "scripted", "--review", "code", "--db", "memory")
    assert code == 2 and "unknown review point code" in err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, _, err = cli("company", "x", "--model", "scripted", "--out", str(busy), "--db", "memory")
    assert code == 2 and "not empty and not a generated repository" in err


def test_budget_and_review_parsing() -> None:
    assert parse_budget("20000") == (20000, None) and parse_budget("20k") == (20000, None)
    assert parse_budget("1.5M") == (1_500_000, None)
    assert parse_budget("$0.50") == (None, 0.5) and parse_budget("2usd") == (None, 2.0)
    with pytest.raises(SystemExit):
        parse_budget("lots")
    assert parse_review("prd, design") == ["prd", "design"] and parse_review(None) == []


@pytest.mark.parametrize(
    ("flag", "files"), [("--one-file", ["main.py"]), ("--split-files", ["calc.py", "fmt.py", "main.py"])]
)
def test_one_file_or_the_designs_files_from_the_cli(scripted, tmp_path: Path, cli, flag: str, files: list[str]) -> None:  # type: ignore[no-untyped-def]
    from sopgraph.graphs import runner
    from sopgraph.graphs.runner import open_checkpointer
    from sopgraph.state.company import SystemDesign

    name, model = scripted
    model.script = Company()
    db = str(tmp_path / "cli.sqlite")
    idea = "a calculator: python main.py A B prints the sum"  # a small idea: one file unless --split-files
    args = ["--model", name, "--out", str(tmp_path / "repo"), "--db", db, "--review", "design", flag]
    code, _, err = cli("company", idea, *args)
    assert code == 4 and "review the SystemDesign" in err, err
    with open_checkpointer(db) as saver:
        values = runner.compile_graph("company", saver).get_state(runner.run_config(_thread(err))).values
    (design,) = [m.payload for m in values["pool"] if isinstance(m.payload, SystemDesign)]
    assert design.file_list == files and values["one_file"] is (flag == "--one-file")
