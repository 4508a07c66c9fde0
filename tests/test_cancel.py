"""Ctrl-C during repair sampling stops the run at once (tools/cancel.py): the k candidate requests in flight
are abandoned, their connections closed (so a llama.cpp server stops generating for them), and the run stays
resumable. The model is a loopback OpenAI-compatible server of the test's own that answers some requests and
holds others open until their client leaves (or 300 s pass: only a hang would reach that bound)."""

from __future__ import annotations

import contextvars
import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage

from sopgraph.nodes.llm import ModelGateway, forget_model
from sopgraph.nodes.repair import Candidate, GatewaySampler, Verdict, get_strategy, repair
from sopgraph.state.context import Context
from sopgraph.tools.cancel import Abandoned, cancel_on_interrupt, run_all


def ctrl_c_reaches_the_child() -> None:
    """Popen's preexec_fn: a shell that starts a job in the background without job control (CI under
    `nohup ... &`) makes it ignore SIGINT, and Python then never raises KeyboardInterrupt in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


HOLD_S = 300.0
"""How long the server holds a request whose client stays: far beyond every bound below."""
BOUND_S = 20.0
"""Generous bounds that only a hang breaks (the CPU here is shared with long evaluations)."""


class Server:
    """A loopback chat-completions endpoint. `answer(body)` gives the reply text, or None to hold the request
    open until the client closes its connection (then it counts the request as `closed`)."""

    def __init__(self, answer: Callable[[dict[str, Any]], str | None]) -> None:
        self.answer = answer
        self.bodies: list[dict[str, Any]] = []
        self.held = 0
        self.closed = 0
        self.lock = threading.Lock()
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with state.lock:
                    state.bodies.append(body)
                content = state.answer(body)
                if content is None:
                    state.hold(self.connection)
                    return
                reply = {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "m",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37},
                }
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def hold(self, conn: socket.socket) -> None:
        """Wait, as llama.cpp's server does for a non-streaming reply, while polling whether the client left."""
        with self.lock:
            self.held += 1
        deadline = time.monotonic() + HOLD_S
        while time.monotonic() < deadline:
            readable, _, _ = select.select([conn], [], [], 0.05)
            try:
                gone = bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                gone = True
            if gone:
                with self.lock:
                    self.closed += 1
                return

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def until(condition: Callable[[], bool], bound: float = BOUND_S) -> bool:
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def fenced(code: str) -> str:
    return f"```python\n{code}```"


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[dict[str, Any]], str | None]], Server]]:
    servers: list[Server] = []

    def start(answer: Callable[[dict[str, Any]], str | None]) -> Server:
        server = Server(answer)
        servers.append(server)
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        forget_model("openai:m")
        return server

    yield start
    forget_model("openai:m")
    for server in servers:
        server.close()


class Conv:
    def fresh(self) -> list[BaseMessage]:
        return [HumanMessage("TASK: write f")]

    def repair(self, incumbent: Candidate, facts: str) -> list[BaseMessage]:
        return [HumanMessage(f"FIX {facts}")]


def repair_against_model(k: int) -> None:
    gateway = ModelGateway(Context(model="openai:m"), "coder")
    repair(
        Candidate("def f(): pass\n", "", Verdict(0, 1, "f() failed")),
        get_strategy("resample").with_(rounds=1, k=k),
        conversation=Conv(),
        sampler=GatewaySampler(gateway),
        extract=lambda reply: reply,
        judge=lambda code: Verdict(0, 1, "f() failed"),
    )


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("repair-sample")]


def test_cancelling_abandons_the_k_requests_and_closes_their_connections(server_env) -> None:
    """The run's Cancel fires (as Ctrl-C fires it) while a worker thread waits on k held requests: the
    worker stops with Abandoned, the server sees every connection closed while this process lives on, and
    no request is sent again (the client's retries are refused)."""
    server = server_env(lambda body: None)
    outcome: list[BaseException | None] = []

    def worker() -> None:
        try:
            repair_against_model(k=3)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    with cancel_on_interrupt() as token:
        context = contextvars.copy_context()  # what a worker thread of the run sees
    thread = threading.Thread(target=context.run, args=(worker,), daemon=True)
    thread.start()
    assert until(lambda: server.held == 3), "the three candidate requests did not reach the server together"
    token.cancel()
    thread.join(BOUND_S)
    assert not thread.is_alive() and len(outcome) == 1 and isinstance(outcome[0], Abandoned)
    assert until(lambda: server.closed == 3), f"connections closed: {server.closed} of 3"
    assert until(lambda: not sampler_threads()), "abandoned request threads kept running"
    assert len(server.bodies) == 3  # nothing was retried after the connections were shut


