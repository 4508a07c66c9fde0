"""Run untrusted generated code (QA loop, HumanEval/MBPP) in a contained child process.

Nothing generated ever runs in the framework's process. Each run goes through a small *launcher* -- this
very file executed as ``python -I -S sandbox.py --launch SPEC`` (stdlib only, so it needs no site-packages)
-- which sets up the containment, forks the target with dropped privileges and limits, reaps it and reports
its wait status and resource usage on a private pipe.

Isolation levels, strongest first; :func:`detect_isolation` probes once per process and picks the best:

``unshare`` (running as root, util-linux ``unshare`` works)
    Fresh mount, PID, network, IPC and UTS namespaces; the launcher is PID 1, so when the target exits or
    the run is killed the kernel kills every process left in the namespace (daemons included). Only a
    private loopback exists, so nothing outside is reachable. The target runs as a per-run uid (see below).

    A private root: the launcher builds a tmpfs root and pivots into it. It holds ``/usr``, ``/etc`` and the
    lib/bin directories, the interpreter prefix and site-packages, all read-only; a minimal ``/dev``; a fresh
    ``/proc``; private ``/tmp``, ``/var/tmp`` and ``/dev/shm``; and the run directory at ``/sandbox``
    (workspace ``/sandbox/ws``, HOME, TMPDIR), copied into a tmpfs. No ``/run``, ``/var``, ``/home``, the
    rest of ``/root``, nor the checkout: no host Unix socket (PostgreSQL, MariaDB, ...), no project database,
    no source tree. Every writable place is a tmpfs with a size and an inode cap; after the run the launcher
    copies back only the named result files (the junit report), never following links the program planted.
    Paths the program (and so a test report, and so a prompt) sees are the same on every run.

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

Memory: ``memory_mb`` bounds each process's address space and the resident memory of the whole run: a
memory cgroup per run where we may create one (root; cgroup v1 memory controller, or v2 with memory
delegated), else the parent sums the run's resident memory five times a second and kills it when over.

Run directories go under ``SOPGRAPH_SANDBOX_TMP`` (default: ``sopgraph-sbx-<uid>`` in the system temp dir),
each flock-ed while its run lives; a run starting sweeps the directories of runs whose framework died. The
launcher holds a lifeline pipe whose only write end is the framework's: when the framework dies, even by
SIGKILL, the launcher gets SIGIO at once and takes the whole run down.

Known limits: without a mount namespace (``none``) the program sees the host filesystem as its uid may, and
its disk use is bounded per file (RLIMIT_FSIZE), not in total; a lent workspace (``copy=False``) is the
host directory itself (not size-capped) and may come back with symlinks to anywhere, so do not follow them
as root; ``limit_hit`` for process limits is inferred from the exit signal, the process count at timeout and
well-known error texts, so it is a best guess; a test report is only as trustworthy as the code under test,
which runs inside pytest and could forge its result.
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
# World-writable places the program gets as private, size- and inode-capped tmpfs.
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
# With a private root the run directory appears here, so no random host path reaches the program (or a prompt).
INSIDE = "/sandbox"
# What a private root shows of the host, read-only, besides the interpreter: no /run, /var, /home, /root, /srv,
# /mnt or checkout, so no Unix socket of a host service, no project database, no source tree.
SYSTEM_RO = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
OUTPUT_MAX_BYTES = 8 * 1024 * 1024  # a result file copied out of a private root (the junit report)
JUNIT = "run/junit.xml"  # relative to the run directory
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
    memory_mb: int = 1024  # address space per process (RLIMIT_AS) and resident memory of the whole run
    nproc: int = 64  # processes + threads of the sandbox uid
    file_size_mb: int = 64  # largest file the child may write (RLIMIT_FSIZE)
    output_bytes: int = 64 * 1024  # kept per stream: first half + last half
    open_files: int = 256
    tmp_mb: int = 128  # size of each private tmpfs (/tmp, /dev/shm, ...)
    disk_mb: int = 256  # with a private root: the run's writable area (workspace copy, HOME, TMPDIR)
    max_files: int = 20_000  # with a private root: inodes of each writable tmpfs


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


def _private_dir(name: str, mode: int = 0o700, path: Path | None = None) -> Path:
    """A directory only we own; refuse one planted by someone else in a shared temp dir."""
    path = path or Path(tempfile.gettempdir()) / f"{name}-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=mode)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise SandboxError(f"{path} is not a directory owned by us")
    os.chmod(path, mode)
    return path


def _runs_root() -> Path:
    """Where run directories live: $SOPGRAPH_SANDBOX_TMP, else a directory of ours in the system temp dir.
    0711: without a mount namespace the sandbox uid must traverse it to reach its workspace."""
    configured = os.environ.get("SOPGRAPH_SANDBOX_TMP")
    return _private_dir("sopgraph-sbx", 0o711, Path(configured) if configured else None)


@contextlib.contextmanager
def _run_dir() -> Iterator[Path]:
    """A fresh run directory, flock-ed for as long as its run lives; stale ones are swept first."""
    root = _runs_root()
    _sweep_stale_runs(root)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.chmod(run_dir, 0o711)
        yield run_dir
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        os.close(fd)


def _sweep_stale_runs(root: Path, min_age_s: float = 10.0) -> None:
    """Delete run directories whose owner died (a killed framework cannot clean up): nobody holds their lock.
    The age check leaves alone a directory another process has just made and not yet locked."""
    now = time.time()
    for entry in os.scandir(root):
        if not entry.name.startswith("run-"):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(entry.path, ignore_errors=True)
        except BlockingIOError:
            pass
        finally:
            os.close(fd)


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
# Memory of the whole run


@dataclass(frozen=True)
class _Cgroup:
    """A memory cgroup of one run: the kernel bounds the resident memory of the whole process tree."""

    path: Path
    version: int  # 1 or 2

    @property
    def procs(self) -> str:
        return str(self.path / "cgroup.procs")

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self, timeout_s: float = 5.0) -> None:
        """Kill what is left in it and delete it; a run never leaves a process behind in its cgroup."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                pids = [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                pids = []
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                self.path.rmdir()
                return
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)


