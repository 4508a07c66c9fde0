"""Run untrusted generated code (QA loop, HumanEval/MBPP) in a contained child process.

Nothing generated ever runs in the framework's process. Each run goes through a small *launcher* -- this
very file executed as ``python -I -S sandbox.py --launch SPEC`` (stdlib only, so it needs no site-packages)
-- which sets up the containment, forks the target with dropped privileges and limits, reaps it and reports
its wait status and resource usage on a private pipe.

Isolation levels, strongest first; :func:`detect_isolation` probes once per process and picks the best:

``unshare`` (running as root, util-linux ``unshare`` works)
    Fresh mount, PID, network, IPC and UTS namespaces; the launcher is PID 1, so when the target exits or
    the run is killed the kernel kills every process left in the namespace (daemons included). Only a
    private loopback exists, so nothing outside is reachable. ``/tmp``, ``/var/tmp``, ``/dev/shm`` and
    ``/run/lock`` are private size-limited tmpfs. The target runs as a per-run uid (see below).

    The interpreter problem: as root we run a pyenv Python under ``/root`` (mode 0700), which an
    unprivileged uid cannot reach. Rather than chmod the host, the launcher covers each blocking directory
    with an empty tmpfs inside the mount namespace and bind-mounts back, read-only, only the paths the
    child needs (the interpreter prefix and site-packages). That also hides the rest of ``/root``.

``userns`` (not root, unprivileged user namespaces allowed)
    The same namespaces inside a user namespace; the target keeps the caller's uid (no other uid is
    mapped) but loses every capability. It can do no more than the calling user could.

``none`` (no namespaces)
    A process group, a child subreaper and rlimits. As root the uid drop still works, but the interpreter
    must be reachable by the sandbox uid (:class:`SandboxError` otherwise). No network isolation.

Why a uid per run: RLIMIT_NPROC is ignored for root and counts every process of a uid machine-wide, so
concurrent runs sharing one uid would starve each other. Runs take a uid from a pool
(``SOPGRAPH_SANDBOX_UID_BASE``, default 1900000000, 256 slots; uids with a passwd entry, inside an
``/etc/subuid`` range or with live processes are skipped) under an ``flock`` held for the whole run, which
also coordinates separate framework processes. After every run all processes of that uid are killed before
the slot is released.

Run directories (workspace copy, HOME, TMPDIR) go under ``SOPGRAPH_SANDBOX_TMP`` (default: the system
temp dir) and are deleted after each run.

Known limits: the child may fill the run directory's disk up to wall-time x throughput (each file is capped
by RLIMIT_FSIZE, their number is not; point ``SOPGRAPH_SANDBOX_TMP`` at a size-limited filesystem to bound
it); a lent workspace (``copy=False``) may come back with symlinks to anywhere, so do not follow them as
root; ``limit_hit`` for memory and process limits is inferred from the exit signal, the process count at
timeout and well-known error texts, so it is a best guess; a test report is only as trustworthy as the code
under test, which runs inside pytest and could forge its result.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import re
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "Isolation",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "TestCase",
    "TestReport",
    "available_isolations",
    "detect_isolation",
    "run_command",
    "run_many",
    "run_python",
    "run_tests",
]

T = TypeVar("T")

LAUNCHER = Path(__file__).resolve()
UNSHARE_FLAGS = ["--mount", "--pid", "--net", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc"]
# World-writable places an unprivileged uid could otherwise scribble in (and leave traps for later runs).
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
COPY_IGNORE = (".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Names that must never reach generated code, even when a caller passes them explicitly.
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE", re.IGNORECASE)
UID_POOL_SIZE = 256
# Inside 1879048192-2147352575, which systemd's uid map leaves unused (nspawn and subuid ranges sit lower).
DEFAULT_UID_BASE = 1_900_000_000


class SandboxError(RuntimeError):
    """The sandbox could not be set up as requested (not: the program failed)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits; defaults suit one generated program or test suite."""

    wall_s: float = 30.0
    cpu_s: int = 20
    memory_mb: int = 1024  # address space (RLIMIT_AS), per process
    nproc: int = 64  # processes + threads of the sandbox uid
    file_size_mb: int = 64  # largest file the child may write (RLIMIT_FSIZE)
    output_bytes: int = 64 * 1024  # kept per stream: first half + last half
    open_files: int = 256
    tmp_mb: int = 128  # size of each private tmpfs (/tmp, /dev/shm, ...)


@dataclass(frozen=True)
class Isolation:
    """What containment a run gets on this machine."""

    name: str  # "unshare" | "userns" | "none"
    network_isolated: bool
    pid_namespace: bool
    private_tmp: bool
    uid_drop: bool  # the target runs as an unprivileged per-run uid
    detail: str = ""


@dataclass(frozen=True)
class SandboxResult:
    exit_code: int  # negative: killed by that signal (subprocess convention)
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool
    limit_hit: str | None  # "wall" | "cpu" | "memory" | "nproc" | "file_size" | None
    isolation: str
    network_isolated: bool
    truncated: bool
    stdout_bytes: int  # total produced, before truncation
    stderr_bytes: int
    uid_dropped: bool
    sandbox_uid: int | None
    cpu_s: float | None = None
    max_rss_mb: float | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class

    name: str
    outcome: str  # "passed" | "failed" | "error" | "skipped"
    message: str = ""
    details: str = ""
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class TestReport:
    __test__ = False

    passed: int
    failed: int
    errors: int
    skipped: int
    cases: list[TestCase]
    result: SandboxResult
    report_found: bool

    @property
    def all_passed(self) -> bool:
        return (
            self.report_found
            and self.passed > 0
            and self.failed == 0
            and self.errors == 0
            and self.result.exit_code == 0
            and not self.result.timed_out
        )

    def summary_for_model(self, max_chars: int = 2000, max_cases: int = 5, frame_lines: int = 10) -> str:
        """A short debugging brief: counts, why the run ended, and the trimmed failing assertions."""
        r = self.result
        lines = [f"Tests: {self.passed} passed, {self.failed} failed, {self.errors} errors, {self.skipped} skipped."]
        if r.timed_out:
            lines.append(
                f"The run was killed after {r.duration_s:.0f}s (wall-clock limit); "
                "a test probably hangs or loops forever."
            )
        elif r.limit_hit:
            lines.append(f"The run hit the sandbox's {r.limit_hit.replace('_', ' ')} limit.")
        if not self.report_found:
            lines.append(f"pytest produced no report (exit code {r.exit_code}). Output tail:")
            tail = (r.stdout.strip() + "\n" + r.stderr.strip()).strip()
            lines.append(_tail_lines(tail, frame_lines * 2))
        bad = [c for c in self.cases if c.outcome in ("failed", "error")]
        for case in bad[:max_cases]:
            lines.append(f"{case.outcome.upper()} {case.name}")
            body = _trim_traceback(case.details or case.message, frame_lines)
            lines.extend("  " + ln for ln in body.splitlines())
        if len(bad) > max_cases:
            lines.append(f"... and {len(bad) - max_cases} more failing tests.")
        text = "\n".join(lines)
        if len(text) > max_chars:
            marker = f"\n...[{len(text) - max_chars} more chars]"
            text = text[: max(0, max_chars - len(marker))] + marker
        return text


# --------------------------------------------------------------------------------------------------------
# Isolation detection


_detect_lock = threading.Lock()
_detected: dict[str, Isolation | None] = {}


def _probe(name: str) -> Isolation | None:
    root = os.geteuid() == 0
    if name == "none":
        uid_ok = False
        if root:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                uid_ok = (
                    subprocess.run(
                        ["/bin/sh", "-c", "exit 0"], user=65534, group=65534, extra_groups=[], env={}, timeout=10
                    ).returncode
                    == 0
                )
        return Isolation(
            "none", False, False, False, uid_ok, "process group + rlimits" + (" + uid drop" if uid_ok else "")
        )
    unshare = shutil.which("unshare")
    if unshare is None or (name == "unshare") != root:
        return None
    prefix = [unshare, *(["--user", "--map-root-user"] if name == "userns" else []), *UNSHARE_FLAGS, "--"]
    with tempfile.TemporaryDirectory(prefix="sopgraph-probe-") as tmp:
        spec = {"mount_dir": tmp, "uid": 65534 if root else None}
        cmd = [*prefix, sys.executable, "-I", "-S", str(LAUNCHER), "--probe", json.dumps(spec)]
        try:
            out = subprocess.run(cmd, capture_output=True, env=_launcher_env(), timeout=20, cwd=tmp)
            info = json.loads(out.stdout.decode() or "{}")
        except (OSError, ValueError, subprocess.SubprocessError):
            return None
    if not info.get("ok"):
        return None
    return Isolation(
        name,
        True,
        True,
        True,
        root,
        f"mount+pid+net+ipc+uts namespaces{' + uid drop' if root else ' in a user namespace'}",
    )


def _get(name: str) -> Isolation | None:
    with _detect_lock:
        if name not in _detected:
            _detected[name] = _probe(name)
        return _detected[name]


def available_isolations() -> list[Isolation]:
    """Every level that works here, strongest first."""
    return [iso for iso in (_get(n) for n in ("unshare", "userns", "none")) if iso is not None]


def detect_isolation(name: str | None = None) -> Isolation:
    """The strongest working level, or the named one (SandboxError if it does not work here)."""
    if name in (None, "auto"):
        return available_isolations()[0]
    if name not in ("unshare", "userns", "none"):
        raise ValueError(f"unknown isolation {name!r}")
    iso = _get(name)
    if iso is None:
        raise SandboxError(f"isolation {name!r} is not available on this machine")
    return iso


# --------------------------------------------------------------------------------------------------------
# Per-run uids


def _uid_base() -> int:
    return int(os.environ.get("SOPGRAPH_SANDBOX_UID_BASE", DEFAULT_UID_BASE))


def _private_dir(name: str) -> Path:
    """A directory only we own; refuse one planted by someone else in a shared temp dir."""
    path = Path(tempfile.gettempdir()) / f"{name}-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise SandboxError(f"{path} is not a directory owned by us")
    os.chmod(path, 0o700)
    return path


@contextlib.contextmanager
def _uid_slot(timeout_s: float = 600.0) -> Iterator[int]:
    """Hold one pool uid exclusively (across threads and processes) for the duration of a run."""
    lock_dir = _private_dir("sopgraph-sandbox-uids")
    base = _uid_base()
    deadline = time.monotonic() + timeout_s
    while True:
        for uid in range(base, base + UID_POOL_SIZE):
            fd = os.open(lock_dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            if _uid_in_passwd(uid) or _uid_delegated(uid) or _pids_of_uid(uid):
                # A real account or processes left from a crashed run: not ours to use (or kill) now.
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                continue
            try:
                yield uid
            finally:
                _kill_uid(uid)  # if this raises, the lock stays held: that uid must not be reused
                os.close(fd)
            return
        if time.monotonic() > deadline:
            raise SandboxError("no free sandbox uid")
        time.sleep(0.05)


def _uid_in_passwd(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _uid_delegated(uid: int) -> bool:
    """Whether `uid` lies in a range handed to some user's containers (/etc/subuid, /etc/subgid)."""
    for name in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(OSError):
            for line in Path(name).read_text().splitlines():
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    if int(parts[1]) <= uid < int(parts[1]) + int(parts[2]):
                        return True
    return False


