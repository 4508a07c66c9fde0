"""Memory of the whole run: a memory cgroup per run where we may create one, else the parent's own sum of
the run's resident memory (see ``tree_rss_bytes``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .base import SandboxError, sweep_unlocked
from .launcher import descendants
from .uids import pids_of_uid


@dataclass(frozen=True)
class Cgroup:
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


def cgroup_base() -> tuple[int, Path] | None:
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
    _cgroup_base_cache.append(found)
    return found


PREFIX = "sopgraph-"
"""A run's cgroup is `sopgraph-<pid of the framework that made it>-<n>`, flock-ed by it for as long as it lives."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists
        return True
    return True


def sweep_stale_cgroups(parent: Path, min_age_s: float = 10.0) -> None:
    """Delete run cgroups whose framework died (a killed framework cannot clean up), as run directories are
    swept: only a cgroup whose creating pid is gone *and* whose lock nobody holds. Another live process's
    cgroup is never touched, even in the moment between its mkdir and its flock (its pid is alive; for a
    process of another pid namespace the age check covers that moment)."""

    def alive(name: str) -> bool:
        pid = name[len(PREFIX) :].split("-", 1)[0]
        return pid.isdigit() and _pid_alive(int(pid))

    sweep_unlocked(parent, PREFIX, os.rmdir, min_age_s, alive)  # rmdir fails while processes are left in it


@contextlib.contextmanager
def memory_cgroup(limit_mb: int) -> Iterator[Cgroup | None]:
    base = cgroup_base()
    if base is None:
        yield None
        return
    version, parent = base
    sweep_stale_cgroups(parent)
    group = Cgroup(parent / f"{PREFIX}{os.getpid()}-{next(_cgroup_seq)}", version)
    lock = -1
    try:
        group.path.mkdir()
        lock = os.open(group.path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(lock, fcntl.LOCK_EX)
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
        if lock >= 0:
            os.close(lock)
        raise SandboxError(f"cannot set up the run's memory cgroup: {exc}") from exc
    try:
        yield group
    finally:
        try:
            group.remove()
        finally:
            os.close(lock)


def tree_rss_bytes(uid: int | None, root_pid: int) -> int:
    """Resident memory of everything a run started (without a cgroup): the sandbox uid's processes, else
    the launcher's descendants. Shared pages count once per process, so this errs on the safe side."""
    pids = pids_of_uid(uid) if uid is not None else descendants(root_pid)
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * page
    return total
