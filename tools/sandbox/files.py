"""A run's places on the host: run directories (flock-ed while their run lives, swept when their framework
died), the workspace copy or lent directory, what a private root shows, and safe reads of what the child
wrote."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import COPY_IGNORE, INSIDE, SandboxError, SandboxLimits, sweep_unlocked

# World-writable places the program gets as private, size- and inode-capped tmpfs.
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
# What a private root shows of the host, read-only, besides the interpreter: no /run, /var, /home, /root, /srv,
# /mnt or checkout, so no Unix socket of a host service, no project database, no source tree.
SYSTEM_RO = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


def private_dir(name: str, mode: int = 0o700, path: Path | None = None) -> Path:
    """A directory only we own; refuse one planted by someone else in a shared temp dir."""
    path = path or Path(tempfile.gettempdir()) / f"{name}-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=mode)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise SandboxError(f"{path} is not a directory owned by us")
    os.chmod(path, mode)
    return path


def runs_root() -> Path:
    """Where run directories live: $SOPGRAPH_SANDBOX_TMP, else a directory of ours in the system temp dir.
    0711: without a mount namespace the sandbox uid must traverse it to reach its workspace."""
    configured = os.environ.get("SOPGRAPH_SANDBOX_TMP")
    return private_dir("sopgraph-sbx", 0o711, Path(configured) if configured else None)


@contextlib.contextmanager
def new_run_dir() -> Iterator[Path]:
    """A fresh run directory, flock-ed for as long as its run lives; stale ones are swept first."""
    root = runs_root()
    sweep_stale_runs(root)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.chmod(run_dir, 0o711)
        yield run_dir
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        os.close(fd)


def sweep_stale_runs(root: Path, min_age_s: float = 10.0) -> None:
    """Delete run directories whose owner died (a killed framework cannot clean up): nobody holds their lock.
    The age check leaves alone a directory another process has just made and not yet locked."""
    sweep_unlocked(root, "run-", lambda path: shutil.rmtree(path, ignore_errors=True), min_age_s, lambda name: False)


def _can_search(st: os.stat_result, uid: int, gid: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def first_blocked(path: str, uid: int) -> str | None:
    """The outermost ancestor of `path` that `uid` cannot traverse."""
    cur = "/"
    for part in Path(path).parts[1:]:
        if not _can_search(os.stat(cur), uid, uid):
            return cur
        cur = os.path.join(cur, part)
    return None


def under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def interpreter_paths() -> list[str]:
    import site

    paths = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable)), *site.getsitepackages()}
    return sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)})


def restore_tree(root: Path, owners: Mapping[str, tuple[int, int]], skip: Sequence[str]) -> None:
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


def read_child_file(path: Path, max_bytes: int) -> bytes | None:
    """Read a file the child wrote without following its symlinks or blocking on its FIFOs."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read(max_bytes + 1)


@dataclass(frozen=True)
class RunPaths:
    """A run's directories on the host, and where the program sees them (the same paths without a private
    root; under INSIDE with one)."""

    run: Path
    ws: Path
    inside_run: str
    inside_ws: str

    def inside(self, host: Path | str) -> str:
        host = str(host)
        for outer, inner in ((str(self.ws), self.inside_ws), (str(self.run), self.inside_run)):
            if under(host, outer):
                return inner + host[len(outer) :]
        return host


def plan_root(
    paths: RunPaths, lent: bool, ro_paths: Sequence[str], limits: SandboxLimits, outputs: Sequence[str]
) -> dict[str, Any]:
    """What the launcher builds as the program's root: system directories and the interpreter read-only,
    private capped tmpfs for everything writable, the run directory copied in at INSIDE."""
    wanted = sorted(
        {*SYSTEM_RO, *interpreter_paths(), *(os.path.realpath(p) for p in ro_paths)}, key=lambda p: p.count("/")
    )
    ro: list[str] = []
    for path in wanted:
        if not any(under(path, kept) for kept in ro):
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


def prepare_workspace(run_dir: Path, workspace: Path | None, copy: bool) -> Path:
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
