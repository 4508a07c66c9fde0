"""The launcher: a small program of ours that sets up one run's containment and starts the target in it.

It runs as ``python -I -S launcher.py --launch SPEC`` (as root inside the namespaces when available), so it
uses the standard library only and imports nothing of this package: with ``-I`` its own directory is not on
``sys.path``. It is our code, not the program's; the target only runs after the fork, as the sandbox uid.
The parent (parent.py) starts it and reads its report from the status pipe; isolation.py starts it with
``--probe`` to check what the namespaces allow.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import shutil
import signal
import stat
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LAUNCHER = Path(__file__).resolve()
"""This file, run as a program by the parent and the probe (the same path in editable and wheel installs)."""
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
OUTPUT_MAX_BYTES = 8 * 1024 * 1024  # a result file copied out of a private root (the junit report)


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
            chown_tree(Path(box, sub), uid, uid)
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


def chown_tree(root: Path, uid: int, gid: int, skip: Sequence[str] = ()) -> dict[str, tuple[int, int]]:
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


def descendants(root_pid: int) -> list[int]:
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
        victims = descendants(os.getpid())
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
        sys.exit("usage: launcher.py --launch SPEC | --probe SPEC (internal)")
