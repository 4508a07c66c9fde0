"""Run a program the way its user does: a sequence of steps in one folder (`add`, then `list`), each with its
arguments and stdin, or requests to it served on a port, all inside one sandboxed run. Shared by the software
eval's acceptance checks and the company's start check (does what one command adds show in the next?).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sopgraph.tools import sandbox

MARK = "@@sopgraph-steps@@"
PORT = 8765

# Our own driver, run inside the sandbox with `python -S`: it runs the steps and prints one JSON report.
DRIVER = f"""
import json, os, socket, subprocess, sys, time, urllib.error, urllib.parse, urllib.request
spec = json.loads(sys.argv[1])
for name, text in spec.get("files", {{}}).items():
    with open(name, "w", encoding="utf-8") as handle:
        handle.write(text)
entry = spec["entry"]
outputs, exits, crashed, server = [], [], [], None

def crash(text):
    tail = [line for line in text.strip().splitlines() if line.strip()]
    return "Traceback (most recent call last)" in text and not (tail and tail[-1].startswith("EOFError"))

def serve():
    env = dict(os.environ, PORT=str({PORT}))
    proc = subprocess.Popen([sys.executable, "-S", *entry], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for _ in range(60):
        try:
            socket.create_connection(("127.0.0.1", {PORT}), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    return proc

for step in spec["steps"]:
    if "http" in step:
        if server is None:
            server = serve()
        http = step["http"]
        data = urllib.parse.urlencode(http["form"]).encode() if http.get("form") else None
        try:
            with urllib.request.urlopen("http://127.0.0.1:{PORT}" + http.get("path", "/"), data=data, timeout=5) as r:
                outputs.append("status %d\\n" % r.status + r.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            outputs.append("status %d\\n" % exc.code + exc.read().decode("utf-8", "replace"))
        except Exception as exc:
            outputs.append("request failed: %s: %s" % (type(exc).__name__, exc))
        exits.append(None)
        continue
    try:
        done = subprocess.run([sys.executable, "-S", *entry, *step.get("args", [])], input=step.get("stdin", ""),
                              capture_output=True, text=True, timeout=spec.get("step_timeout", 5))
        text, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        text = "timed out after %ss: " % exc.timeout + ((exc.stdout or b"").decode("utf-8", "replace")
                                                        if isinstance(exc.stdout, bytes) else (exc.stdout or ""))
        code = None
    outputs.append(text)
    exits.append(code)
    if crash(text):
        crashed.append(text.strip().splitlines()[-1][:200])
if server is not None:
    server.kill()
    out = server.communicate()[0].decode("utf-8", "replace")
    if crash(out):
        crashed.append(out.strip().splitlines()[-1][:200])
print("\\n{MARK}" + json.dumps({{"outputs": outputs, "exits": exits, "crashed": crashed}}))
"""


@dataclass(frozen=True)
class StepsRun:
    """What the steps printed, one entry per step: stdout and stderr together (HTTP: `status N` and the body),
    the exit code (None for a request or a step that timed out), and the last line of each traceback other
    than EOFError. `error` says why there is no report (the driver itself did not finish)."""

    outputs: list[str] = field(default_factory=list)
    exits: list[int | None] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def last(self) -> str:
        return self.outputs[-1] if self.outputs else ""


def run_steps(
    root: Path,
    entry: Sequence[str],
    steps: Sequence[Mapping[str, Any]],
    *,
    files: Mapping[str, str] | None = None,
    step_timeout: float = 5.0,
) -> StepsRun:
    """Run `steps` ({args, stdin} or {http: {path, form}}) one after another in a scratch copy of `root`,
    with `python -S ENTRY...` (`entry`: what follows `python -S`), after writing `files` into the folder."""
    spec = {"entry": list(entry), "files": dict(files or {}), "steps": list(steps), "step_timeout": step_timeout}
    wall = step_timeout * (len(steps) + 2) + 5
    limits = sandbox.SandboxLimits.for_start(wall)
    result = sandbox.run_command([sys.executable, "-S", "-c", DRIVER, json.dumps(spec)], root, limits=limits)
    tail = result.stdout.rsplit(MARK, 1)
    if len(tail) < 2:
        return StepsRun(error=f"the steps ended without a report: {result.stderr.strip()[-200:]}")
    report = json.loads(tail[1].strip().splitlines()[0])
    return StepsRun(
        [str(o) for o in report.get("outputs", [])],
        list(report.get("exits", [])),
        [str(c) for c in report.get("crashed", [])],
    )