def _pids_of_uid(uid: int) -> list[int]:
    """Processes whose real uid is `uid`; /proc/PID ownership lies for non-dumpable ones, status does not."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except (OSError, ValueError):
            continue
    return pids


def _kill_uid(uid: int, timeout_s: float = 10.0) -> None:
    """Kill every process of `uid`; kill(-1) from that uid is atomic against forking."""
    deadline = time.monotonic() + timeout_s
    while _pids_of_uid(uid):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["/bin/sh", "-c", "kill -9 -1"],
                user=uid,
                group=uid,
                extra_groups=[],
                env={},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=5,
            )
        if time.monotonic() > deadline:
            raise SandboxError(f"processes of sandbox uid {uid} survive SIGKILL")
        time.sleep(0.01)


# --------------------------------------------------------------------------------------------------------
# Filesystem helpers


def _can_search(st: os.stat_result, uid: int, gid: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _first_blocked(path: str, uid: int) -> str | None:
    """The outermost ancestor of `path` that `uid` cannot traverse."""
    cur = "/"
    for part in Path(path).parts[1:]:
        if not _can_search(os.stat(cur), uid, uid):
            return cur
        cur = os.path.join(cur, part)
    return None


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _interpreter_paths() -> list[str]:
    import site

    paths = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable)), *site.getsitepackages()}
    return sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)})


def _chown_tree(root: Path, uid: int, gid: int, skip: Sequence[str] = ()) -> dict[str, tuple[int, int]]:
    """lchown a tree (never following links); returns the previous owners."""
    before: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in [*dirnames, *filenames, ""]:
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            before[p] = (st.st_uid, st.st_gid)
            os.lchown(p, uid, gid)
    return before


def _restore_tree(root: Path, owners: Mapping[str, tuple[int, int]], skip: Sequence[str]) -> None:
    """Give a lent workspace back: old owners, new files to the workspace owner, no set-id bits."""
    default = owners.get(str(root), (os.geteuid(), os.getegid()))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in [*dirnames, *filenames, ""]:
            p = os.path.join(dirpath, name) if name else dirpath
            with contextlib.suppress(FileNotFoundError):
                os.lchown(p, *owners.get(p, default))
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                    os.chmod(p, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))


def _read_child_file(path: Path, max_bytes: int) -> bytes | None:
    """Read a file the child wrote without following its symlinks or blocking on its FIFOs."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read(max_bytes + 1)


