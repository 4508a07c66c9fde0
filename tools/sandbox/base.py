"""What every part of the sandbox shares: the limits a caller sets, the isolation levels, a run's result,
the error for a sandbox that cannot be set up, and the fixed places and names of a run."""

from __future__ import annotations

from dataclasses import dataclass

# With a private root the run directory appears here, so no random host path reaches the program (or a prompt).
INSIDE = "/sandbox"
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
