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