# --------------------------------------------------------------------------------------------------------
# Output capture


class _Capture:
    """Keep the first and last `limit/2` bytes of a stream and count the rest."""

    def __init__(self, limit: int) -> None:
        self.head_max = limit - limit // 2
        self.tail_max = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_max:
            self.tail += data
            if len(self.tail) > 2 * self.tail_max:
                del self.tail[: len(self.tail) - self.tail_max]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + min(len(self.tail), self.tail_max)

    def text(self) -> str:
        tail = bytes(self.tail[-self.tail_max :]) if self.tail_max else b""
        if not self.truncated:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
        dropped = self.total - len(self.head) - len(tail)
        return (
            self.head.decode("utf-8", "replace")
            + f"\n...[truncated {dropped} bytes]...\n"
            + tail.decode("utf-8", "replace")
        )


# --------------------------------------------------------------------------------------------------------
# Running


def _launcher_env() -> dict[str, str]:
    return {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}


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


def _plan_mounts(
    iso: Isolation, uid: int | None, rw: Sequence[str], ro: Sequence[str], limits: SandboxLimits
) -> dict[str, Any] | None:
    if not iso.private_tmp:
        return None
    tmpfs: dict[str, list[Any]] = {}
    for d in PRIVATE_TMP_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            tmpfs[os.path.realpath(d)] = [os.path.realpath(d), 0o1777, f"{limits.tmp_mb}m"]
    if uid is not None:
        for p in [*rw, *ro]:
            blocked = _first_blocked(p, uid)
            if blocked and blocked != "/" and not any(_under(blocked, t) for t in tmpfs):
                tmpfs[blocked] = [blocked, 0o755, "1m"]
    # Only paths a tmpfs now hides need binding back (same path inside), shallow ones first.
    binds = [(p, p, False) for p in rw] + [(p, p, True) for p in ro]
    binds = [b for b in binds if any(_under(b[1], t) for t in tmpfs)]
    return {
        "tmpfs": sorted(tmpfs.values(), key=lambda t: str(t[0]).count("/")),
        "binds": sorted(binds, key=lambda b: b[1].count("/")),
    }


