"""Shared fixtures: scripted models, and checkpointers parametrized over SQLite and the real PostgreSQL."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver

from sopgraph.graphs.runner import open_checkpointer
from sopgraph.nodes.llm import register_model, unregister_model
from sopgraph.nodes.scripted import ScriptedChatModel
from sopgraph.tools.persistence import PersistenceError

collect_ignore_glob = ["reference/*"]
"""Reference solutions of the software tasks (their own tests run only when the eval scores them)."""

POSTGRES_URL = os.environ.get("SOPGRAPH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach a real provider: connections go to loopback or fail."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
            host.startswith("127.") or host in {"localhost", "::1"} or self.family == socket.AF_UNIX
        ):
            raise OSError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("SOPGRAPH_MODEL", "scripted")


@pytest.fixture
def scripted() -> Iterator[tuple[str, ScriptedChatModel]]:
    """A fresh scripted model registered under a unique name; tests set its script and faults."""
    name = f"scripted:{uuid.uuid4().hex[:8]}"
    model = ScriptedChatModel()
    register_model(name, model)
    yield name, model
    unregister_model(name)


@pytest.fixture
def company(scripted: tuple[str, ScriptedChatModel]) -> tuple[str, object]:
    """The scripted software company (tests/company_script.py) as the model of a fresh scripted name."""
    from company_script import Company

    name, model = scripted
    script = Company()
    model.script = script
    return name, script


def _postgres_or_skip() -> str:
    try:
        with open_checkpointer(POSTGRES_URL):
            pass
    except PersistenceError as exc:
        if os.environ.get("SOPGRAPH_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"PostgreSQL not available: {exc}")
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgres"])
def checkpointer_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return str(tmp_path / "state.sqlite")
    return _postgres_or_skip()


@pytest.fixture
def checkpointer(checkpointer_url: str) -> Iterator[BaseCheckpointSaver]:
    with open_checkpointer(checkpointer_url) as saver:
        yield saver


@pytest.fixture(scope="session")
def local_model_name() -> str:
    """The embedded model, installed and served once per session; skipped where it can't be installed,
    unless SOPGRAPH_REQUIRE_LOCAL_MODEL is set (CI)."""
    from sopgraph.nodes.llm import resolve_model
    from sopgraph.tools import local_model

    try:
        local_model.install()
    except local_model.LocalModelError as exc:
        if os.environ.get("SOPGRAPH_REQUIRE_LOCAL_MODEL"):
            raise
        pytest.skip(f"local model not installable here: {exc}")
    resolve_model("local")
    return "local"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `sopgraph ARGS...` in-process: (exit code, stdout, stderr)."""
    from sopgraph.graphs.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
