"""The pool of per-run uids: one uid per live run, held under an flock across threads and processes, every
process of it killed before the slot is released (see the package docstring for why a uid per run)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .base import SandboxError
from .files import private_dir

UID_POOL_SIZE = 256
# Inside 1879048192-2147352575, which systemd's uid map leaves unused (nspawn and subuid ranges sit lower).
DEFAULT_UID_BASE = 1_900_000_000


def uid_base() -> int:
    return int(os.environ.get("SOPGRAPH_SANDBOX_UID_BASE", DEFAULT_UID_BASE))


@contextlib.contextmanager
def uid_slot(timeout_s: float = 600.0) -> Iterator[int]:
    """Hold one pool uid exclusively (across threads and processes) for the duration of a run."""
    lock_dir = private_dir("sopgraph-sandbox-uids")
    base = uid_base()
    deadline = time.monotonic() + timeout_s
    while True:
        for uid in range(base, base + UID_POOL_SIZE):
            fd = os.open(lock_dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            if _uid_in_passwd(uid) or _uid_delegated(uid) or pids_of_uid(uid):
                # A real account or processes left from a crashed run: not ours to use (or kill) now.
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                continue
            try:
                yield uid
            finally:
                kill_uid(uid)  # if this raises, the lock stays held: that uid must not be reused
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


def pids_of_uid(uid: int) -> list[int]:
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


def kill_uid(uid: int, timeout_s: float = 10.0) -> None:
    """Kill every process of `uid`; kill(-1) from that uid is atomic against forking."""
    deadline = time.monotonic() + timeout_s
    while pids_of_uid(uid):
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