def _prepare_workspace(run_dir: Path, workspace: Path | None, copy: bool) -> Path:
    if workspace is not None and not workspace.is_dir():
        raise SandboxError(f"workspace {workspace} is not a directory")
    if not copy and workspace is not None:
        return workspace.resolve()
    ws = run_dir / "ws"
    if workspace is None:
        ws.mkdir()
    else:
        shutil.copytree(workspace, ws, symlinks=True, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    return ws


def _execute(
    argv: Sequence[str],
    workspace: Path | None,
    *,
    limits: SandboxLimits | None,
    copy: bool,
    env: Mapping[str, str] | None,
    stdin: str | bytes | None,
    isolation: str | None,
    setup: Callable[[Path, Path], list[str]] | None = None,
    collect: Callable[[Path, Path], None] | None = None,
    ro_paths: Sequence[str] = (),
) -> SandboxResult:
    """One run. `setup(run_dir, ws)` may add files and returns the final argv; `collect` reads results
    out before the run directory is deleted."""
    limits = limits or SandboxLimits()
    iso = detect_isolation(isolation)
    with contextlib.ExitStack() as stack:
        uid = stack.enter_context(_uid_slot()) if iso.uid_drop else None
        run_dir = Path(tempfile.mkdtemp(prefix="sopgraph-sbx-", dir=os.environ.get("SOPGRAPH_SANDBOX_TMP")))
        stack.callback(shutil.rmtree, run_dir, True)
        os.chmod(run_dir, 0o711)
        ws = _prepare_workspace(run_dir, workspace, copy)
        for sub in ("home", "tmp", "run"):
            (run_dir / sub).mkdir(mode=0o700)
        final_argv = list(setup(run_dir, ws) if setup else argv)
        if uid is not None:
            for sub in ("home", "tmp", "run"):
                os.chown(run_dir / sub, uid, uid)
            lent = ws != run_dir / "ws"
            owners = _chown_tree(ws, uid, uid, COPY_IGNORE if lent else ())
            if lent:
                stack.callback(_restore_tree, ws, owners, COPY_IGNORE)
            if not iso.private_tmp:
                exe = shutil.which(final_argv[0], path=_child_env("", "", None)["PATH"]) or final_argv[0]
                for p in [exe, str(ws), *ro_paths]:
                    if _first_blocked(os.path.realpath(p), uid):
                        raise SandboxError(
                            f"{p} is not reachable by the sandbox uid without mount namespaces; "
                            "run where `unshare` works, or keep Python and workspaces out of private homes"
                        )
        nproc_base = 0
        if uid is None and iso.name == "none":
            nproc_base = len(_pids_of_uid(os.getuid()))  # the limit counts all our own processes too
        rw = [str(run_dir)] + ([] if _under(str(ws), str(run_dir)) else [str(ws)])
        spec: dict[str, Any] = {
            "argv": final_argv,
            "env": _child_env(str(run_dir / "home"), str(run_dir / "tmp"), env),
            "cwd": str(ws),
            "uid": uid,
            "rlimits": _rlimits(limits, nproc_base),
            "mounts": _plan_mounts(iso, uid, rw, [*_interpreter_paths(), *ro_paths], limits),
            "lo_up": iso.network_isolated,
            "deadline_s": limits.wall_s + 5,
        }
        stdin_file = None
        if stdin is not None:
            stdin_path = run_dir / "stdin"
            stdin_path.write_bytes(stdin.encode() if isinstance(stdin, str) else stdin)
            stdin_file = stack.enter_context(open(stdin_path, "rb"))
        result = _spawn(spec, iso, limits, uid, stdin_file)
        if collect:
            collect(run_dir, ws)
        return result
    raise AssertionError("unreachable")  # pragma: no cover


def _spawn(
    spec: dict[str, Any], iso: Isolation, limits: SandboxLimits, uid: int | None, stdin_file: Any
) -> SandboxResult:
    status_r, status_w = os.pipe()
    spec["status_fd"] = status_w
    prefix: list[str] = []
    if iso.pid_namespace:
        unshare = shutil.which("unshare") or "unshare"
        prefix = [unshare, *(["--user", "--map-root-user"] if iso.name == "userns" else []), *UNSHARE_FLAGS, "--"]
    cmd = [*prefix, sys.executable, "-I", "-S", str(LAUNCHER), "--launch", json.dumps(spec)]
    out, err, status_buf = _Capture(limits.output_bytes), _Capture(limits.output_bytes), bytearray()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=stdin_file or subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(status_w,),
            start_new_session=True,
            env=_launcher_env(),
            cwd="/",
        )
    finally:
        os.close(status_w)
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
    timed_out = False
    procs_at_timeout = 0
    deadline = start + limits.wall_s
    try:
        while sel.get_map():
            now = time.monotonic()
            if proc.poll() is not None:
                deadline = min(deadline, now + 2.0)  # drain; writers die with the launcher
            if now >= deadline:
                if proc.returncode is None:
                    timed_out = True
                    # Everything the run started hangs below us (namespace init or subreaper launcher).
                    procs_at_timeout = max(
                        len(_pids_of_uid(uid)) if uid is not None else 0,
                        len(_descendants(proc.pid)) - int(iso.pid_namespace),
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
    duration = time.monotonic() - start
    proc.wait()
    if uid is not None:
        _kill_uid(uid)
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
        limit_hit=_classify(exit_code, timed_out, cpu, procs_at_timeout, stderr_text, limits),
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


_LIMIT_TEXTS = (
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


def _classify(
    exit_code: int, timed_out: bool, cpu: float | None, procs_at_timeout: int, stderr: str, limits: SandboxLimits
) -> str | None:
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


# --------------------------------------------------------------------------------------------------------
# Public API


def run_command(
    argv: Sequence[str],
    workspace: Path | str | None = None,
    *,
    limits: SandboxLimits | None = None,
    copy: bool = True,
    env: Mapping[str, str] | None = None,
    stdin: str | bytes | None = None,
    isolation: str | None = None,
    ro_paths: Sequence[str] = (),
) -> SandboxResult:
    """Run `argv` in the workspace: by default a fresh copy (`copy=True`); `copy=False` lends the directory
    itself to the sandbox uid for the run. `ro_paths` are extra host paths the child must be able to read."""
    if not argv:
        raise ValueError("empty argv")
    ws = Path(workspace) if workspace is not None else None
    return _execute(argv, ws, limits=limits, copy=copy, env=env, stdin=stdin, isolation=isolation, ro_paths=ro_paths)


def run_python(
    code_or_path: str | Path,
    workspace: Path | str | None = None,
    *,
    args: Sequence[str] = (),
    limits: SandboxLimits | None = None,
    copy: bool = True,
    env: Mapping[str, str] | None = None,
    stdin: str | bytes | None = None,
    isolation: str | None = None,
) -> SandboxResult:
    """Run Python source (a str) or a script (a Path; relative paths are taken inside the workspace)
    with this interpreter, so the venv's packages are importable."""
    ws = Path(workspace) if workspace is not None else None
    path = code_or_path if isinstance(code_or_path, Path) else None
    code = code_or_path if isinstance(code_or_path, str) else ""

    def setup(run_dir: Path, ws_dir: Path) -> list[str]:
        if path is not None:
            src = (path if path.is_absolute() else (ws or Path.cwd()) / path).resolve()
            if ws is not None and _under(str(src), str(ws.resolve())):
                script = ws_dir / src.relative_to(ws.resolve())
            else:
                script = run_dir / "run" / src.name
                shutil.copyfile(src, script)
        else:
            script = run_dir / "run" / "main.py"
            script.write_text(code, encoding="utf-8")
        return [sys.executable, str(script), *args]

    return _execute(
        [sys.executable], ws, limits=limits, copy=copy, env=env, stdin=stdin, isolation=isolation, setup=setup
    )


def run_tests(
    workspace: Path | str,
    test_path: str = "tests",
    *,
    limits: SandboxLimits | None = None,
    copy: bool = True,
    pytest_args: Sequence[str] = (),
    plugins: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    isolation: str | None = None,
) -> TestReport:
    """Run pytest (which also runs unittest cases) in the sandbox and read its junit-xml report.

    Plugin autoloading is off: the venv's plugins (langsmith, faker, anyio, ...) cost ~2 s per run and
    generated tests must not depend on them. Name any plugin the tests need in `plugins`."""
    report: dict[str, bytes | None] = {"xml": None}
    env = {**(env or {}), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}

    def setup(run_dir: Path, ws_dir: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pytest",
            test_path,
            "-q",
            "--tb=short",
            "-p",
            "no:cacheprovider",
            *(arg for name in plugins for arg in ("-p", name)),
            f"--junitxml={run_dir / 'run' / 'junit.xml'}",
            "-o",
            "junit_family=xunit1",
            "-o",
            "junit_logging=no",
            *pytest_args,
        ]

    def collect(run_dir: Path, ws_dir: Path) -> None:
        report["xml"] = _read_child_file(run_dir / "run" / "junit.xml", 8 * 1024 * 1024)

    result = _execute(
        [sys.executable],
        Path(workspace),
        limits=limits,
        copy=copy,
        env=env,
        stdin=None,
        isolation=isolation,
        setup=setup,
        collect=collect,
    )
    parsed = _parse_junit(report["xml"])
    cases = parsed or []
    counts = {o: sum(c.outcome == o for c in cases) for o in ("passed", "failed", "error", "skipped")}
    return TestReport(
        counts["passed"],
        counts["failed"],
        counts["error"],
        counts["skipped"],
        cases,
        result,
        report_found=parsed is not None,
    )


def run_many(jobs: Iterable[Callable[[], T]], *, max_workers: int | None = None) -> list[T]:
    """Run sandbox calls concurrently (each gets its own uid, run dir and namespaces); results in order."""
    jobs = list(jobs)
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=max_workers or min(8, len(jobs))) as pool:
        return list(pool.map(lambda job: job(), jobs))


# --------------------------------------------------------------------------------------------------------
# Test reports


def _parse_junit(data: bytes | None) -> list[TestCase] | None:
    if not data or len(data) > 8 * 1024 * 1024 or b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        return None  # absent, oversized, or trying entity tricks on our parser
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return None
    cases = []
    for tc in root.iter("testcase"):
        classname, name = tc.get("classname", ""), tc.get("name", "")
        outcome, message, details = "passed", "", ""
        for tag, label in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            el = tc.find(tag)
            if el is not None:
                outcome, message, details = label, el.get("message", ""), (el.text or "").strip()
                break
        line = tc.get("line")
        cases.append(
            TestCase(
                name=f"{classname}::{name}" if classname else name,
                outcome=outcome,
                message=message,
                details=details,
                file=tc.get("file"),
                line=int(line) + 1 if line and line.isdigit() else None,
            )
        )
    return cases


def _tail_lines(text: str, n: int) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-n:])


