"""Ctrl-C on a run started from the command line: one line naming the run and the exact command that continues
it, exit code 130 (graphs/outcomes.py), and that command then finishes the run.

The child is the real CLI in a process of its own, on the scripted model (the scripted company of
tests/company_script.py, or the plain scripted model for a group chat). One request is held the way a real
one is (tools/cancel.py): it waits until the run's Cancel fires, as Ctrl-C fires it, and is then abandoned; a
marker file tells the test the run has reached it. Each run is interrupted twice, once as started and once
in `sopgraph resume`, and the printed command then finishes it."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


def ctrl_c_reaches_the_child() -> None:
    """Popen's preexec_fn: a shell that starts a job in the background without job control (CI under
    `nohup ... &`) makes it ignore SIGINT, and Python then never raises KeyboardInterrupt in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


BOUND_S = 60.0
"""Generous bounds that only a hang breaks (the CPU here is shared with long evaluations)."""
HOLD_S = 300.0
"""How long the held request waits for the Cancel: far beyond BOUND_S, so only a stuck run reaches it."""

CHILD = textwrap.dedent(
    """
    import sys
    import threading
    from pathlib import Path

    sys.path.insert(0, {tests!r})
    from company_script import Company, role_of

    from sopgraph.graphs.cli import main
    from sopgraph.nodes.company.engineer import ROLE as ENGINEER
    from sopgraph.nodes.llm import register_model
    from sopgraph.nodes.scripted import ScriptedChatModel
    from sopgraph.tools import cancel

    marker, graph = Path(sys.argv[1]), sys.argv[2]
    company = Company()


    def held(request):
        if graph == "company":
            return role_of(request) == ENGINEER.name
        return request.call_index >= 3  # a group chat: past its first steps


    def script(request):
        if held(request) and not marker.exists():
            marker.write_text("held")
            released = threading.Event()
            token = cancel.current()
            if token is not None:
                token.on_cancel(released.set)
            released.wait({hold})
            raise cancel.Abandoned("the request was abandoned")
        return company(request) if graph == "company" else None


    register_model("scripted:held", ScriptedChatModel(script=script))
    main(sys.argv[3:])
    """
)

RUNS = {
    "company": ["company", "a calculator", "--out", "repo"],
    "groupchat": ["groupchat", "casting", "--rounds", "1", "--ablate", "think", "--report", "story.html"],
}


def until(condition, bound: float = BOUND_S) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Child:
    """`sopgraph ARGS` in a process of its own (in `cwd`), holding its first matching request until Ctrl-C."""

    def __init__(self, cwd: Path, graph: str) -> None:
        self.cwd, self.graph = cwd, graph
        self.script = cwd / "child.py"
        self.script.write_text(CHILD.format(tests=str(Path(__file__).resolve().parent), hold=HOLD_S))
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "250"}

    def command(self, marker: Path, args: list[str]) -> list[str]:
        return [sys.executable, str(self.script), str(marker), self.graph, *args]

    def interrupted(self, marker: Path, args: list[str]) -> str:
        """Run until the held request, Ctrl-C, and return the last line of stderr (exit code 130 checked)."""
        proc = subprocess.Popen(
            self.command(marker, args),
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=ctrl_c_reaches_the_child,
        )
        try:
            if not until(lambda: marker.exists() or proc.poll() is not None, 120.0):
                pytest.fail("the run never reached the held request")
            assert proc.poll() is None, proc.communicate()[1]
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=BOUND_S)  # far below HOLD_S: the Ctrl-C stopped it
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "Aborted" not in err, err
        return err.strip().splitlines()[-1]

    def run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(self.cwd / "no-hold", args),
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@pytest.mark.parametrize("graph", list(RUNS))
def test_ctrl_c_names_the_resume_command_exits_130_and_resume_finishes(tmp_path: Path, graph: str) -> None:
    """The interrupted run's last line names it and the command that continues it, exactly; that command,
    interrupted in turn, says the same; run once more, it finishes the run."""
    db = tmp_path / "runs.sqlite"
    (tmp_path / "no-hold").write_text("")
    child = Child(tmp_path, graph)
    last = child.interrupted(tmp_path / "held-1", [*RUNS[graph], "--model", "scripted:held", "--db", str(db)])
    run = last.split("interrupted: run ", 1)[-1].split()[0]
    assert run.startswith(f"{graph}-"), last
    command = f"sopgraph resume {run} --db {shlex.quote(str(db))}"
    assert last.endswith(f"interrupted: run {run} stopped; continue with: {command}"), last

    again = child.interrupted(tmp_path / "held-2", shlex.split(command)[1:])
    assert again == last, again

    resumed = child.run([*shlex.split(command)[1:], "--json"])
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["run"] == run and summary["result"] == "done", summary
    if graph == "company":
        assert (tmp_path / "repo" / "calc.py").is_file()