_cgroup_base_cache: list[tuple[int, Path] | None] = []
_cgroup_seq = iter(range(1, 1 << 62))


def _cgroup_base() -> tuple[int, Path] | None:
    """Our own memory cgroup, if we may create children in it (root, v1 memory controller or v2 with memory
    delegated to children); None means whole-tree accounting by the parent instead."""
    if _cgroup_base_cache:
        return _cgroup_base_cache[0]
    found: tuple[int, Path] | None = None
    if os.geteuid() == 0 and os.environ.get("SOPGRAPH_SANDBOX_CGROUP", "1") != "0":
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                _, controllers, rel = line.split(":", 2)
                if "memory" in controllers.split(","):
                    base = Path("/sys/fs/cgroup/memory" + rel)
                    if (base / "memory.limit_in_bytes").is_file() and os.access(base, os.W_OK):
                        found = (1, base)
                        break
                elif controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").is_file():
                    base = Path("/sys/fs/cgroup" + rel)
                    if "memory" in (base / "cgroup.subtree_control").read_text().split() and os.access(base, os.W_OK):
                        found = (2, base)
                        break
    if found:
        for stale in found[1].glob("sopgraph-*"):  # left by a framework that was killed
            with contextlib.suppress(OSError):
                stale.rmdir()
    _cgroup_base_cache.append(found)
    return found


@contextlib.contextmanager
def _memory_cgroup(limit_mb: int) -> Iterator[_Cgroup | None]:
    base = _cgroup_base()
    if base is None:
        yield None
        return
    version, parent = base
    group = _Cgroup(parent / f"sopgraph-{os.getpid()}-{next(_cgroup_seq)}", version)
    try:
        group.path.mkdir()
        limit = str(limit_mb * 1024 * 1024)
        if version == 1:
            (group.path / "memory.limit_in_bytes").write_text(limit)
        else:
            (group.path / "memory.max").write_text(limit)
            with contextlib.suppress(OSError):
                (group.path / "memory.swap.max").write_text("0")
    except OSError as exc:
        with contextlib.suppress(OSError):
            group.path.rmdir()
        raise SandboxError(f"cannot set up the run's memory cgroup: {exc}") from exc
    try:
        yield group
    finally:
        group.remove()


