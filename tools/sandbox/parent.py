"""The parent's side of one run: take a uid and a run directory, prepare the workspace, start the launcher
in the chosen namespaces, feed its output through the capture, watch the clock and the memory, and turn what
the launcher reports into a SandboxResult (with a best guess at which limit ended the run)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import COPY_IGNORE, INSIDE, SAFE_PATH, Isolation, Limit, SandboxError, SandboxLimits, SandboxResult
from .capture import Capture
from .files import RunPaths, first_blocked, new_run_dir, plan_root, prepare_workspace, restore_tree
from .isolation import detect_isolation, launcher_env, unshare_prefix
from .launcher import LAUNCHER, chown_tree, descendants
from .memory import Cgroup, memory_cgroup, tree_rss_bytes
from .uids import kill_uid, pids_of_uid, uid_slot

# Names that must never reach generated code, even when a caller passes them explicitly.
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE", re.IGNORECASE)


def _child_env(home: str, tmp: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {
        "PATH": f"{os.path.dirname(sys.executable)}:{SAFE_PATH}",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": home,
        "TMPDIR": tmp,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONIOENCODING": "utf-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
    }
    for key, value in (extra or {}).items():
        if not SECRET_NAME.search(key):
            env[key] = value
    return env


def _rlimits(limits: SandboxLimits, nproc_base: int) -> dict[str, list[int]]:
    mb = 1024 * 1024
    return {
        "RLIMIT_AS": [limits.memory_mb * mb] * 2,
        "RLIMIT_CPU": [limits.cpu_s, limits.cpu_s + 2],  # SIGXCPU first, SIGKILL two seconds later
        "RLIMIT_FSIZE": [limits.file_size_mb * mb] * 2,
        "RLIMIT_NPROC": [nproc_base + limits.nproc] * 2,
        "RLIMIT_NOFILE": [limits.open_files] * 2,
        "RLIMIT_CORE": [0, 0],
    }


def execute(
    argv: Sequence[str],
    workspace: Path | None,
    *,
    limits: SandboxLimits | None,
    copy: bool,
    env: Mapping[str, str] | None,
    stdin: str | bytes | None,
    isolation: str | None,
    setup: Callable[[RunPaths], list[str]] | None = None,
    collect: Callable[[RunPaths], None] | None = None,
    ro_paths: Sequence[str] = (),
    outputs: Sequence[str] = (),
) -> SandboxResult:
    """One run. `setup(paths)` may add files and returns the final argv; `collect` reads results out before
    the run directory is deleted; `outputs` (paths relative to the run directory) are the files a private root
    copies back for it."""
    limits = limits or SandboxLimits()
    iso = detect_isolation(isolation)
    private_root = iso.private_tmp
    with contextlib.ExitStack() as stack:
        uid = stack.enter_context(uid_slot()) if iso.uid_drop else None
        run_dir = stack.enter_context(new_run_dir())
        ws = prepare_workspace(run_dir, workspace, copy)
        lent = ws != run_dir / "ws"
        for sub in ("home", "tmp", "run"):
            (run_dir / sub).mkdir(mode=0o700)
        if private_root:
            paths = RunPaths(run_dir, ws, INSIDE, INSIDE + "/ws")
        else:
            paths = RunPaths(run_dir, ws, str(run_dir), str(ws))
        final_argv = list(setup(paths) if setup else argv)
        if uid is not None:
            if not private_root:  # a private root hands the launcher's tmpfs copies to the uid instead
                for sub in ("home", "tmp", "run"):
                    os.chown(run_dir / sub, uid, uid)
            if lent or not private_root:
                owners = chown_tree(ws, uid, uid, COPY_IGNORE if lent else ())
                if lent:
                    stack.callback(restore_tree, ws, owners, COPY_IGNORE)
            if not private_root:
                exe = shutil.which(final_argv[0], path=_child_env("", "", None)["PATH"]) or final_argv[0]
                for p in [exe, str(ws), *ro_paths]:
                    if first_blocked(os.path.realpath(p), uid):
                        raise SandboxError(
                            f"{p} is not reachable by the sandbox uid without mount namespaces; "
                            "run where `unshare` works, or keep Python and workspaces out of private homes"
                        )
        nproc_base = 0
        if uid is None and iso.name == "none":
            nproc_base = len(pids_of_uid(os.getuid()))  # the limit counts all our own processes too
        cgroup = stack.enter_context(memory_cgroup(limits.memory_mb))
        spec: dict[str, Any] = {
            "argv": final_argv,
            "env": _child_env(paths.inside(run_dir / "home"), paths.inside(run_dir / "tmp"), env),
            "cwd": paths.inside_ws,
            "uid": uid,
            "rlimits": _rlimits(limits, nproc_base),
            "root": plan_root(paths, lent, ro_paths, limits, outputs) if private_root else None,
            "cgroup_procs": cgroup.procs if cgroup else None,
            "lo_up": iso.network_isolated,
            "deadline_s": limits.wall_s + 5,
        }
        stdin_file = None
        if stdin is not None:
            stdin_path = run_dir / "stdin"
            stdin_path.write_bytes(stdin.encode() if isinstance(stdin, str) else stdin)
            stdin_file = stack.enter_context(open(stdin_path, "rb"))
        result = _spawn(spec, iso, limits, uid, stdin_file, cgroup)
        if collect:
            collect(paths)
        return result
    raise AssertionError("unreachable")  # pragma: no cover


def _spawn(
    spec: dict[str, Any],
    iso: Isolation,
    limits: SandboxLimits,
    uid: int | None,
    stdin_file: Any,
    cgroup: Cgroup | None,
) -> SandboxResult:
    status_r, status_w = os.pipe()
    # The launcher holds the read end of a lifeline whose only write end is ours: if we die (kill -9), it sees
    # end-of-file at once and takes the run down with it, instead of leaving a hanging test alive.
    life_r, life_w = os.pipe()
    spec["status_fd"] = status_w
    spec["lifeline_fd"] = life_r
    prefix: list[str] = []
    if iso.pid_namespace:
        prefix = unshare_prefix(iso.name)
    cmd = [*prefix, sys.executable, "-I", "-S", str(LAUNCHER), "--launch", json.dumps(spec)]
    out, err, status_buf = Capture(limits.output_bytes), Capture(limits.output_bytes), bytearray()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=stdin_file or subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(status_w, life_r),
            start_new_session=True,
            env=launcher_env(),
            cwd="/",
        )
    except BaseException:
        os.close(life_w)
        raise
    finally:
        os.close(status_w)
        os.close(life_r)
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    sinks: dict[int, Callable[[bytes], None]] = {
        proc.stdout.fileno(): out.feed,
        proc.stderr.fileno(): err.feed,
        status_r: status_buf.extend,
    }
    for fd in sinks:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    timed_out = memory_killed = False
    procs_at_timeout = 0
    deadline = start + limits.wall_s
    next_rss_check = start
    try:
        while sel.get_map():
            now = time.monotonic()
            if proc.poll() is not None:
                deadline = min(deadline, now + 2.0)  # drain; writers die with the launcher
            elif cgroup is None and now >= next_rss_check:
                next_rss_check = now + 0.2
                if tree_rss_bytes(uid, proc.pid) > limits.memory_mb * 1024 * 1024:
                    memory_killed = True
                    _terminate(proc, iso)
                    break
            if now >= deadline:
                if proc.returncode is None:
                    timed_out = True
                    # Everything the run started hangs below us (namespace init or subreaper launcher).
                    procs_at_timeout = max(
                        len(pids_of_uid(uid)) if uid is not None else 0,
                        len(descendants(proc.pid)) - int(iso.pid_namespace),
                    )
                    _terminate(proc, iso)
                break
            for key, _ in sel.select(timeout=min(0.1, max(0.0, deadline - now))):
                fd = int(key.fd)
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if data:
                    sinks[fd](data)
                else:
                    sel.unregister(fd)
    finally:
        sel.close()
        os.close(status_r)
        proc.stdout.close()
        proc.stderr.close()
        if proc.poll() is None:
            _terminate(proc, iso)
        os.close(life_w)
    duration = time.monotonic() - start
    proc.wait()
    if uid is not None:
        kill_uid(uid)
    if cgroup is not None:
        memory_killed = cgroup.oom_kills() > 0
    status: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        status = json.loads(status_buf.decode() or "{}")
    if status.get("setup_error"):
        raise SandboxError(f"sandbox setup failed: {status['setup_error']}")
    if "wait_status" in status:
        exit_code = os.waitstatus_to_exitcode(status["wait_status"])
    else:
        exit_code = proc.returncode if not timed_out else -signal.SIGKILL
    cpu = status.get("cpu_s")
    stderr_text = err.text()
    return SandboxResult(
        exit_code=exit_code,
        stdout=out.text(),
        stderr=stderr_text,
        duration_s=round(duration, 4),
        timed_out=timed_out,
        limit_hit="memory"
        if memory_killed
        else classify(exit_code, timed_out, cpu, procs_at_timeout, stderr_text, limits),
        isolation=iso.name,
        network_isolated=iso.network_isolated,
        truncated=out.truncated or err.truncated,
        stdout_bytes=out.total,
        stderr_bytes=err.total,
        uid_dropped=uid is not None,
        sandbox_uid=uid,
        cpu_s=cpu,
        max_rss_mb=status.get("max_rss_mb"),
    )


def _terminate(proc: subprocess.Popen[bytes], iso: Isolation) -> None:
    """Kill a run that is still going. Only called while `proc` is unreaped, so its pgid is still ours."""
    if not iso.pid_namespace:
        # Without a PID namespace the launcher (a subreaper) is what can find daemons: ask it first.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


_LIMIT_TEXTS: tuple[tuple[Limit, re.Pattern[str]], ...] = (
    ("file_size", re.compile(r"File too large|\[Errno 27\]|EFBIG|File size limit exceeded")),
    ("cpu", re.compile(r"CPU time limit exceeded")),
    ("memory", re.compile(r"MemoryError|Cannot allocate memory|std::bad_alloc|out of memory")),
    (
        "nproc",
        re.compile(
            r"BlockingIOError|Cannot fork|can't fork|fork: (retry|Resource)|"
            r"Resource temporarily unavailable"
        ),
    ),
)


def classify(
    exit_code: int, timed_out: bool, cpu: float | None, procs_at_timeout: int, stderr: str, limits: SandboxLimits
) -> Limit | None:
    """Best guess at which limit ended (or crippled) the run."""
    sig = -exit_code if exit_code < 0 else exit_code - 128 if exit_code > 128 else None  # shells: 128+N
    if sig == signal.SIGXFSZ:
        return "file_size"
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and not timed_out and (cpu or 0) >= limits.cpu_s):
        return "cpu"
    if exit_code != 0 or timed_out:
        for name, pattern in _LIMIT_TEXTS:
            if pattern.search(stderr):
                return name
    if timed_out:
        return "nproc" if procs_at_timeout >= max(1, limits.nproc - 2) else "wall"
    return None
