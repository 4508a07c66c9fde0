"""The embedded model's server: llama.cpp's C++ server (prebuilt in the `xllamacpp` wheel) in a child process.

One server per model alias is shared by every sopgraph process on the machine: a state file records it and
a file lock serialises start-up. It is started on demand, health-checked before reuse, stopped at exit by
the process that started it (unless detached), and `stop` ends it from anywhere. It decodes `parallel`
requests together (continuous batching), reuses cached prompt prefixes, and turns a request's json_schema
into a grammar, so structured replies are valid JSON of the schema by construction.
"""

from __future__ import annotations

import atexit
import http.client
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sopgraph.tools.local_model.weights import (
    LocalModelError,
    ModelSpec,
    Progress,
    _explicit_path,
    _locked,
    _read_json,
    _scan,
    _sidecar_vouches,
    _write_json,
    get_spec,
    install,
    models_dir,
)

ENV_THREADS = "SOPGRAPH_LLAMA_THREADS"
ENV_CTX = "SOPGRAPH_LLAMA_CTX"
ENV_PARALLEL = "SOPGRAPH_LLAMA_PARALLEL"
DEFAULT_CTX = 4096
"""Tokens of context each slot can count on; the KV pool holds this many per slot and any one request may
use the whole pool while the other slots are idle."""
DEFAULT_PARALLEL = 4
"""Request slots decoded together (benchmarks/serving.py: aggregate throughput by concurrency)."""
HOST = "127.0.0.1"
# Loading takes seconds, but a busy 2-core machine has been seen running 5-10x slower than usual.
READY_TIMEOUT = 180.0
BUSY_PROBE = 5.0
"""How long to wait for /v1/models on a server that may be busy."""
INSTALL_HINT = "pip install 'sopgraph[local]'"
_SERVER_MODULES = ("xllamacpp",)
RUNNER = "sopgraph.tools.local_model.runner"


def default_threads() -> int:
    """Generation threads when $SOPGRAPH_LLAMA_THREADS is unset: one per core, with OpenMP's threads sleeping
    rather than spinning while they wait (`_child_env`). Measured in docs/RESULTS.md: on 2 cores, 2 passive
    threads gave 1.6x the single-stream speed of 1 thread on an idle machine and no less with a core kept busy
    by another program; 2 spinning threads (OpenMP's default) fell to a sixth of 1 thread under load."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores)


OMP_WAIT = "OMP_WAIT_POLICY"
"""llama.cpp's CPU backend runs on OpenMP here; "passive" makes a waiting thread sleep instead of spin, so a
thread preempted by another program does not stall the others at every layer."""


def _int_env(var: str, default: int, minimum: int) -> int:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise LocalModelError(f"{var}={raw!r} is not an integer") from None
    if value < minimum:
        raise LocalModelError(f"{var}={value} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class ServerHandle:
    base_url: str
    """OpenAI-compatible base URL, e.g. http://127.0.0.1:PORT/v1 (what ChatOpenAI's base_url wants)."""
    alias: str
    """The model name to send in requests."""
    port: int
    pid: int
    started_by_us: bool
    """True when this process started it and will stop it at exit (unless detached)."""
    model_path: Path
    log_path: Path


_children: dict[int, subprocess.Popen[bytes]] = {}
"""Servers this process started, kept referenced so they are reaped (a zombie would look alive)."""
_state_files: dict[int, Path] = {}
_detached: set[int] = set()
_atexit_lock = threading.Lock()
_atexit_registered = False


def _alias_for(name: str | ModelSpec | None) -> str:
    explicit = _explicit_path()
    return explicit.stem if explicit is not None else get_spec(name).name


def _paths(alias: str) -> tuple[Path, Path, Path]:
    # "llama-server-": a name of its own, so a server of the earlier llama-cpp-python runtime (which rejects
    # json_schema) that another checkout still runs is never taken for ours.
    stem = "llama-server-" + re.sub(r"[^A-Za-z0-9._-]", "_", alias)
    base = models_dir()
    return base / f"{stem}.json", base / f"{stem}.lock", base / f"{stem}.log"


