"""What every part of the sandbox shares: the limits a caller sets, the isolation levels, a run's result,
the error for a sandbox that cannot be set up, and the fixed places and names of a run."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# With a private root the run directory appears here, so no random host path reaches the program (or a prompt).
INSIDE = "/sandbox"
Limit = Literal["wall", "cpu", "memory", "nproc", "file_size"]
"""A sandbox limit a run can hit."""
WALL: Limit = "wall"

COPY_IGNORE = (".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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

    @classmethod
    def for_tests(cls, wall_s: float) -> SandboxLimits:
        """A test suite's run (QA's, a repair candidate's, an eval's scoring): CPU time to match the wall clock."""
        return cls(wall_s=wall_s, cpu_s=max(5, int(wall_s)))

    @classmethod
    def for_start(cls, wall_s: float) -> SandboxLimits:
        """A program started to see what it does: the CPU limit sits above the wall clock, so a busy program
        counts as still running, not as killed."""
        return cls(wall_s=wall_s, cpu_s=int(wall_s) + 5)


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
    limit_hit: Limit | None
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

    @property
    def stopped_by(self) -> Limit | None:
        """The limit that ended the run: the one it hit, else the wall clock when it timed out."""
        return self.limit_hit or (WALL if self.timed_out else None)


def sweep_unlocked(
    root: Path, prefix: str, remove: Callable[[str], None], min_age_s: float, keep: Callable[[str], bool]
) -> None:
    """Remove the entries of `root` named `prefix...` that a dead owner left: nobody holds their flock (a
    live owner holds it for the entry's life), they are older than `min_age_s` (an owner may not have locked a
    fresh one yet) and `keep(name)` does not spare them. Run directories and run cgroups are swept this way."""
    now = time.time()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix) or keep(entry.name):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            remove(entry.path)
        except OSError:  # BlockingIOError: its owner lives; or the removal failed: a later sweep retries
            pass
        finally:
            os.close(fd)