def _tree_rss_bytes(uid: int | None, root_pid: int) -> int:
    """Resident memory of everything a run started (without a cgroup): the sandbox uid's processes, else
    the launcher's descendants. Shared pages count once per process, so this errs on the safe side."""
    pids = _pids_of_uid(uid) if uid is not None else _descendants(root_pid)
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * page
    return total


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


@dataclass(frozen=True)
class _RunPaths:
    """A run's directories on the host, and where the program sees them (the same paths without a private
    root; under INSIDE with one)."""

    run: Path
    ws: Path
    inside_run: str
    inside_ws: str

    def inside(self, host: Path | str) -> str:
        host = str(host)
        for outer, inner in ((str(self.ws), self.inside_ws), (str(self.run), self.inside_run)):
            if _under(host, outer):
                return inner + host[len(outer) :]
        return host


def _plan_root(
    paths: _RunPaths, lent: bool, ro_paths: Sequence[str], limits: SandboxLimits, outputs: Sequence[str]
) -> dict[str, Any]:
    """What the launcher builds as the program's root: system directories and the interpreter read-only,
    private capped tmpfs for everything writable, the run directory copied in at INSIDE."""
    wanted = sorted(
        {*SYSTEM_RO, *_interpreter_paths(), *(os.path.realpath(p) for p in ro_paths)}, key=lambda p: p.count("/")
    )
    ro: list[str] = []
    for path in wanted:
        if not any(_under(path, kept) for kept in ro):
            ro.append(path)
    new_root = paths.run / "root"
    new_root.mkdir(mode=0o700)
    return {
        "new_root": str(new_root),
        "host_run": str(paths.run),
        "inside": INSIDE,
        "ro": ro,
        "lent_ws": str(paths.ws) if lent else None,
        "tmp_dirs": list(PRIVATE_TMP_DIRS),
        "tmp_mb": limits.tmp_mb,
        "disk_mb": limits.disk_mb,
        "max_files": limits.max_files,
        "outputs": list(outputs),
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
    setup: Callable[[_RunPaths], list[str]] | None = None,
    collect: Callable[[_RunPaths], None] | None = None,
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
        uid = stack.enter_context(_uid_slot()) if iso.uid_drop else None
        run_dir = stack.enter_context(_run_dir())
        ws = _prepare_workspace(run_dir, workspace, copy)
        lent = ws != run_dir / "ws"
        for sub in ("home", "tmp", "run"):
            (run_dir / sub).mkdir(mode=0o700)
        if private_root:
            paths = _RunPaths(run_dir, ws, INSIDE, INSIDE + "/ws")
        else:
            paths = _RunPaths(run_dir, ws, str(run_dir), str(ws))
        final_argv = list(setup(paths) if setup else argv)
        if uid is not None:
            if not private_root:  # a private root hands the launcher's tmpfs copies to the uid instead
                for sub in ("home", "tmp", "run"):
                    os.chown(run_dir / sub, uid, uid)
            if lent or not private_root:
                owners = _chown_tree(ws, uid, uid, COPY_IGNORE if lent else ())
                if lent:
                    stack.callback(_restore_tree, ws, owners, COPY_IGNORE)
            if not private_root:
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
        cgroup = stack.enter_context(_memory_cgroup(limits.memory_mb))
        spec: dict[str, Any] = {
            "argv": final_argv,
            "env": _child_env(paths.inside(run_dir / "home"), paths.inside(run_dir / "tmp"), env),
            "cwd": paths.inside_ws,
            "uid": uid,
            "rlimits": _rlimits(limits, nproc_base),
            "root": _plan_root(paths, lent, ro_paths, limits, outputs) if private_root else None,
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
    cgroup: _Cgroup | None,
) -> SandboxResult:
    status_r, status_w = os.pipe()
    # The launcher holds the read end of a lifeline whose only write end is ours: if we die (kill -9), it sees
    # end-of-file at once and takes the run down with it, instead of leaving a hanging test alive.
    life_r, life_w = os.pipe()
    spec["status_fd"] = status_w
    spec["lifeline_fd"] = life_r
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
            pass_fds=(status_w, life_r),
            start_new_session=True,
            env=_launcher_env(),
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
                if _tree_rss_bytes(uid, proc.pid) > limits.memory_mb * 1024 * 1024:
                    memory_killed = True
                    _terminate(proc, iso)
                    break
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
        os.close(life_w)
    duration = time.monotonic() - start
    proc.wait()
    if uid is not None:
        _kill_uid(uid)
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
        else _classify(exit_code, timed_out, cpu, procs_at_timeout, stderr_text, limits),
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

    def setup(paths: _RunPaths) -> list[str]:
        if path is not None:
            src = (path if path.is_absolute() else (ws or Path.cwd()) / path).resolve()
            if ws is not None and _under(str(src), str(ws.resolve())):
                script = paths.ws / src.relative_to(ws.resolve())
            else:
                script = paths.run / "run" / src.name
                shutil.copyfile(src, script)
        else:
            script = paths.run / "run" / "main.py"
            script.write_text(code, encoding="utf-8")
        return [sys.executable, paths.inside(script), *args]

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

    def setup(paths: _RunPaths) -> list[str]:
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
            f"--junitxml={paths.inside(paths.run / JUNIT)}",
            "-o",
            "junit_family=xunit1",
            "-o",
            "junit_logging=no",
            *pytest_args,
        ]

    def collect(paths: _RunPaths) -> None:
        report["xml"] = _read_child_file(paths.run / JUNIT, OUTPUT_MAX_BYTES)

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
        outputs=[JUNIT],
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
    if not data or len(data) > OUTPUT_MAX_BYTES or b"<!DOCTYPE" in data or b"<!ENTITY" in data:
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