def _check_runtime() -> None:
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        names = ", ".join(missing)
        raise LocalModelError(f"the local model runtime is not installed (no {names}); {INSTALL_HINT}")


def server_settings() -> dict[str, int]:
    """Threads, slots and context for a new server, from the environment or the measured defaults."""
    parallel = _int_env(ENV_PARALLEL, DEFAULT_PARALLEL, 1)
    return {
        "threads": _int_env(ENV_THREADS, default_threads(), 1),
        "parallel": parallel,
        "ctx": _int_env(ENV_CTX, DEFAULT_CTX, 512) * parallel,
    }


def _server_command(model_path: Path, alias: str, port: int) -> list[str]:
    settings = server_settings()
    return [
        sys.executable, "-m", RUNNER,
        "--model", str(model_path), "--alias", alias,
        "--host", HOST, "--port", str(port),
        "--ctx", str(settings["ctx"]), "--parallel", str(settings["parallel"]),
        "--threads", str(settings["threads"]),
    ]  # fmt: skip


def _child_env() -> dict[str, str]:
    """llama.cpp's argument parser reads LLAMA_ARG_* variables: a stray one must not change our settings.
    OpenMP's threads wait passively unless the user chose otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LLAMA_ARG_")}
    env.setdefault(OMP_WAIT, "passive")
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no conflict
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy


def _served_models(port: int, timeout: float) -> list[str] | None:
    """Aliases the server lists, or None if it does not answer; /v1/models waits while a completion runs."""
    try:
        with _opener.open(f"http://{HOST}:{port}/v1/models", timeout=timeout) as resp:
            data = json.load(resp)
    except urllib.error.HTTPError as exc:
        exc.close()
        return None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    try:
        return [str(m["id"]) for m in data["data"]]
    except (KeyError, TypeError):
        return None


def _cmdline(pid: int) -> list[str] | None:
    """argv of a live, non-zombie process; None if gone. Off Linux, liveness only (empty list)."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            raw = (proc / "cmdline").read_bytes()
        except OSError:
            return None
        if stat.rpartition(")")[2].split()[:1] == ["Z"]:
            return None
        return raw.decode(errors="replace").split("\0")[:-1]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return []


def _is_our_server(state: dict[str, Any]) -> bool:
    """The recorded pid still runs the recorded command: guards against pid reuse before we signal it."""
    pid = state.get("pid")
    if not isinstance(pid, int):
        return False
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None  # before exec its cmdline is still ours, so don't look
    argv = _cmdline(pid)
    return argv is not None and (argv == [] or argv == state.get("cmd"))


