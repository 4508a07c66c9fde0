"""The generated repository on disk: validated relative paths, idempotent writes, nothing outside the root.

File names come from a model, so every one is checked before it touches the disk: no absolute paths,
drive letters, `..`, hidden components (`.git/...`, `.ssh`), NUL or other control characters, and no
writing through a symlink that points out of the workspace. Writes are idempotent (an unchanged file is
not touched) so a node resumed after a crash rewrites the same files harmlessly.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

MAX_PATH_CHARS = 160
MAX_PART_CHARS = 80
_SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-+]*$")
_DRIVE = re.compile(r"^[A-Za-z]:")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


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

    def is_empty(self) -> bool:
        return not self.root.exists() or not any(self.root.iterdir())


def _within(path: Path, base: Path) -> bool:
    return path == base or base in path.parents