def test_an_interrupt_in_the_waiting_thread_abandons_the_rest_and_is_raised(server_env) -> None:
    """A KeyboardInterrupt raised by one request (as Ctrl-C raises it in the thread that waits) stops the
    wait for the others, which are abandoned and their connections closed."""
    server = server_env(lambda body: None)

    def interrupted() -> str:
        until(lambda: server.held == 2)
        raise KeyboardInterrupt

    gateway = ModelGateway(Context(model="openai:m"), "coder")
    held = [lambda: gateway.text("a"), lambda: gateway.text("b")]
    with pytest.raises(KeyboardInterrupt):
        run_all([*held, interrupted], name="repair-sample")
    assert until(lambda: server.closed == 2), f"connections closed: {server.closed} of 2"


def test_an_already_cancelled_run_sends_nothing(server_env) -> None:
    server = server_env(lambda body: "ok")
    with cancel_on_interrupt() as token:
        token.cancel()
        with pytest.raises(Abandoned):
            run_all([lambda: ModelGateway(Context(model="openai:m"), "coder").text("hi")])
    assert server.bodies == []


def test_k_requests_still_overlap_and_failures_stay_values() -> None:
    barrier = threading.Barrier(4, timeout=BOUND_S)  # only four concurrent calls get past it

    def call(i: int) -> Callable[[], int]:
        def run() -> int:
            barrier.wait()
            if i == 2:
                raise RuntimeError("one failed")
            return i

        return run

    results = run_all([call(i) for i in range(4)])
    assert results[:2] == [0, 1] and isinstance(results[2], RuntimeError) and results[3] == 3


# ------------------------------------------------------------------------------------ whole processes

MBPP_ROWS = [
    {
        "task_id": 11,
        "text": "Write a function to add two numbers.",
        "code": "def add_two(a, b):\r\n    return a + b",
        "test_setup_code": "",
        "test_list": ["assert add_two(1, 2) == 3", "assert add_two(0, 0) == 0", "assert add_two(-1, 1) == 0"],
        "challenge_test_list": [],
    },
    {
        "task_id": 12,
        "text": "Write a function to find the largest item of a list.",
        "code": "def biggest(xs):\r\n    return max(xs)",
        "test_setup_code": "",
        "test_list": ["assert biggest([1, 3, 2]) == 3", "assert biggest([5]) == 5", "assert biggest([-1, -2]) == -1"],
        "challenge_test_list": [],
    },
]


def child_env(server: Server) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-test", PYTHONUNBUFFERED="1", COLUMNS="200")
    return env


def interrupt_when(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> tuple[int | None, str]:
    """SIGINT once `ready()`, then the exit code within BOUND_S (None: it hung) and stderr."""
    if not until(lambda: ready() or proc.poll() is not None, 120.0):
        proc.kill()
        pytest.fail("the child never reached the point to interrupt")
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return None, err
    return proc.returncode, err


def test_ctrl_c_during_eval_repair_exits_at_once_and_the_run_resumes(server_env, tmp_path: Path) -> None:
    """`sopgraph eval mbpp`: problem 11 is answered right, problem 12's first answer is wrong and its four
    repair candidates are held by the server. Ctrl-C then exits at once with one line, problem 11 stays
    scored, 12 is not recorded, the held connections are closed; the next run scores only 12."""
    phase = {"hold": True}

    def answer(body: dict[str, Any]) -> str | None:
        prompt = json.dumps(body["messages"])
        if "add two numbers" in prompt:
            return fenced("def add_two(a, b):\n    return a + b\n")
        if body.get("temperature", 0) == 0:  # the first answer: wrong
            return fenced("def biggest(xs):\n    return min(xs)\n")
        return None if phase["hold"] else fenced("def biggest(xs):\n    return max(xs)\n")

    server = server_env(answer)
    data = tmp_path / "mbpp.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in MBPP_ROWS))
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-c",
        "from sopgraph.graphs.cli import main; main()",
        "eval",
        "mbpp",
        "--data",
        str(data),
        "--model",
        "openai:m",
        "--out",
        str(out),
        "--first",
        "--limit",
        "2",
    ]
    proc = subprocess.Popen(
        command,
        env=child_env(server),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_reaches_the_child,
    )
    code, err = interrupt_when(proc, lambda: server.held == 4)
    assert code is not None, f"still running {BOUND_S:.0f}s after Ctrl-C (the server would hold for {HOLD_S:.0f}s)"
    assert code == 130 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert "interrupted" in last and "run the same command to resume" in last, err
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["scored"]) for r in results] == [("MBPP/11", True)]
    assert until(lambda: server.closed == 4), f"held connections closed: {server.closed} of 4"

    phase["hold"] = False
    asked_for_11 = sum("add two numbers" in json.dumps(b["messages"]) for b in server.bodies)
    done = subprocess.run(
        command,
        env=child_env(server),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["task_id"] for r in results if r["scored"]} == {"MBPP/11", "MBPP/12"}
    assert sum("add two numbers" in json.dumps(b["messages"]) for b in server.bodies) == asked_for_11


