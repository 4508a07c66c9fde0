"""The sandbox must contain hostile programs, say which limit fired, and leave the host and us unharmed."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import select
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sopgraph.tools import sandbox as sb
from sopgraph.tools.sandbox import SandboxLimits, capture, files, memory, parent, uids
from sopgraph.tools.sandbox.base import INSIDE
from sopgraph.tools.sandbox.launcher import LAUNCHER

BEST = sb.detect_isolation()
FALLBACK = sb.detect_isolation("none")
IS_ROOT = os.geteuid() == 0

needs_netns = pytest.mark.skipif(
    not BEST.network_isolated, reason=f"no network isolation on this machine (isolation={BEST.name})"
)
needs_uid_fallback = pytest.mark.skipif(
    BEST.name == "none" or not FALLBACK.uid_drop,
    reason="the forced no-namespace fallback needs root (uid drop) and a stronger default to compare",
)


def pool_pids() -> list[int]:
    """Live processes running as any uid of our pool (one pass over /proc, cheap enough to sample)."""
    base, pids = uids.uid_base(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            uid = int(status.split("\nUid:", 1)[1].split()[0])
            if base <= uid < base + uids.UID_POOL_SIZE:
                pids.append(int(entry))
    return pids


def cmdline_pids(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    pids.append(int(entry))
            except OSError:
                pass
    return [p for p in pids if p != os.getpid()]


@pytest.fixture(autouse=True, scope="module")
def private_pool() -> Iterator[Path]:
    """Our own uid range and run root, so other sandbox users on this machine cannot confuse the checks."""
    root = Path(tempfile.mkdtemp(prefix="sopgraph-sbx-tests-"))
    root.chmod(0o711)  # the sandbox uid must be able to traverse it when there is no mount namespace
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOPGRAPH_SANDBOX_TMP", str(root))
        base = uids.DEFAULT_UID_BASE + (1 + os.getpid() % 4096) * uids.UID_POOL_SIZE
        mp.setenv("SOPGRAPH_SANDBOX_UID_BASE", str(base))
        yield root
    root.rmdir()


@pytest.fixture(autouse=True)
def host_unharmed(private_pool: Path) -> Iterator[None]:
    """After every case: no sandbox process survives, no run directory is left, and we are still here."""
    yield
    assert pool_pids() == [], "a sandboxed process outlived its run"
    assert list(private_pool.iterdir()) == [], "a run directory was left behind"
    os.kill(os.getpid(), 0)


def py(code: str, limits: SandboxLimits | None = None, **kw: object) -> sb.SandboxResult:
    return sb.run_python(textwrap.dedent(code), limits=limits, **kw)  # type: ignore[arg-type]


def sh(script: str, limits: SandboxLimits | None = None, **kw: object) -> sb.SandboxResult:
    return sb.run_command(["/bin/sh", "-c", script], limits=limits, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- basics


def test_isolation_is_reported_and_strongest_first() -> None:
    levels = sb.available_isolations()
    assert levels[0] == BEST and levels[-1].name == "none"
    if IS_ROOT and BEST.name == "unshare":
        assert BEST.uid_drop and BEST.network_isolated and BEST.pid_namespace and BEST.private_tmp
    r = py("print('hi')")
    assert (r.exit_code, r.stdout, r.isolation, r.network_isolated) == (0, "hi\n", BEST.name, BEST.network_isolated)
    assert r.uid_dropped == BEST.uid_drop and r.ok and not r.truncated and r.limit_hit is None


def test_runs_in_a_copy_of_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("original")
    r = py(
        f"""
        import os
        print(open('data.txt').read(), os.getcwd() != {str(tmp_path)!r})
        open('data.txt', 'w').write('changed'); open('new.txt', 'w').write('x')
        """,
        workspace=tmp_path,
    )
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "original True\n"
    assert (tmp_path / "data.txt").read_text() == "original" and not (tmp_path / "new.txt").exists()


def test_lent_workspace_keeps_results_and_gets_its_owner_back(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "pkg").mkdir(parents=True)
    (ws / "pkg" / "mod.py").write_text("VALUE = 41\n")
    r = py(
        """
        import os, sys
        sys.path.insert(0, '.')
        from pkg.mod import VALUE
        open('out.txt', 'w').write(str(VALUE + 1))
        os.chmod('out.txt', 0o4755)
        print(os.getcwd())
        """,
        workspace=ws,
        copy=False,
    )
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == (INSIDE + "/ws" if BEST.private_tmp else str(ws))
    out = ws / "out.txt"
    assert out.read_text() == "42"
    st = out.stat()
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    assert not st.st_mode & stat.S_ISUID, "set-uid bits must not come back from a lent workspace"
    assert (ws / "pkg" / "mod.py").stat().st_uid == os.geteuid()


def test_stdin_args_and_exit_code(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text("import sys\nprint(sys.stdin.read().upper(), sys.argv[1:])\nsys.exit(3)\n")
    r = sb.run_python(Path("prog.py"), tmp_path, args=["a", "b"], stdin="hello")
    assert (r.exit_code, r.stdout, r.limit_hit) == (3, "HELLO ['a', 'b']\n", None)


def test_a_command_that_cannot_start_is_reported_not_raised() -> None:
    r = sb.run_command(["no-such-program-sopgraph"])
    assert r.exit_code == 126 and "cannot start 'no-such-program-sopgraph'" in r.stderr


def test_explicit_env_passes_but_never_secrets() -> None:
    r = sh("echo $FOO:$MY_API_KEY:$GH_TOKEN", env={"FOO": "bar", "MY_API_KEY": "k", "GH_TOKEN": "t"})
    assert r.stdout == "bar::\n"


def test_unknown_or_unavailable_isolation_is_an_error() -> None:
    with pytest.raises(ValueError):
        sb.detect_isolation("docker")
    missing = {"unshare", "userns"} - {i.name for i in sb.available_isolations()}
    for name in missing:
        with pytest.raises(sb.SandboxError):
            sh("true", isolation=name)


# ---------------------------------------------------------------------------------- hostile programs


def test_infinite_loop_is_killed_at_the_wall_clock_limit() -> None:
    r = py("while True: pass", SandboxLimits(wall_s=1.5, cpu_s=60))
    assert r.timed_out and r.limit_hit == "wall" and r.exit_code == -signal.SIGKILL
    assert r.duration_s < 1.5 + 2.0


def test_busy_loop_hits_the_cpu_limit() -> None:
    r = py("while True: pass", SandboxLimits(wall_s=20, cpu_s=1))
    assert not r.timed_out
    assert r.limit_hit == "cpu" and r.exit_code == -signal.SIGXCPU


def test_fork_bomb_is_bounded_by_the_process_limit() -> None:
    nproc = 24
    peak = {"n": 0}
    done = threading.Event()

    def sample() -> None:  # the limit must bind while the bomb runs, not just be reported afterwards
        while not done.is_set():
            peak["n"] = max(peak["n"], len(pool_pids()))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        r = py(
            """
            import os
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
            """,
            SandboxLimits(wall_s=3, nproc=nproc),
        )
    finally:
        done.set()
        sampler.join()
    assert r.timed_out and r.limit_hit == "nproc"
    if r.uid_dropped:
        assert 0 < peak["n"] <= nproc


def test_memory_bomb_hits_the_address_space_limit() -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = py(
        """
        hog = []
        while True:
            hog.append(bytearray(32 * 1024 * 1024))
        """,
        SandboxLimits(memory_mb=256),
    )
    assert r.exit_code == 1 and "MemoryError" in r.stderr
    assert r.limit_hit == "memory" and not r.timed_out
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 * 1024


def test_ten_gigabyte_file_is_stopped_by_the_file_size_limit(tmp_path: Path) -> None:
    r = py(
        """
        chunk = b"\\0" * (1 << 20)
        with open("big.bin", "wb") as f:
            for _ in range(10 * 1024):
                f.write(chunk)
        """,
        SandboxLimits(file_size_mb=8),
        workspace=tmp_path,
        copy=False,
    )
    assert r.exit_code == 1 and "File too large" in r.stderr
    assert r.limit_hit == "file_size"
    assert (tmp_path / "big.bin").stat().st_size <= 8 * 1024 * 1024


def test_file_size_signal_is_reported_for_non_python_writers() -> None:
    r = sh("exec head -c 10G /dev/zero > big.bin", SandboxLimits(file_size_mb=4))
    assert r.exit_code == -signal.SIGXFSZ and r.limit_hit == "file_size"


@pytest.fixture
def victim() -> Iterator[Path]:
    """A root-style protected file: 0644 in a 0755 directory that is not ours to change."""
    d = Path(tempfile.mkdtemp(prefix="sopgraph-victim-"))
    d.chmod(0o755)
    f = d / "precious.txt"
    f.write_text("keep me")
    f.chmod(0o644)
    yield f
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


@pytest.mark.skipif(not BEST.uid_drop and BEST.name == "none", reason="no uid drop or namespaces here")
def test_cannot_write_or_delete_outside_the_workspace(victim: Path) -> None:
    etc_probe = f"/etc/sopgraph-sbx-{uuid.uuid4().hex}"
    r = py(f"""
        import os
        attempts = {{
            "delete": lambda: os.remove({str(victim)!r}),
            "overwrite": lambda: open({str(victim)!r}, "w").write("gone"),
            "create": lambda: open({str(victim.parent / "new.txt")!r}, "w").write("x"),
            "etc": lambda: open({etc_probe!r}, "w").write("x"),
            # opened for append but never written, so a failure of the sandbox would still change nothing
            "passwd": lambda: os.close(os.open("/etc/passwd", os.O_WRONLY | os.O_APPEND)),
            "chmod": lambda: os.chmod("/etc/passwd", os.stat("/etc/passwd").st_mode),
        }}
        for name, attempt in attempts.items():
            try:
                attempt()
                print(name, "SUCCEEDED")
            except OSError as e:
                print(name, "blocked", type(e).__name__)
        """)
    assert r.exit_code == 0, r.stderr
    assert "SUCCEEDED" not in r.stdout and r.stdout.count("blocked") == 6, r.stdout
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["precious.txt"]
    assert not os.path.exists(etc_probe)


def test_secrets_in_our_environment_never_reach_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "OPENAI_API_KEY": "sk-test-" + uuid.uuid4().hex,
        "ANTHROPIC_API_KEY": "sk-ant-" + uuid.uuid4().hex,
        "AWS_SECRET_ACCESS_KEY": uuid.uuid4().hex,
        "GITHUB_TOKEN": "ghp_" + uuid.uuid4().hex,
        "HF_TOKEN": "hf_" + uuid.uuid4().hex,
        "DATABASE_URL": "postgresql://user:" + uuid.uuid4().hex + "@db/x",
    }
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    r = py("""
        import json, os
        found = dict(os.environ)
        for pid in os.listdir("/proc"):  # also try every other process's environment we can see
            try:
                found["/proc/" + pid] = open("/proc/%s/environ" % pid, "rb").read().decode("latin-1")
            except OSError:
                pass
        print(json.dumps(found))
        """)
    assert r.exit_code == 0, r.stderr
    seen = json.loads(r.stdout)
    for name, value in secrets.items():
        assert name not in seen
        assert value not in r.stdout
    assert set(seen) >= {"PATH", "HOME", "LANG"}


@needs_netns
def test_no_connection_to_a_host_loopback_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        r = py(f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=3)
                print("CONNECTED")
            except OSError as e:
                print("refused", e.errno)
            """)
        assert select.select([listener], [], [], 0.2)[0] == [], "the host listener saw a connection"
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("refused") and r.network_isolated


