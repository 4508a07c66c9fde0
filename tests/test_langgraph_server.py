"""The graphs behind LangGraph's own server: `langgraph dev` offline on loopback, driven with langgraph-sdk the
way a platform user would (typed schemas, refused input, a review interrupt and its resume, the repository
in the final state, a group chat started by scenario name). The server runs with LANGGRAPH_STRICT_MSGPACK:
a type missing from the checkpointer's allow-list would be blocked (and logged) where the default mode
logs "Deserializing unregistered type"; the last test reads the log for both."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph_api", reason="needs the server extra: pip install 'sopgraph[server]'")
sdk = pytest.importorskip("langgraph_sdk")

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def server(work: Path) -> Iterator[str]:
    shutil.copy(ROOT / "langgraph.json", work / "langgraph.json")
    config = (work / "langgraph.json").read_text().replace('"./graphs/', f'"{ROOT}/graphs/')
    (work / "langgraph.json").write_text(config.replace('"."', f'"{ROOT}"'))
    port = _free_port()
    exe = Path(sys.executable).with_name("langgraph")
    env = {
        **os.environ,
        "SOPGRAPH_MODEL": "scripted",
        "LANGSMITH_TRACING": "false",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_STRICT_MSGPACK": "true",
    }
    for name in ("SOPGRAPH_CHECKPOINTER", "DATABASE_URI", "POSTGRES_URI"):  # runs go to `work`/.sopgraph/
        env.pop(name, None)
    log = (work / "server.log").open("w")
    args = [str(exe), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(args, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with sdk.get_sync_client(url=url) as probe:
            deadline = time.monotonic() + 120
            while True:
                try:
                    probe.assistants.search()
                    break
                except Exception:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError((work / "server.log").read_text()[-3000:]) from None
                    time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def client(server: str) -> Iterator[Any]:
    with sdk.get_sync_client(url=server) as client:
        yield client


def test_schemas_and_refused_input(client: Any) -> None:
    graphs = {a["graph_id"]: a["assistant_id"] for a in client.assistants.search()}
    assert set(graphs) == {"company", "groupchat", "demo"}
    schemas = client.assistants.get_schemas(graphs["company"])
    assert {"idea", "max_debug", "review"} <= set(schemas["input_schema"]["properties"])
    assert "repository" in schemas["state_schema"]["properties"] and schemas["context_schema"]
    thread = client.threads.create()
    with pytest.raises(Exception, match=r"idee: unknown field"):
        client.runs.wait(thread["thread_id"], "company", input={"idee": "a calculator"})


def test_company_review_pause_resume_and_repository(client: Any, tmp_path: Path) -> None:
    thread = client.threads.create()["thread_id"]
    payload = {"idea": "a calculator", "review": ["prd"], "max_debug": 0, "out_dir": str(tmp_path / "repo")}
    client.runs.wait(thread, "company", input=payload, context={"model": "scripted"})
    state = client.threads.get_state(thread)
    assert state["next"] == ["review_prd"]
    assert [i["value"]["reason"] for t in state["tasks"] for i in t["interrupts"]] == ["review"]
    approve = {"resume": {"action": "approve"}}
    final = client.runs.wait(thread, "company", command=approve, context={"model": "scripted"})
    assert isinstance(final, dict) and final["outcome"].startswith(("gave up", "tests passed", "no tests"))
    assert "README.md" in final["repository"] and "docs/prd.md" in final["repository"]


def test_groupchat_by_scenario_name(client: Any) -> None:
    thread = client.threads.create()["thread_id"]
    final = client.runs.wait(
        thread,
        "groupchat",
        input={"scenario": "court", "ablations": ["meeting", "private_chat", "group_chat"]},
        context={"model": "scripted"},
    )
    assert isinstance(final, dict) and final["outcome"]["winner"] and final["scenario"]["title"]


def test_the_server_revives_every_stored_type_with_its_allow_list(server: str, work: Path) -> None:
    """After the runs above (a paused company resumed, a group chat): the server's checkpointer is ours
    (graphs/server.py, built with langgraph.json's allow-list), and it neither blocked nor warned about a type.
    Runs last in this module: the log then covers every read-back above."""
    log = (work / "server.log").read_text()
    assert "Using custom checkpointer: AsyncSqliteSaver" in log, log[-3000:]
    assert (work / ".sopgraph" / "state.sqlite").is_file()
    for symptom in ("Deserializing unregistered type", "Blocked deserialization"):
        assert symptom not in log, log[log.index(symptom) - 200 : log.index(symptom) + 400]
