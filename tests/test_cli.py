"""The `sopgraph` command line, end to end on the scripted model."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def _thread(err: str) -> str:
    match = re.search(r"run (demo-[0-9a-f]+)", err)
    assert match, err
    return match.group(1)


def test_demo_runs_lists_history_replay_fork(tmp_path: Path, cli) -> None:
    db = str(tmp_path / "cli.sqlite")
    code, out, err = cli("demo", "a kettle", "--model", "scripted", "--db", db)
    assert code in (0, 3), err  # approved, or the critic never approved (gave up)
    thread = _thread(err)
    assert "✓ writer" in err and "✓ critic" in err and "model calls" in err
    assert '"title"' in out  # the final pitch as JSON

    code, out, _ = cli("runs", "--db", db)
    assert code == 0 and thread in out and "demo" in out

    code, out, _ = cli("history", thread, "--db", db)
    ids = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out)
    assert code == 0 and len(ids) >= 5
    first_checkpoint = ids[-1]  # the input checkpoint

    code, _, err = cli("replay", thread, "--checkpoint", ids[-2], "--db", db)
    assert code in (0, 3) and "done" in err, err

    code, _, err = cli(
        "fork",
        thread,
        "--checkpoint",
        first_checkpoint,
        "--set",
        "max_revisions=0",
        "--set",
        'idea="a toaster"',
        "--db",
        db,
    )
    assert code in (0, 3) and "forked" in err and "done" in err, err

    code, _, err = cli("resume", thread, "--db", db)
    assert code == 1 and "has finished" in err


def test_budget_pause_and_resume_from_cli(tmp_path: Path, cli) -> None:
    db = str(tmp_path / "b.sqlite")
    code, _, err = cli("demo", "--model", "scripted", "--budget-tokens", "150", "--db", db)
    assert code == 4 and "paused" in err and "token budget spent" in err, err
    thread = _thread(err)
    code, _, err = cli("resume", thread, "--budget-tokens", "100000", "--db", db)
    assert code in (0, 3) and "done" in err and "outcome" not in err.split("done")[0], err


def test_draw_mermaid_and_ascii(tmp_path: Path, cli) -> None:
    code, out, _ = cli("draw", "demo")
    assert code == 0 and "graph TD" in out and "writer" in out and "critic" in out
    code, out, _ = cli("draw", "demo", "--format", "ascii")
    assert code == 0 and "publish" in out
    target = tmp_path / "demo.mmd"
    code, _, _ = cli("draw", "demo", "--out", str(target))
    assert code == 0 and "critic" in target.read_text()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["demo", "--model", "gpt5"], "unknown model name 'gpt5'"),
        (["demo", "--model", "openai:gpt-4o-mini", "--db", "memory"], "OPENAI_API_KEY is not set"),
        (["runs", "--db", "mysql://x"], "unsupported checkpointer"),
        (["runs", "--db", "postgresql://nobody@127.0.0.1:1/none"], "cannot connect"),
        (["resume", "no-such-run", "--db", "memory"], "no run 'no-such-run'"),
        (["draw", "nope"], "unknown graph 'nope'"),
    ],
)
def test_bad_settings_give_one_line(cli, args: list[str], expected: str) -> None:
    code, _, err = cli(*args)
    assert code != 0
    assert expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_console_script_is_installed(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("sopgraph")
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "resume" in done.stdout and "model" in done.stdout
    bad = subprocess.run(
        [str(exe), "demo", "--model", "nope", "--db", str(tmp_path / "x.sqlite")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: unknown model name") and "Traceback" not in bad.stderr


def test_corrupt_model_file_is_one_line(tmp_path: Path) -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed (the local extra)")
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 4096)
    env = {**os.environ, "SOPGRAPH_LOCAL_MODEL_PATH": str(bad), "SOPGRAPH_HOME": str(tmp_path / "home")}
    exe = Path(sys.executable).with_name("sopgraph")
    done = subprocess.run(
        [str(exe), "demo", "--model", "local", "--db", "memory"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: local model:") and "Traceback" not in done.stderr


def _commands(group: object, path: str = "sopgraph") -> list[tuple[str, object]]:
    """Every leaf command of the typer app, as click sees it, with its full name."""
    found: list[tuple[str, object]] = []
    for name, command in getattr(group, "commands", {}).items():
        if hasattr(command, "commands"):
            found += _commands(command, f"{path} {name}")
        else:
            found.append((f"{path} {name}", command))
    return found


def test_shared_options_are_one_definition_everywhere() -> None:
    """--db, --model, --json... come from graphs/cli/common.py's one table: same name, same help in every
    command that takes them (a command re-declaring one by hand would drift)."""
    import typer

    from sopgraph.graphs.cli import app
    from sopgraph.graphs.cli.common import SHARED

    # typer.Option("--db", help=...): in an annotation, the first argument is the option's name
    helps = {a.__metadata__[0].default: a.__metadata__[0].help for a in SHARED.values()}
    commands = _commands(typer.main.get_command(app))
    assert len(commands) >= 20
    seen = {flag: 0 for flag in helps}
    for name, command in commands:
        for param in command.params:  # type: ignore[attr-defined]
            for flag in set(param.opts) & set(helps):
                assert param.help == helps[flag], f"{name} {flag}: {param.help!r}"
                seen[flag] += 1
    assert all(seen.values()), seen
    for name in ("eval humaneval", "eval mbpp", "eval software", "eval groupchat", "demo", "company", "groupchat"):
        (command,) = [c for n, c in commands if n == f"sopgraph {name}"]
        assert "--json" in {o for p in command.params for o in p.opts}, name  # type: ignore[attr-defined]


def test_nothing_imports_the_cli_back() -> None:
    """The CLI is a leaf: no module of the library imports sopgraph.graphs.cli (graphs/cli/ imports the rest)."""
    import ast

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("graphs", "nodes", "state", "tools", "evals", "scenarios", "sopgraph"):
        for path in (root / folder).rglob("*.py"):
            if (root / "graphs" / "cli") in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                if any(n == "sopgraph.graphs.cli" or n.startswith("sopgraph.graphs.cli.") for n in names):
                    offenders.append(str(path.relative_to(root)))
    assert not offenders, offenders