def _rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _log_tail(log: Path, lines: int = 3, limit: int = 400) -> str:
    """The end of the server log on one line: the exception alone when it ends in a traceback."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {log})"
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if kept and re.match(r"[\w.]+(Error|Exception)\b", kept[-1]):
        kept = kept[-1:]
    errors = [ln for ln in kept if re.match(r"[\d.]+ E ", ln)]  # llama.cpp's own error lines say why
    if errors:
        kept = [errors[0], kept[-1]]
    tail = " | ".join(kept[-lines:]) or "(empty log)"
    return f"{tail[-limit:]} (log: {log})"


def _handle(state: dict[str, Any]) -> ServerHandle:
    return ServerHandle(
        base_url=f"http://{HOST}:{state['port']}/v1",
        alias=state["alias"],
        port=state["port"],
        pid=state["pid"],
        started_by_us=state["pid"] in _children,
        model_path=Path(state["model_path"]),
        log_path=Path(state["log"]),
    )


def _reuse(alias: str, timeout: float) -> ServerHandle | None:
    state_file, _, _ = _paths(alias)
    state = _read_json(state_file)
    if state is None:
        return None
    if not _is_our_server(state):
        _reap(state.get("pid"))
        state_file.unlink(missing_ok=True)
        return None
    if state["pid"] in _children and state.get("ready"):
        return _handle(state)  # our own live child, already seen ready: skip the HTTP round trip
    deadline = time.monotonic() + timeout
    while (served := _served_models(state["port"], BUSY_PROBE)) is None:
        if not _is_our_server(state):
            state_file.unlink(missing_ok=True)
            return None
        if state.get("ready") and _accepts(state["port"]):
            # /v1/models queues behind a running completion, which may take minutes; the recorded process,
            # once seen ready and still listening, is evidence enough.
            return _handle(state)
        if time.monotonic() > deadline:
            raise LocalModelError(
                f"local model server pid {state['pid']} on port {state['port']} does not answer; "
                "stop it with `sopgraph model stop`"
            )
        time.sleep(0.2)  # refused while still loading (its starter may have died before it was ready)
    if alias not in served:
        state_file.unlink(missing_ok=True)
        return None
    return _handle(state)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2.0):
            return True
    except OSError:
        return False


def _reap(pid: Any, timeout: float = 15.0) -> None:
    """Stop and wait for a server we started; forget it either way."""
    if not isinstance(pid, int):
        return
    child = _children.pop(pid, None)
    state_file = _state_files.pop(pid, None)
    _detached.discard(pid)
    if child is not None:
        _terminate(child, timeout)
    if state_file is not None:
        state = _read_json(state_file)
        if state is not None and state.get("pid") == pid:
            state_file.unlink(missing_ok=True)


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stop_children() -> None:
    for pid in list(_children):
        if pid not in _detached:
            _reap(pid)


def _register_atexit() -> None:
    global _atexit_registered
    with _atexit_lock:
        if not _atexit_registered:
            atexit.register(_stop_children)
            _atexit_registered = True


def _start(model_path: Path, alias: str, port: int | None, timeout: float, detach: bool) -> ServerHandle:
    state_file, _, log = _paths(alias)
    env = _child_env()
    for attempt in range(3):
        chosen = port if port is not None else _free_port()
        if port is not None and _port_in_use(port):
            raise LocalModelError(f"port {port} on {HOST} is already in use")
        cmd = _server_command(model_path, alias, chosen)
        with open(log, "wb") as fh:
            try:
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop it in order
                )  # fmt: skip
            except OSError as exc:
                raise LocalModelError(f"cannot start the local model server: {exc}") from exc
        _children[proc.pid] = proc
        _state_files[proc.pid] = state_file
        if detach:
            _detached.add(proc.pid)
        else:
            _register_atexit()
        state = {
            "pid": proc.pid, "port": chosen, "alias": alias, "model_path": str(model_path), "log": str(log),
            "cmd": cmd, "started_at": time.time(), "owner_pid": os.getpid(), "detached": detach,
            "ready": False,
        }  # fmt: skip
        _write_json(state_file, state)
        deadline = time.monotonic() + timeout
        while True:
            code = proc.poll()
            if code is not None:
                _reap(proc.pid)
                tail = _log_tail(log)
                if port is None and attempt < 2 and "address already in use" in tail.lower():
                    break  # lost a race for the port: try another
                raise LocalModelError(f"local model server exited with code {code} while starting: {tail}")
            served = _served_models(chosen, timeout=5.0)
            if served is not None and alias in served:
                state["ready"] = True
                _write_json(state_file, state)
                return _handle(state)
            if time.monotonic() > deadline:
                _reap(proc.pid)
                raise LocalModelError(
                    f"local model server was not ready after {timeout:.0f}s (log {log}): {_log_tail(log)}"
                )
            time.sleep(0.2)
    raise LocalModelError("could not find a free port for the local model server")  # pragma: no cover


def ensure_server(
    name: str | ModelSpec | None = None,
    *,
    timeout: float = READY_TIMEOUT,
    port: int | None = None,
    detach: bool = False,
    progress: Progress | None = None,
) -> ServerHandle:
    """A ready server for the model: reuse the machine's running one, else install and start one.

    A server this process starts is stopped at exit unless ``detach`` is set.
    """
    _check_runtime()
    alias = _alias_for(name)
    model_path = install(name, progress=progress)
    _, lock, _ = _paths(alias)
    with _locked(lock, timeout):
        handle = _reuse(alias, timeout)
        if handle is not None:
            return handle
        return _start(model_path, alias, port, timeout, detach)


def serve(
    name: str | ModelSpec | None = None,
    *,
    port: int | None = None,
    detach: bool = False,
    timeout: float = READY_TIMEOUT,
    on_ready: Callable[[ServerHandle], None] | None = None,
    progress: Progress | None = None,
) -> ServerHandle:
    """For `sopgraph model serve`: run until interrupted, or start detached and return.

    If a server for this model already runs, its handle comes back at once with started_by_us False.
    """
    handle = ensure_server(name, timeout=timeout, port=port, detach=True, progress=progress)
    if on_ready:
        on_ready(handle)
    if detach or not handle.started_by_us:
        return handle
    proc = _children[handle.pid]
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_exit)
    code: int | None = None
    try:
        code = proc.wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        stop(name)
    if code not in (None, 0, -signal.SIGTERM):  # anything but a stop() from elsewhere
        raise LocalModelError(f"local model server exited with code {code}: {_log_tail(handle.log_path)}")
    return handle


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def stop(name: str | ModelSpec | None = None, *, timeout: float = 15.0) -> bool:
    """Stop the model's server, whoever started it; True if one was running."""
    alias = _alias_for(name)
    state_file, lock, _ = _paths(alias)
    with _locked(lock, timeout=max(timeout, 60.0)):
        state = _read_json(state_file)
        if state is None:
            return False
        pid = state.get("pid")
        running = _is_our_server(state)
        if isinstance(pid, int) and pid in _children:
            _reap(pid, timeout)
        elif running and isinstance(pid, int):
            _signal_and_wait(pid, state, timeout)
        state_file.unlink(missing_ok=True)
        return running


