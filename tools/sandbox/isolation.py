"""Which containment works on this machine: each level is probed once per process (the launcher is run with
``--probe`` inside the namespaces it would use), strongest first."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

from .base import SAFE_PATH, Isolation, SandboxError
from .launcher import LAUNCHER

UNSHARE_FLAGS = ["--mount", "--pid", "--net", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc"]

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
    if shutil.which("unshare") is None or (name == "unshare") != root:
        return None
    prefix = unshare_prefix(name)
    with tempfile.TemporaryDirectory(prefix="sopgraph-probe-") as tmp:
        spec = {"mount_dir": tmp, "uid": 65534 if root else None}
        cmd = [*prefix, sys.executable, "-I", "-S", str(LAUNCHER), "--probe", json.dumps(spec)]
        try:
            out = subprocess.run(cmd, capture_output=True, env=launcher_env(), timeout=20, cwd=tmp)
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


def unshare_prefix(name: str) -> list[str]:
    """The command that puts the launcher into fresh namespaces for isolation `name` (unshare or userns)."""
    unshare = shutil.which("unshare") or "unshare"
    return [unshare, *(["--user", "--map-root-user"] if name == "userns" else []), *UNSHARE_FLAGS, "--"]


def launcher_env() -> dict[str, str]:
    return {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