@needs_netns
def test_private_loopback_still_works_inside() -> None:
    r = py("""
        import socket
        srv = socket.create_server(("127.0.0.1", 0))
        c = socket.create_connection(srv.getsockname(), timeout=2)
        conn, _ = srv.accept(); c.sendall(b"ping"); print(conn.recv(4).decode())
        """)
    assert r.stdout == "ping\n", r.stderr


def test_hundred_megabytes_of_stdout_are_captured_bounded() -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    limits = SandboxLimits(output_bytes=32 * 1024)
    r = py(
        """
        import sys
        sys.stdout.buffer.write(b"BEGIN")
        chunk = b"x" * (1 << 20)
        for _ in range(100):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.write(b"END")
        """,
        limits,
    )
    assert r.exit_code == 0 and r.truncated
    assert r.stdout_bytes == 100 * (1 << 20) + 8
    assert r.stdout.startswith("BEGIN") and r.stdout.endswith("END")
    assert "...[truncated " in r.stdout and len(r.stdout) < limits.output_bytes + 100
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 * 1024


DAEMON = """
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            open("daemon.started", "w").close()
            os.execv("/bin/sleep", ["sleep", "{marker}"])
        os._exit(0)
    while not os.path.exists("daemon.started"):
        time.sleep(0.01)
    time.sleep(0.2)
    {tail}
    """


