"""The README's Python snippet runs as printed (the scripted model comes from SOPGRAPH_MODEL, set by conftest)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from sopgraph.graphs.company import build_company_graph, company_input
from sopgraph.nodes.llm import ModelError
from sopgraph.state.context import Context

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_snippet() -> str:
    text = README.read_text()
    after = text[text.index("From Python") :]
    match = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert match, "no python block after 'From Python' in the README"
    return match.group(1)


def test_the_readme_snippet_runs_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_snippet(), str(README), "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.splitlines()
    assert re.match(r"tests passed on attempt|gave up: |no tests ran", printed[0]), printed
    files = ast.literal_eval(printed[1])  # the snippet prints a sorted list of paths
    assert "README.md" in files and "docs/prd.md" in files
    assert all((tmp_path / "pomodoro" / f).is_file() for f in files)


def test_a_bad_model_fails_before_any_role_runs(tmp_path: Path) -> None:
    graph = build_company_graph().compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t"}}
    with pytest.raises(ModelError, match="OPENAI_API_KEY is not set"):
        graph.invoke(company_input("a timer", out_dir=tmp_path / "x"), config, context=Context(model="openai:gpt-5"))
    assert graph.get_state(config).values == {}