# Caret underlines, empty `E` lines and pytest's "-v" hints cost a model tokens and tell it nothing.
_NOISE = re.compile(r"^\s*$|^\s*[\^~]+\s*$|^E\s*$|^E\s+Use -v to get|^E\s+Full diff:")


def _trim_traceback(text: str, max_lines: int) -> str:
    """Keep where it failed and why: the last frames and every `E` (explanation) line, capped."""
    lines = [ln.rstrip() for ln in text.splitlines() if not _NOISE.match(ln)]
    if len(lines) <= max_lines:
        return "\n".join(lines)
    explain = [i for i, ln in enumerate(lines) if ln.startswith("E ")]
    start = max(0, (explain[0] if explain else len(lines)) - 4)
    kept = lines[start:][:max_lines]
    skipped = len(lines) - len(kept)
    return "\n".join(
        [f"...[{start} traceback lines above]..."] * bool(start)
        + kept
        + [f"...[{skipped - start} more lines]"] * bool(skipped - start > 0)
    )


# --------------------------------------------------------------------------------------------------------
# The launcher: runs as `python -I -S sandbox.py --launch SPEC` (as root inside the namespaces when
# available). It is our code, not the program's; the target only runs after the fork, as the sandbox uid.


class _Abort(Exception):
    pass


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    import ctypes

    if ret != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = (1, 4, 24, 36, 38)