@pytest.mark.parametrize("tail", ["print('parent exits')", "while True: pass"], ids=["exits", "times_out"])
def test_daemon_is_killed_when_the_run_ends(tmp_path: Path, tail: str) -> None:
    marker = str(900000 + uuid.uuid4().int % 99999)  # a sleep no one else runs
    code = DAEMON.format(marker=marker, tail=tail)
    r = py(code, SandboxLimits(wall_s=2), workspace=tmp_path, copy=False)
    assert (tmp_path / "daemon.started").exists(), r.stderr
    assert r.timed_out == ("while" in tail)
    assert cmdline_pids(f"sleep\0{marker}") == []


# --------------------------------------------------------------------- the no-namespace fallback (root)


@needs_uid_fallback
@pytest.mark.parametrize("case", ["fork_bomb", "daemon", "file_size", "outside", "secrets", "stdout"])
def test_fallback_without_namespaces_still_contains(case: str, victim: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = str(900000 + uuid.uuid4().int % 99999)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-" + marker)
    scripts = {
        "fork_bomb": ("f(){ f | f & }; f; sleep 100", SandboxLimits(wall_s=2, nproc=24)),
        "daemon": (f"setsid sh -c 'exec sleep {marker}' & sleep 0.3; echo parent exits", None),
        "file_size": ("exec head -c 10G /dev/zero > big.bin", SandboxLimits(file_size_mb=4)),
        "outside": (f"rm -f {victim}; echo x > {victim.parent}/new.txt; : >> /etc/passwd; echo done", None),
        "secrets": ("env", None),
        "stdout": ("head -c 100M /dev/zero", SandboxLimits(output_bytes=8192)),
    }
    script, limits = scripts[case]
    r = sh(script, limits, isolation="none")
    assert r.isolation == "none" and r.uid_dropped and not r.network_isolated
    if case == "fork_bomb":
        assert r.timed_out and r.limit_hit == "nproc"
    elif case == "daemon":
        assert r.stdout == "parent exits\n" and cmdline_pids(f"sleep\0{marker}") == []
    elif case == "file_size":
        assert r.limit_hit == "file_size"
    elif case == "outside":
        assert r.stderr.count("Permission denied") == 3, r.stderr
        assert victim.read_text() == "keep me" and not (victim.parent / "new.txt").exists()
    elif case == "secrets":
        assert "OPENAI" not in r.stdout and marker not in r.stdout
    else:
        assert r.truncated and r.stdout_bytes == 100 * (1 << 20) and len(r.stdout) < 8192 + 100


@needs_uid_fallback
def test_fallback_refuses_an_interpreter_the_sandbox_uid_cannot_reach() -> None:
    blocked = files.first_blocked(os.path.realpath(sys.executable), uids.uid_base())
    if blocked is None:
        assert py("print(1)", isolation="none").stdout == "1\n"
    else:
        with pytest.raises(sb.SandboxError, match="not reachable"):
            py("print(1)", isolation="none")


PACKAGE_INIT = str(Path(sb.__file__).resolve())
USERNS_DRIVER = """
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location(
    "sandbox", sys.argv[1], submodule_search_locations=[os.path.dirname(sys.argv[1])]
)  # the package itself, outside any install: its modules import one another relatively
sb = importlib.util.module_from_spec(spec); sys.modules["sandbox"] = sb; spec.loader.exec_module(sb)
if sb.detect_isolation().name != "userns":
    print(json.dumps({"skip": str(sb.available_isolations())})); sys.exit()
L, out = sb.SandboxLimits, {}
bomb = "import os\\nwhile True:\\n    try: os.fork()\\n    except OSError: pass"
daemon = ("import os,time\\nif os.fork()==0:\\n os.setsid()\\n"
          " if os.fork()==0: os.execv('/bin/sleep',['sleep',%r])\\n os._exit(0)\\ntime.sleep(0.3)")
net = ("import socket\\ntry: socket.create_connection(('127.0.0.1', int(%r)), timeout=2); print('CONNECTED')"
       "\\nexcept OSError: print('refused')")
caps = "print(open('/proc/self/status').read())"
for name, code, lim in [("bomb", bomb, L(wall_s=2, nproc=24)), ("daemon", daemon % sys.argv[2], L()),
                        ("net", net % sys.argv[3], L()), ("caps", caps, L())]:
    r = sb.run_python(code, limits=lim)
    out[name] = {"stdout": r.stdout, "limit": r.limit_hit, "isolation": r.isolation,
                 "net": r.network_isolated}
print(json.dumps(out))
"""


@pytest.mark.skipif(
    not IS_ROOT or not os.access("/usr/bin/python3", os.X_OK),
    reason="simulating an unprivileged caller needs root and a system python3",
)
def test_unprivileged_caller_gets_user_namespaces() -> None:
    """Developers run as themselves: the same module, driven by uid 65534, must contain the same cases."""
    marker = str(900000 + uuid.uuid4().int % 99999)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        proc = subprocess.run(
            ["/usr/bin/python3", "-c", USERNS_DRIVER, PACKAGE_INIT, marker, str(listener.getsockname()[1])],
            user=65534,
            group=65534,
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert select.select([listener], [], [], 0.1)[0] == []
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    if "skip" in out:
        pytest.skip(f"no unprivileged user namespaces: {out['skip']}")
    assert all(v["isolation"] == "userns" and v["net"] for v in out.values())
    assert out["bomb"]["limit"] == "nproc"
    assert cmdline_pids(f"sleep\0{marker}") == []
    assert out["net"]["stdout"] == "refused\n"
    assert "CapEff:\t0000000000000000" in out["caps"]["stdout"]


# ------------------------------------------------------------------------------------ escapes (issue 15)
# Each case is one a probe used to get out. Every result names the isolation mode it was contained under.

needs_private_root = pytest.mark.skipif(not BEST.private_tmp, reason=f"no mount namespace here ({BEST.name})")
REPO = Path(sb.__file__).resolve().parents[2]  # tools/sandbox/__init__.py


def host_unix_sockets() -> list[str]:
    """Filesystem Unix sockets that host services listen on (PostgreSQL, MariaDB, ...)."""
    found = set()
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if len(fields) >= 8 and fields[7].startswith("/") and os.path.exists(fields[7]):
                found.add(fields[7])
    return sorted(found)


@pytest.fixture
def host_socket() -> Iterator[tuple[str, socket.socket]]:
    """A listener of our own in the host's runtime directory, so the case never depends on other services."""
    base = Path("/run") if os.access("/run", os.W_OK) else Path.home()
    path = base / f"sopgraph-test-{uuid.uuid4().hex[:8]}.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        os.chmod(path, 0o777)
        listener.listen(8)
        try:
            yield str(path), listener
        finally:
            path.unlink()


@needs_private_root
def test_no_host_unix_socket_is_reachable(host_socket: tuple[str, socket.socket]) -> None:
    ours, listener = host_socket
    sockets = sorted({ours, *host_unix_sockets()})
    for path in list(sockets):  # each one is reachable from the host: otherwise the case proves nothing
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
            except OSError:
                sockets.remove(path)
    assert ours in sockets
    listener.accept()[0].close()  # our own probe's connection
    r = py(f"""
        import json, socket
        out = {{}}
        for path in {sockets!r}:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(path)
                out[path] = "CONNECTED"
            except OSError as e:
                out[path] = type(e).__name__
        print(json.dumps(out))
        """)
    assert select.select([listener], [], [], 0.1)[0] == [], "the host listener saw a connection"
    assert r.exit_code == 0, r.stderr
    assert "CONNECTED" not in r.stdout, (r.isolation, r.stdout)
    assert set(json.loads(r.stdout)) == set(sockets)


@needs_private_root
def test_the_local_postgresql_superuser_is_out_of_reach() -> None:
    """The probe's critical case: psycopg over the server's socket as `postgres`, then pg_read_file."""
    socket_dirs = sorted({os.path.dirname(p) for p in host_unix_sockets() if ".s.PGSQL." in p})
    if not socket_dirs:
        if os.environ.get("SOPGRAPH_REQUIRE_POSTGRES"):
            pytest.fail("no PostgreSQL Unix socket on this machine")
        pytest.skip("no PostgreSQL Unix socket on this machine")
    pytest.importorskip("psycopg")
    r = py(f"""
        import psycopg
        for d in {socket_dirs!r}:
            try:
                with psycopg.connect(f"host={{d}} user=postgres dbname=test", connect_timeout=3) as c:
                    print("CONNECTED", c.execute("select pg_read_file('/etc/hostname')").fetchone())
            except psycopg.OperationalError as e:
                print("refused", str(e).splitlines()[0][:60])
        """)
    assert r.exit_code == 0, r.stderr
    assert "CONNECTED" not in r.stdout and r.stdout.count("refused") == len(socket_dirs), (r.isolation, r.stdout)


@needs_private_root
def test_project_databases_checkout_and_runtime_dirs_are_invisible() -> None:
    project = Path(tempfile.mkdtemp(prefix="sopgraph-test-project-", dir=Path.home()))
    try:
        (project / ".sopgraph").mkdir()
        db = project / ".sopgraph" / "state.sqlite"
        db.write_text("checkpoints")
        db.chmod(0o644)
        targets = [str(db), str(REPO / "pyproject.toml"), str(LAUNCHER)]
        targets += [
            p
            for p in ("/run", "/var/run", "/var/lib", "/home", "/srv", "/mnt", str(REPO / ".git"))
            if os.path.exists(p)
        ]
        r = py(f"""
            import os
            for path in {targets!r}:
                try:
                    if os.path.isdir(path):
                        print(path, "LISTED", sorted(os.listdir(path))[:3])
                    else:
                        print(path, "READ", open(path).read(20))
                except OSError as e:
                    print(path, "hidden", type(e).__name__)
            print("python works:", os.path.exists({sys.executable!r}))
            print("home:", sorted(os.listdir({str(Path.home())!r})) if os.path.isdir({str(Path.home())!r}) else [])
            """)
    finally:
        db.unlink()
        (project / ".sopgraph").rmdir()
        project.rmdir()
    assert r.exit_code == 0, r.stderr
    assert "LISTED" not in r.stdout and "READ" not in r.stdout, (r.isolation, r.stdout)
    assert r.stdout.count("hidden") == len(targets) and "python works: True" in r.stdout
    # Of our home only the way to the interpreter shows (as root, pyenv lives there), never what else it holds.
    leads = {Path(p).relative_to(Path.home()).parts[0] for p in files.interpreter_paths() if _under_home(p)}
    assert set(json.loads(r.stdout.split("home: ", 1)[1].replace("'", '"'))) <= leads


def _under_home(path: str) -> bool:
    return Path(path).is_relative_to(Path.home())


MEMORY_HOG = """
    import os, sys, time
    kids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            block = bytearray(300 * 1024 * 1024)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(4)
            os._exit(0)
        kids.append(pid)
    done = sum(os.waitstatus_to_exitcode(os.waitpid(k, 0)[1]) == 0 for k in kids)
    print("ALLOCATED", done * 300, "MB")
    """


@pytest.mark.parametrize("mode", ["cgroup", "accounting"])
def test_memory_is_limited_per_run_not_per_process(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """4 x 300 MB under a 512 MB limit: each process alone fits its own limit, the run as a whole does not."""
    monkeypatch.setattr(memory, "_cgroup_base_cache", [])
    monkeypatch.setenv("SOPGRAPH_SANDBOX_CGROUP", "1" if mode == "cgroup" else "0")
    if mode == "cgroup" and memory.cgroup_base() is None:
        pytest.skip("no memory cgroup we may create children in (needs root and a memory controller)")
    r = py(MEMORY_HOG, SandboxLimits(memory_mb=512, wall_s=30))
    assert r.limit_hit == "memory", (r.isolation, mode, r.exit_code, r.stdout, r.stderr[-300:])
    assert "ALLOCATED 1200 MB" not in r.stdout
    if mode == "cgroup":
        assert not list(memory.cgroup_base()[1].glob(f"sopgraph-{os.getpid()}-*")), "a run's cgroup was left behind"


OTHER_FRAMEWORK = """
import subprocess, sys
from pathlib import Path
from sopgraph.tools.sandbox import memory

with memory.memory_cgroup(64) as group:
    print(group.path, flush=True)
    sys.stdin.readline()  # the test sweeps now, as another framework's first sandbox run does
    child = subprocess.Popen(["sleep", "60"])
    Path(group.procs).write_text(str(child.pid))  # the rest of its setup: the run joins its cgroup
    print("joined", flush=True)
"""


def test_the_cgroup_sweep_keeps_live_runs_cgroups_and_removes_dead_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process's sandbox run sweeps the cgroups of frameworks that died. It must leave alone the empty
    cgroup another live process has just made for its run (whose setup then failed with "cgroup.procs: No
    such file or directory"), a cgroup whose creator's pid lives, and one its owner holds locked; it removes
    a cgroup whose creator is gone and which nobody holds."""
    monkeypatch.setattr(memory, "_cgroup_base_cache", [])
    monkeypatch.setenv("SOPGRAPH_SANDBOX_CGROUP", "1")
    base = memory.cgroup_base()
    if base is None:
        pytest.skip("no memory cgroup we may create children in (needs root and a memory controller)")
    parent_dir = base[1]
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "60"])
    tag = uuid.uuid4().hex[:6]
    dead = parent_dir / f"sopgraph-{gone.pid}-{tag}1"  # its framework was killed
    locked = parent_dir / f"sopgraph-{gone.pid}-{tag}2"  # pid not ours to see (another pid namespace), lock held
    unlocked_live = parent_dir / f"sopgraph-{alive.pid}-{tag}3"  # made, not yet locked (or by an older sopgraph)
    old = time.time() - 3600
    lock_fd = -1
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_FRAMEWORK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        for path in (dead, locked, unlocked_live):
            path.mkdir()
            os.utime(path, (old, old))  # long past the grace period of a fresh directory
        lock_fd = os.open(locked, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        assert other.stdout is not None and other.stdin is not None
        theirs = Path(other.stdout.readline().strip())
        assert theirs.is_dir() and theirs.parent == parent_dir, theirs
        monkeypatch.setattr(memory, "_cgroup_base_cache", [])  # our process's first sandbox run
        with memory.memory_cgroup(64) as ours:  # sweeps before it makes its own cgroup
            assert ours is not None and ours.path.is_dir()
        assert theirs.is_dir(), "another live process's fresh cgroup was swept"
        assert locked.is_dir() and unlocked_live.is_dir()
        assert not dead.exists(), "a dead framework's cgroup was left"
        said, _ = other.communicate("go\n", timeout=60)
        assert other.returncode == 0 and said.strip() == "joined"
        assert not theirs.exists()  # its owner removed it at the end of its run
    finally:
        other.kill()
        other.communicate()
        alive.kill()
        alive.wait()
        if lock_fd >= 0:
            os.close(lock_fd)
        for path in (dead, locked, unlocked_live):
            with contextlib.suppress(OSError):
                path.rmdir()


@needs_private_root
def test_inode_and_disk_floods_are_capped() -> None:
    r = py(
        """
        import errno, os, tempfile
        try:
            with open("big", "wb") as f:
                for _ in range(64):
                    f.write(b"x" * 1024 * 1024)
        except OSError as e:
            print("disk", os.path.getsize("big") // (1024 * 1024), errno.errorcode[e.errno])
        os.remove("big")
        for where in (tempfile.gettempdir(), "/tmp", "/dev/shm", "."):
            n = 0
            try:
                while n < 100_000:
                    open(os.path.join(where, f"f{n}"), "w").close()
                    n += 1
            except OSError as e:
                print(where, "files", n, errno.errorcode[e.errno])
        """,
        SandboxLimits(max_files=2000, disk_mb=16, tmp_mb=16, wall_s=30),
    )
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 5, r.stdout
    assert lines[0].split()[0] == "disk" and int(lines[0].split()[1]) <= 16 and lines[0].endswith("ENOSPC")
    for line in lines[1:]:
        where, _, n, code = line.split()
        assert int(n) <= 2000 and code == "ENOSPC", (r.isolation, line)


ORPHAN_DRIVER = """
import sys
from sopgraph.tools import sandbox as sb
sb.run_command(["/bin/sleep", sys.argv[1]], limits=sb.SandboxLimits(wall_s=60, cpu_s=60), isolation=sys.argv[2])
"""


@pytest.mark.parametrize("isolation", sorted({BEST.name, "none"}))
def test_killing_the_framework_ends_the_run_at_once_and_its_directory_is_swept(
    isolation: str, private_pool: Path
) -> None:
    if isolation == "none" and not FALLBACK.uid_drop:
        pytest.skip("the no-namespace fallback needs root here")
    marker = str(800000 + uuid.uuid4().int % 99999)
    driver = subprocess.Popen([sys.executable, "-c", ORPHAN_DRIVER, marker, isolation])
    try:
        deadline = time.monotonic() + 30
        while not cmdline_pids(f"sleep\0{marker}"):
            assert time.monotonic() < deadline and driver.poll() is None, "the sandboxed sleep never started"
            time.sleep(0.05)
        assert [p.name for p in private_pool.iterdir()], "the run directory should exist while it runs"
        driver.kill()
        driver.wait()
        killed_at = time.monotonic()
        while cmdline_pids(f"sleep\0{marker}") and time.monotonic() - killed_at < 5:
            time.sleep(0.02)
        survived = time.monotonic() - killed_at
        assert cmdline_pids(f"sleep\0{marker}") == [], "the sandboxed program outlived the framework"
        assert survived < 2.0, f"took {survived:.1f}s to die"
        # Without a PID namespace the launcher's own clean-up briefly forks a killer with the run's uid.
        while pool_pids() and time.monotonic() - killed_at < 5:
            time.sleep(0.02)
    finally:
        if driver.poll() is None:
            driver.kill()
    files.sweep_stale_runs(private_pool, min_age_s=0)  # what the next run of any framework process does first
    assert list(private_pool.iterdir()) == []


@needs_private_root
def test_test_reports_carry_no_random_host_paths(tmp_path: Path) -> None:
    project = make_project(tmp_path, "from calc import add\ndef test_wrong():\n    assert add(2, 2) == 5\n")
    first, second = sb.run_tests(project), sb.run_tests(project)
    assert first.failed == 1 and first.summary_for_model() == second.summary_for_model()
    assert str(tmp_path) not in first.summary_for_model() and "sopgraph-sbx" not in first.summary_for_model()
    assert all(c.file is None or not c.file.startswith("/tmp") for c in first.cases)


# ------------------------------------------------------------------------------------------ concurrency


def test_eight_concurrent_runs_do_not_interfere() -> None:
    code = """
        import json, os, time
        start = time.time()
        open("mine-%d.txt", "w").close()
        time.sleep(1.5)
        print(json.dumps({"id": %d, "uid": os.getuid(), "cwd": sorted(os.listdir(".")),
                          "start": start, "end": time.time()}))
        """
    jobs = [lambda i=i: py(code % (i, i)) for i in range(8)]
    results = sb.run_many(jobs, max_workers=8)
    outs = [json.loads(r.stdout) for r in results]
    assert [o["id"] for o in outs] == list(range(8))
    assert all(o["cwd"] == [f"mine-{o['id']}.txt"] for o in outs)
    if BEST.uid_drop:
        assert len({r.sandbox_uid for r in results}) == 8
    assert max(o["start"] for o in outs) < min(o["end"] for o in outs), "the runs did not overlap"


def test_a_fork_bomb_does_not_starve_its_neighbours() -> None:
    bomb = "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass"
    worker = """
        import os, time
        kids = []
        for _ in range(10):
            pid = os.fork()
            if pid == 0:
                time.sleep(0.5)
                os._exit(0)
            kids.append(pid)
        for k in kids:
            os.waitpid(k, 0)
        print("ok")
        """
    jobs = [lambda: py(bomb, SandboxLimits(wall_s=3, nproc=24))]
    jobs += [lambda: py(worker, SandboxLimits(nproc=16)) for _ in range(3)]
    bomb_result, *others = sb.run_many(jobs, max_workers=4)
    assert bomb_result.limit_hit == "nproc"
    assert [o.stdout for o in others] == ["ok\n"] * 3, [o.stderr for o in others]


# ------------------------------------------------------------------------------------------ test runner


def make_project(root: Path, body: str) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "tests" / "test_calc.py").write_text(textwrap.dedent(body))
    return root


MIXED = """
    import unittest
    from calc import add

    def test_ok():
        assert add(1, 2) == 3

    def test_wrong():
        assert add(2, 2) == 5

    def test_crash():
        {}["missing"]

    class TestOld(unittest.TestCase):
        def test_unit(self):
            self.assertEqual(add(1, 1), 2)
    """


def test_run_tests_reports_each_case_and_a_short_summary(tmp_path: Path) -> None:
    report = sb.run_tests(make_project(tmp_path, MIXED))
    assert report.report_found and not report.all_passed
    assert (report.passed, report.failed, report.errors) == (2, 2, 0)
    outcomes = {c.name.rsplit("::", 1)[1]: c.outcome for c in report.cases}
    assert outcomes == {"test_ok": "passed", "test_wrong": "failed", "test_crash": "failed", "test_unit": "passed"}
    summary = report.summary_for_model(max_chars=1200)
    assert len(summary) <= 1200
    assert "2 passed, 2 failed" in summary
    assert "assert add(2, 2) == 5" in summary and "assert 4 == 5" in summary
    assert "KeyError" in summary and "test_ok" not in summary
    assert "^^^" not in summary and "Use -v" not in summary


def test_run_tests_all_passed(tmp_path: Path) -> None:
    project = make_project(tmp_path, "from calc import add\ndef test_ok():\n    assert add(1, 2) == 3\n")
    report = sb.run_tests(project)
    assert report.all_passed and report.passed == 1, report.summary_for_model()


def test_run_tests_collection_error(tmp_path: Path) -> None:
    report = sb.run_tests(make_project(tmp_path, "def test_broken(:\n    pass\n"))
    assert not report.all_passed and report.errors == 1
    assert "SyntaxError" in report.summary_for_model() or "invalid syntax" in report.summary_for_model()


def test_run_tests_loads_only_the_plugins_asked_for(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        """
        import pytest
        def test_plugins(pytestconfig):
            names = {getattr(p, "__name__", "") for p in pytestconfig.pluginmanager.get_plugins()}
            print("timeout" in str(names), "langsmith" in str(names))
        """,
    )
    report = sb.run_tests(project, plugins=["pytest_timeout"], pytest_args=["-s"])
    assert report.all_passed, report.summary_for_model()
    assert "True False" in report.result.stdout


def test_run_tests_hanging_test_is_reported_as_timeout(tmp_path: Path) -> None:
    project = make_project(tmp_path, "def test_hangs():\n    while True:\n        pass\n")
    report = sb.run_tests(project, limits=SandboxLimits(wall_s=3))
    assert report.result.timed_out and not report.report_found and not report.all_passed
    assert "wall-clock limit" in report.summary_for_model()


def test_run_tests_does_not_follow_a_planted_report_symlink(tmp_path: Path) -> None:
    project = make_project(tmp_path, "def test_ok():\n    pass\n")
    (project / "conftest.py").write_text(
        textwrap.dedent("""
        import os
        def pytest_unconfigure(config):
            path = config.option.xmlpath
            if path and os.path.exists(path):
                os.remove(path)
                os.symlink("/etc/shadow", path)
        """)
    )
    report = sb.run_tests(project)
    assert not report.report_found and not report.all_passed
    assert "root:" not in report.summary_for_model()


# ------------------------------------------------------------------------------------------ small parts


def test_capture_keeps_head_and_tail() -> None:
    cap = capture.Capture(10)
    for chunk in (b"abc", b"defgh", b"ijklmnopqrstuvwxyz"):
        cap.feed(chunk)
    assert cap.truncated and cap.total == 26
    assert cap.text() == "abcde\n...[truncated 16 bytes]...\nvwxyz"
    small = capture.Capture(10)
    small.feed(b"0123456789")
    assert not small.truncated and small.text() == "0123456789"


@pytest.mark.parametrize(
    ("exit_code", "timed_out", "stderr", "expected"),
    [
        (-signal.SIGXFSZ, False, "", "file_size"),
        (128 + signal.SIGXFSZ, False, "File size limit exceeded", "file_size"),
        (-signal.SIGXCPU, False, "", "cpu"),
        (1, False, "MemoryError", "memory"),
        (1, False, "BlockingIOError: [Errno 11] Resource temporarily unavailable", "nproc"),
        (-signal.SIGKILL, True, "", "wall"),
        (0, False, "MemoryError (handled)", None),
    ],
)
def test_limit_classification(exit_code: int, timed_out: bool, stderr: str, expected: str | None) -> None:
    assert parent.classify(exit_code, timed_out, None, 0, stderr, SandboxLimits()) == expected