GRAPH_SCRIPT = textwrap.dedent(
    """
    import sys
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    from sopgraph.graphs.runner import execute
    from sopgraph.nodes.llm import ModelGateway
    from sopgraph.nodes.repair import Candidate, GatewaySampler, Verdict, get_strategy, repair
    from sopgraph.state.context import Context
    from langchain_core.messages import HumanMessage


    class State(TypedDict):
        n: int


    class Conv:
        def fresh(self):
            return [HumanMessage("TASK: write f")]

        def repair(self, incumbent, facts):
            return [HumanMessage("FIX " + facts)]


    def debug(state, runtime):
        gateway = ModelGateway(runtime.context, "engineer")
        repair(
            Candidate("def f(): pass", "", Verdict(0, 1, "f() failed")),
            get_strategy("mixed").with_(rounds=1),
            conversation=Conv(),
            sampler=GatewaySampler(gateway),
            extract=lambda reply: reply,
            judge=lambda code: Verdict(0, 1, "f() failed"),
        )
        return {"n": 1}


    builder = StateGraph(State, context_schema=Context)
    builder.add_node("debug", debug)
    builder.add_edge(START, "debug")
    builder.add_edge("debug", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    try:
        execute(graph, {"n": 0}, {"configurable": {"thread_id": "t"}}, Context(model="openai:m"))
    except KeyboardInterrupt:
        print("interrupted: run the same command to resume", file=sys.stderr)
        sys.exit(130)
    """
)


def test_ctrl_c_during_a_graph_nodes_repair_exits_at_once(server_env) -> None:
    """A debug node's repair runs on LangGraph's worker thread (the runner streams custom events), and
    LangGraph waits for its workers when the main thread is interrupted: the SIGINT handler of the
    runner abandons the node's requests, so the run stops at once and the connections are closed."""
    server = server_env(lambda body: None)
    proc = subprocess.Popen(
        [sys.executable, "-c", GRAPH_SCRIPT],
        env=child_env(server),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_reaches_the_child,
    )
    code, err = interrupt_when(proc, lambda: server.held == 4)
    assert code is not None, f"still running {BOUND_S:.0f}s after Ctrl-C (the server would hold for {HOLD_S:.0f}s)"
    assert code == 130 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted"), err
    assert until(lambda: server.closed == 4), f"held connections closed: {server.closed} of 4"


def test_a_callback_submitting_after_shutdown_is_quiet_once_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    """On Ctrl-C LangGraph's executor shuts down while a finished task's done callback may still submit the
    task's writes to it: that RuntimeError's traceback is not printed once the run's Cancel fired, and is
    printed (logged) as before while it has not."""
    from concurrent.futures import Future, ThreadPoolExecutor

    executor = ThreadPoolExecutor(max_workers=1)
    executor.shutdown()

    def finish_a_task() -> None:
        task: Future[None] = Future()
        task.add_done_callback(lambda _: executor.submit(print))
        task.set_result(None)

    def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "concurrent.futures"]

    with caplog.at_level("ERROR"), cancel_on_interrupt() as token:
        finish_a_task()
        assert logged() and "exception calling callback" in logged()[0]  # not cancelled: still reported
        caplog.clear()
        token.cancel()
        finish_a_task()
        assert logged() == []
    finish_a_task()  # the block is left: the filter goes with it
    assert logged()