def _setup_mounts(libc: Any, mounts: Mapping[str, Any]) -> None:
    # Open bind sources before any tmpfs hides them, then mount them back from the open descriptors.
    fds = [os.open(src, os.O_PATH | os.O_DIRECTORY) for src, _, _ in mounts["binds"]]
    for path, mode, size in mounts["tmpfs"]:
        _check(
            libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode:o},size={size}".encode()),
            f"tmpfs on {path}",
        )
    for fd, (_, dst, ro) in zip(fds, mounts["binds"], strict=True):
        os.makedirs(dst, mode=0o755, exist_ok=True)
        _check(libc.mount(f"/proc/self/fd/{fd}".encode(), dst.encode(), None, MS_BIND | MS_REC, None), f"bind {dst}")
        if ro:
            libc.mount(
                None, dst.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None
            )  # best effort: a user namespace may not be allowed to change locked flags
        os.close(fd)


def _loopback_up() -> None:
    """A namespace's loopback starts down; bring it up so the child's own local servers work."""
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, ifr)[:18])[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP


def _exec_target(libc: Any, spec: Mapping[str, Any]) -> None:
    """In the forked child: limits, privilege drop, exec. Never returns."""
    try:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGALRM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores SIGPIPE/SIGXFSZ; exec would keep that
        os.chdir(spec["cwd"])
        for name, (soft, hard) in spec["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (soft, hard))
        if os.geteuid() == 0:
            for cap in range(64):
                if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                    break
        uid = spec["uid"]
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setresuid, which clears it
        argv = spec["argv"]
        os.execvpe(argv[0], argv, spec["env"])
    except BaseException as exc:  # noqa: B036 - nothing may escape a forked child
        with contextlib.suppress(BaseException):
            os.write(2, f"sandbox: cannot start {spec['argv'][0]!r}: {exc}\n".encode())
        os._exit(126)


def _descendants(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root_pid]
    while todo:
        for kid in children.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


def _reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _cleanup_without_pidns(uid: int | None) -> None:
    """Kill whatever the target left behind. We are a subreaper, so orphans and daemons are ours."""
    for _ in range(1000):
        if uid is not None:
            pid = os.fork()
            if pid == 0:  # single-threaded launcher: forking is safe here
                try:
                    os.setresuid(uid, uid, uid)
                    os.kill(-1, signal.SIGKILL)  # every process of the sandbox uid, atomically
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)
        victims = _descendants(os.getpid())
        for pid in victims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if not victims:
            break
        time.sleep(0.005)
        _reap_all()
    _reap_all()


def _launcher_main(spec: dict[str, Any]) -> None:
    status_fd = spec["status_fd"]
    os.set_inheritable(status_fd, False)
    libc = _libc()
    status: dict[str, Any] = {}
    try:
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        if spec["mounts"]:
            _setup_mounts(libc, spec["mounts"])
        if spec["lo_up"]:
            with contextlib.suppress(OSError):
                _loopback_up()
    except OSError as exc:
        os.write(status_fd, json.dumps({"setup_error": str(exc)}).encode())
        os._exit(1)
    pid1 = os.getpid() == 1
    if not pid1:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def abort(signum: int, frame: Any) -> None:
        raise _Abort()

    signal.signal(signal.SIGTERM, abort)
    signal.signal(signal.SIGALRM, abort)
    signal.alarm(int(spec["deadline_s"]) + 1)  # our own deadline, in case the framework died
    target = os.fork()
    if target == 0:
        _exec_target(libc, spec)
    try:
        while True:
            pid, wstatus, ru = os.wait4(-1, 0)  # also reaps orphans re-parented to us
            if pid == target:
                status = {
                    "wait_status": wstatus,
                    "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
                    "max_rss_mb": round(ru.ru_maxrss / 1024, 1),
                }
                break
    except _Abort:
        status = {"aborted": True}
    signal.alarm(0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not pid1:  # with a PID namespace, our exit kills everything left
        _cleanup_without_pidns(spec["uid"])
    with contextlib.suppress(OSError):
        os.write(status_fd, json.dumps(status).encode())
    os._exit(0)


def _probe_main(spec: dict[str, Any]) -> None:
    """Check that the namespaces behave as the launcher needs: tmpfs mounts, loopback, uid drop."""
    libc = _libc()
    info: dict[str, Any] = {"pid1": os.getpid() == 1}
    try:
        _check(libc.mount(b"tmpfs", spec["mount_dir"].encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m"), "tmpfs")
        _loopback_up()
        if spec["uid"] is not None:
            pid = os.fork()
            if pid == 0:
                try:
                    os.setgroups([])
                    os.setresgid(spec["uid"], spec["uid"], spec["uid"])
                    os.setresuid(spec["uid"], spec["uid"], spec["uid"])
                    os._exit(0 if os.getuid() == spec["uid"] else 1)
                finally:
                    os._exit(1)
            info["uid_drop"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        info["ok"] = info["pid1"] and info.get("uid_drop", True)
    except OSError as exc:
        info["error"] = str(exc)
    print(json.dumps(info))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--launch":
        _launcher_main(json.loads(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--probe":
        _probe_main(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: sandbox.py --launch SPEC | --probe SPEC (internal)")
