"""One live executor per run: a lease in the checkpointer's database (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest

from sopgraph.graphs import runner
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.nodes.llm import ModelError
from sopgraph.state.context import Context
from sopgraph.tools.persistence import Holder, LeaseHeld, lease_store, run_lease

pytestmark = pytest.mark.faults


def crashed_demo(url: str, name: str, model: Any) -> str:
    """A demo run stopped by a provider fault before the critic: resumable."""
    thread = f"lease-{uuid.uuid4().hex[:8]}"
    model.fail_calls = frozenset({model.calls + 1})
    with open_checkpointer(url) as saver, pytest.raises(ModelError):
        runner.start_run("demo", {"idea": "a kettle", "max_revisions": 0}, saver, Context(model=name), thread_id=thread)
    return thread


def test_two_resumes_at_once_exactly_one_executes(checkpointer_url, scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    thread = crashed_demo(checkpointer_url, name, model)
    model.latency_s = 0.5
    calls = model.calls
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def resume() -> None:
        with open_checkpointer(checkpointer_url) as saver:  # each its own connections, as two processes have
            barrier.wait()
            try:
                results.append(runner.resume_run(saver, thread))
            except LeaseHeld as exc:
                results.append(exc)

    workers = [threading.Thread(target=resume) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done = [r for r in results if isinstance(r, runner.RunOutcome)]
    refused = [r for r in results if isinstance(r, LeaseHeld)]
    assert len(done) == 1 and len(refused) == 1, results
    assert done[0].status == "done"
    assert model.calls - calls == 1  # the critic, once
    message = str(refused[0])
    assert "\n" not in message and f"pid {os.getpid()} on " in message and "--wait" in message
    with open_checkpointer(checkpointer_url) as saver:
        assert lease_store(saver).holder(thread) is None  # released at exit
        with pytest.raises(runner.RunError, match="has finished"):
            runner.resume_run(saver, thread)


def test_wait_takes_over_when_the_holder_is_done(checkpointer_url, scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    thread = crashed_demo(checkpointer_url, name, model)
    held = threading.Event()

    def hold() -> None:
        with open_checkpointer(checkpointer_url) as saver, run_lease(saver, thread):
            held.set()
            time.sleep(1.5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    start = time.monotonic()
    with open_checkpointer(checkpointer_url) as saver:
        with pytest.raises(LeaseHeld):
            runner.resume_run(saver, thread)
        outcome = runner.resume_run(saver, thread, wait=True)
    holder.join()
    assert outcome.status == "done" and time.monotonic() - start >= 1.0


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_holder_loses_its_lease(checkpointer_url, scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    thread = crashed_demo(checkpointer_url, name, model)
    now = time.time()
    with open_checkpointer(checkpointer_url) as saver:
        store = lease_store(saver)
        far = Holder("other-host", 4242, "elsewhere.example", now, now + 600)
        assert store.try_acquire(thread, far) is None
        with pytest.raises(LeaseHeld, match=r"executed by pid 4242 on elsewhere\.example"):
            runner.resume_run(saver, thread)
        store.release(thread, far.owner)

        expired = Holder("expired", 4242, "elsewhere.example", now - 100, now - 1)  # stopped renewing
        assert store.try_acquire(thread, expired) is None
        killed = Holder("killed", _dead_pid(), socket.gethostname(), now, now + 600)  # this host, process gone
        assert store.try_acquire(thread, killed) is None  # the expired one is replaced
        outcome = runner.resume_run(saver, thread)
        assert outcome.status == "done"
        assert store.holder(thread) is None


def test_the_lease_is_released_when_a_run_fails(checkpointer_url, scripted) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    thread = crashed_demo(checkpointer_url, name, model)
    with open_checkpointer(checkpointer_url) as saver:
        assert lease_store(saver).holder(thread) is None


def test_renewal_keeps_the_lease_and_a_stolen_lease_stops_the_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with open_checkpointer(str(tmp_path / "s.sqlite")) as saver:
        store = lease_store(saver)
        with run_lease(saver, "t", ttl=0.3) as lease:
            time.sleep(0.5)  # past the first TTL: renewed
            assert store.holder("t") is not None and not lease.lost.is_set()
            now = time.time()
            taker = Holder("taker", 1, "elsewhere.example", now, now + 60)
            store.release("t", lease.holder.owner)
            assert store.try_acquire("t", taker) is None
            time.sleep(0.3)
            assert lease.lost.is_set()
        assert store.holder("t") == taker  # releasing does not remove another's lease


def test_cli_names_the_holder_in_one_line(tmp_path, scripted, cli) -> None:  # type: ignore[no-untyped-def]
    name, model = scripted
    db = str(tmp_path / "s.sqlite")
    thread = crashed_demo(db, name, model)
    with open_checkpointer(db) as saver, run_lease(saver, thread):
        code, _, err = cli("resume", thread, "--db", db)
    assert code != 0
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "is being executed by pid" in lines[0], err