MS_NOEXEC, MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MNT_DETACH = 8, 1024, 2048, 1 << 21, 2
ST_RELATIME = 4096
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}


def _mount_tmpfs(libc: Any, path: str, mode: int, size_mb: int, inodes: int) -> None:
    opts = f"mode={mode:o},size={size_mb}m,nr_inodes={inodes}".encode()
    _check(libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts), f"tmpfs on {path}")


def _bind(libc: Any, src: str, dst: str, readonly: bool) -> None:
    if os.path.isdir(src):
        os.makedirs(dst, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
        open(dst, "a").close()
    _check(libc.mount(src.encode(), dst.encode(), None, MS_BIND | MS_REC, None), f"bind {src}")
    if readonly:
        # A user namespace may only remount with the flags it inherited locked still set: keep them.
        have = os.statvfs(dst).f_flag
        keep = (have & (MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)) | (MS_RELATIME if have & ST_RELATIME else 0)
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | keep
        _check(libc.mount(None, dst.encode(), None, flags, None), f"read-only {src}")


def _build_root(libc: Any, plan: Mapping[str, Any], uid: int | None) -> int:
    """Give the program a root of its own and pivot into it. Returns a descriptor of the host run directory,
    through which the launcher copies results back afterwards."""
    host_run_fd = os.open(plan["host_run"], os.O_RDONLY | os.O_DIRECTORY)
    new = plan["new_root"]
    _mount_tmpfs(libc, new, 0o755, 8, 4096)
    os.makedirs(new + "/dev", mode=0o755)
    _mount_tmpfs(libc, new + "/dev", 0o755, 1, 64)
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            _bind(libc, "/dev/" + name, f"{new}/dev/{name}", readonly=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        os.symlink(target, f"{new}/dev/{name}")
    os.symlink("/proc/self/fd/2", f"{new}/dev/stderr")
    for d in plan["tmp_dirs"]:
        os.makedirs(new + d, mode=0o755, exist_ok=True)
        _mount_tmpfs(libc, new + d, 0o1777, plan["tmp_mb"], plan["max_files"])
    box = new + plan["inside"]
    os.makedirs(box, mode=0o755)
    _mount_tmpfs(libc, box, 0o755, plan["disk_mb"], plan["max_files"])
    top = plan["host_run"]
    shutil.copytree(
        top, box, symlinks=True, dirs_exist_ok=True, ignore=lambda d, _: ["root", "stdin"] if d == top else []
    )
    if plan["lent_ws"]:
        _bind(libc, plan["lent_ws"], box + "/ws", readonly=False)
    if uid is not None:
        for sub in ("home", "tmp", "run", *(() if plan["lent_ws"] else ("ws",))):
            _chown_tree(Path(box, sub), uid, uid)
    for path in plan["ro"]:
        if os.path.islink(path) and os.path.dirname(path) == "/":
            os.symlink(os.readlink(path), new + path)  # /bin -> usr/bin and friends
        elif os.path.exists(path):
            _bind(libc, path, new + path, readonly=True)
    os.makedirs(new + "/proc", mode=0o555)
    _check(libc.mount(b"proc", f"{new}/proc".encode(), b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "proc")
    _pivot(libc, new)
    libc.mount(None, b"/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None)  # best effort
    return host_run_fd


def _pivot(libc: Any, new_root: str) -> None:
    """pivot_root(".", ".") then detach the old root stacked underneath: the host tree is gone for good."""
    import platform

    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(0, f"pivot_root: unknown system call number on {platform.machine()}")
    os.chdir(new_root)
    _check(libc.syscall(number, b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "detach the host root")
    os.chdir("/")


def _read_inside(top: str, rel: str, max_bytes: int) -> bytes | None:
    """Read a file the program wrote, never following a link it may have planted on the way."""
    parts = rel.split("/")
    try:
        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        with os.fdopen(leaf, "rb") as f:
            return f.read(max_bytes + 1) if stat.S_ISREG(os.fstat(leaf).st_mode) else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _copy_out(top: str, outputs: Sequence[str], host_run_fd: int) -> None:
    for rel in outputs:
        data = _read_inside(top, rel, OUTPUT_MAX_BYTES)
        if data is None:
            continue
        with contextlib.suppress(OSError):
            fd = os.open(rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=host_run_fd)
            with os.fdopen(fd, "wb") as f:
                f.write(data)


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


def _watch_lifeline(fd: int) -> None:
    """SIGIO when the framework's end of the lifeline closes; if it already has, abort now."""
    import select

    os.set_inheritable(fd, False)
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC | os.O_NONBLOCK)
    if select.select([fd], [], [], 0)[0]:
        raise _Abort()


def _launcher_main(spec: dict[str, Any]) -> None:
    status_fd = spec["status_fd"]
    os.set_inheritable(status_fd, False)
    libc = _libc()
    status: dict[str, Any] = {}
    host_run_fd: int | None = None
    pid1 = os.getpid() == 1

    def abort(signum: int, frame: Any) -> None:
        raise _Abort()

    for sig in (signal.SIGTERM, signal.SIGALRM, signal.SIGIO):
        signal.signal(sig, abort)
    try:
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        _watch_lifeline(spec["lifeline_fd"])
        if spec["cgroup_procs"]:
            with open(spec["cgroup_procs"], "w") as f:
                f.write(str(os.getpid()))  # read in our PID namespace by the kernel; children inherit it
        if spec["root"]:
            host_run_fd = _build_root(libc, spec["root"], spec["uid"])
        if spec["lo_up"]:
            with contextlib.suppress(OSError):
                _loopback_up()
    except _Abort:
        os._exit(1)
    except OSError as exc:
        os.write(status_fd, json.dumps({"setup_error": str(exc)}).encode())
        os._exit(1)
    if not pid1:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.alarm(int(spec["deadline_s"]) + 1)  # our own deadline, in case the framework hangs
    try:
        target = os.fork()
        if target == 0:
            _exec_target(libc, spec)
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
    for sig in (signal.SIGTERM, signal.SIGIO):
        signal.signal(sig, signal.SIG_IGN)
    aborted = bool(status.get("aborted"))  # the framework is gone or gave up: no results to hand over
    if not pid1:
        _cleanup_without_pidns(spec["uid"])
    elif not aborted:  # (when aborting, our exit as PID 1 kills everything left)
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)  # everything else in the namespace, before reading what it wrote
        with contextlib.suppress(ChildProcessError):
            while True:
                os.waitpid(-1, 0)
    if host_run_fd is not None and not aborted:
        _copy_out(spec["root"]["inside"], spec["root"]["outputs"], host_run_fd)
    with contextlib.suppress(OSError):
        os.write(status_fd, json.dumps(status).encode())
    os._exit(0)


def _probe_main(spec: dict[str, Any]) -> None:
    """Check that the namespaces behave as the launcher needs: tmpfs mounts, loopback, uid drop, pivot_root."""
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
        _pivot(libc, spec["mount_dir"])  # a private root is what keeps host sockets and files out of reach
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
