"""The generated repository on disk: validated relative paths, idempotent writes, nothing outside the root.

File names come from a model, so every one is checked before it touches the disk: no absolute paths,
drive letters, `..`, hidden components (`.git/...`, `.ssh`), NUL or other control characters, and no
writing through a symlink that points out of the workspace. Writes are idempotent (an unchanged file is
not touched) so a node resumed after a crash rewrites the same files harmlessly.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MAX_PATH_CHARS = 160
MAX_PART_CHARS = 80
_SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-+]*$")
_DRIVE = re.compile(r"^[A-Za-z]:")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


LEDGER = ".sopgraph/written.json"
"""What the last sync wrote (path -> sha256): how a file of ours is told from a file the user made or edited."""
BACKUP = ".sopgraph/backup"


class WorkspaceError(ValueError):
    """A path or write the workspace refuses; the message says why, in one line."""


def clean_path(raw: object) -> str:
    """Undo what models typically wrap around a file name (quotes, backticks, `./`, list bullets)."""
    text = str(raw if raw is not None else "").strip()
    text = text.strip("`'\" \t")
    text = re.sub(r"^[-*•]\s+", "", text)
    while text.startswith("./"):
        text = text[2:]
    return text.strip()


def validate_path(path: str) -> str:
    """The path as a clean relative POSIX path, or WorkspaceError saying what is wrong with it."""
    if not isinstance(path, str) or not path:
        raise WorkspaceError("empty file name")
    shown = repr(path[:60])
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise WorkspaceError(f"{shown}: control characters (NUL, newline...) are not allowed in a file name")
    if len(path) > MAX_PATH_CHARS:
        raise WorkspaceError(f"{shown}: longer than {MAX_PATH_CHARS} characters")
    if "\\" in path:
        raise WorkspaceError(f"{shown}: use '/' as the separator, not a backslash")
    if _DRIVE.match(path):
        raise WorkspaceError(f"{shown}: a drive letter makes it absolute; give a path relative to the project")
    if path.startswith(("/", "~")):
        raise WorkspaceError(f"{shown}: must be relative to the project root, not absolute")
    parts = path.split("/")
    for part in parts:
        if part == "":
            raise WorkspaceError(f"{shown}: empty path component (double or trailing '/')")
        if part in (".", ".."):
            raise WorkspaceError(f"{shown}: '.' and '..' are not allowed in a path")
        if part.startswith("."):
            raise WorkspaceError(f"{shown}: hidden files and folders (starting with '.') are not allowed")
        if len(part) > MAX_PART_CHARS:
            raise WorkspaceError(f"{shown}: a path component is longer than {MAX_PART_CHARS} characters")
        if not _SAFE_PART.match(part) or part.endswith("."):
            raise WorkspaceError(f"{shown}: only letters, digits, '_', '-', '+' and '.' are allowed in a name")
        if part.split(".")[0].lower() in _WINDOWS_RESERVED:
            raise WorkspaceError(f"{shown}: {part!r} is a reserved device name")
    return str(PurePosixPath(*parts))


def module_name(path: str) -> str:
    """How a test imports a .py file: `pkg/mod.py` -> `pkg.mod`."""
    return str(PurePosixPath(path).with_suffix("")).replace("/", ".")


class Workspace:
    """A directory the generated project lives in."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()

    def ensure(self) -> Workspace:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def target(self, path: str) -> Path:
        """The absolute file for a validated relative path, refusing symlinks on the way."""
        rel = validate_path(path)
        base = self.root.resolve()
        current = self.root
        for part in PurePosixPath(rel).parts:
            current = current / part
            if current.is_symlink():
                raise WorkspaceError(f"{rel!r}: {current.relative_to(self.root)} is a symlink; refusing to follow it")
        if not _within(current.resolve(), base):
            raise WorkspaceError(f"{rel!r}: resolves outside the workspace")
        return current

    def write(self, path: str, content: str) -> bool:
        """Write (atomically) unless the file already holds exactly `content`; True if it changed."""
        target = self.target(path)
        if target.is_file() and target.read_text(encoding="utf-8", errors="replace") == content:
            return False
        if target.exists() and not target.is_file():
            raise WorkspaceError(f"{path!r}: exists and is not a regular file")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".sopgraph-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(content)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def read(self, path: str, max_bytes: int = 256 * 1024) -> str | None:
        """A file's text, or None if it is missing, not a regular file, or larger than `max_bytes`."""
        try:
            target = self.target(path)
        except WorkspaceError:
            return None
        if not target.is_file() or target.stat().st_size > max_bytes:
            return None
        return target.read_text(encoding="utf-8", errors="replace")

    def files(self, under: str = "") -> Iterator[str]:
        """Relative paths of the regular, non-hidden files (below `under`), sorted."""
        start = self.target(under) if under else self.root
        if not start.is_dir():
            return
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            for name in filenames:
                full = Path(dirpath) / name
                if name.startswith(".") or full.is_symlink():
                    continue
                found.append(full.relative_to(self.root).as_posix())
        yield from sorted(found)

    def sync(self, files: Mapping[str, str]) -> SyncReport:
        """Make the workspace hold exactly `files` (plus hidden files): write what differs, remove the rest.

        A file the last sync did not write as it is now (the user made or edited it) is first copied to
        `.sopgraph/backup/<time>/`, so no user's work is silently lost.
        """
        wanted = {validate_path(p): c for p, c in files.items()}
        self.ensure()
        ledger = self._ledger()
        report = SyncReport()
        stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{time.time_ns() % 1_000_000:06d}"
        for path in [p for p in self.files() if p not in wanted]:
            if ledger.get(path) != _digest_file(self.root / path):
                report.backed_up.append(self._back_up(path, stamp))
            (self.root / path).unlink()
            report.removed.append(path)
        for path, content in wanted.items():
            target = self.root / path
            current = _digest_file(target) if target.is_file() else None
            if current is not None and current != _digest(content) and ledger.get(path) != current:
                report.backed_up.append(self._back_up(path, stamp))
            if self.write(path, content):
                report.written.append(path)
        self._prune_empty_dirs()
        self._save_ledger({p: _digest(c) for p, c in wanted.items()})
        return report

    def _ledger(self) -> dict[str, str]:
        try:
            data = json.loads((self.root / LEDGER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save_ledger(self, ledger: dict[str, str]) -> None:
        path = self.root / LEDGER
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(ledger, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def _back_up(self, path: str, stamp: str) -> str:
        target = self.root / BACKUP / stamp / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.root / path, target)
        return target.relative_to(self.root).as_posix()

    def _prune_empty_dirs(self) -> None:
        for dirpath, _, _ in sorted(os.walk(self.root), key=lambda item: -len(item[0])):
            folder = Path(dirpath)
            rel = folder.relative_to(self.root).as_posix()
            if folder != self.root and not rel.startswith(".") and "/." not in rel and not any(folder.iterdir()):
                folder.rmdir()

    def is_empty(self) -> bool:
        return not self.root.exists() or not any(self.root.iterdir())


@dataclass
class SyncReport:
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    backed_up: list[str] = field(default_factory=list)
    """Where the user's own files or edits were copied before being replaced or removed."""


def _digest(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _digest_file(path: Path) -> str | None:
    try:
        return _digest(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def _within(path: Path, base: Path) -> bool:
    return path == base or base in path.parents