def _signal_and_wait(pid: int, state: dict[str, Any], timeout: float) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _is_our_server(state):
                return
            time.sleep(0.1)
    raise LocalModelError(f"local model server pid {pid} did not exit")


def status(name: str | ModelSpec | None = None) -> dict[str, Any]:
    """A cheap snapshot for `sopgraph model status`: nothing is hashed, nothing started."""
    explicit = _explicit_path()
    alias = _alias_for(name)
    info: dict[str, Any] = {"model": alias, "alias": alias, "explicit_path": explicit is not None}
    if explicit is not None:
        path = explicit
        info.update(verified=None, parts_installed=None)
    else:
        spec = get_spec(name)
        path = models_dir() / spec.filename
        info["description"] = spec.description
        info["expected_size"] = spec.size
        info["sha256"] = spec.sha256
        info["parts_installed"] = not _scan(spec)[1]
        right_size = path.is_file() and path.stat().st_size == spec.size
        info["verified"] = right_size and _sidecar_vouches(path, spec.sha256)
    info["path"] = str(path)
    info["installed"] = path.is_file()
    info["size"] = path.stat().st_size if path.is_file() else None
    state_file, _, log = _paths(alias)
    state = _read_json(state_file)
    running = state is not None and _is_our_server(state)
    info.update(running=running, url=None, pid=None, port=None, ready=False, rss_bytes=None, log=str(log))
    if running and state is not None:
        served = _served_models(state["port"], timeout=2.0)
        info.update(
            url=f"http://{HOST}:{state['port']}/v1",
            pid=state["pid"],
            port=state["port"],
            ready=served is not None and alias in served,
            rss_bytes=_rss_bytes(state["pid"]),
            started_at=state.get("started_at"),
            detached=state.get("detached"),
        )
    return info
