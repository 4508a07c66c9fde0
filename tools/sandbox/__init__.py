"""Run untrusted generated code (QA loop, HumanEval/MBPP) in a contained child process.

Nothing generated ever runs in the framework's process. Each run goes through a small *launcher* --
launcher.py of this package, executed as ``python -I -S launcher.py --launch SPEC`` (stdlib only, so it
needs no site-packages) -- which sets up the containment, forks the target with dropped privileges and
limits, reaps it and reports its wait status and resource usage on a private pipe.

Isolation levels, strongest first; :func:`detect_isolation` probes once per process and picks the best:

``unshare`` (running as root, util-linux ``unshare`` works)
    Fresh mount, PID, network, IPC and UTS namespaces; the launcher is PID 1, so when the target exits or
    the run is killed the kernel kills every process left in the namespace (daemons included). Only a
    private loopback exists, so nothing outside is reachable. The target runs as a per-run uid (see below).

    A private root: the launcher builds a tmpfs root and pivots into it. It holds ``/usr``, ``/etc`` and the
    lib/bin directories, the interpreter prefix and site-packages, all read-only; a minimal ``/dev``; a fresh
    ``/proc``; private ``/tmp``, ``/var/tmp`` and ``/dev/shm``; and the run directory at ``/sandbox``
    (workspace ``/sandbox/ws``, HOME, TMPDIR), copied into a tmpfs. No ``/run``, ``/var``, ``/home``, the
    rest of ``/root``, nor the checkout: no host Unix socket (PostgreSQL, MariaDB, ...), no project database,
    no source tree. Every writable place is a tmpfs with a size and an inode cap; after the run the launcher
    copies back only the named result files (the junit report), never following links the program planted.
    Paths the program (and so a test report, and so a prompt) sees are the same on every run.

``userns`` (not root, unprivileged user namespaces allowed)
    The same namespaces inside a user namespace; the target keeps the caller's uid (no other uid is
    mapped) but loses every capability. It can do no more than the calling user could.

``none`` (no namespaces)
    A process group, a child subreaper and rlimits. As root the uid drop still works, but the interpreter
    must be reachable by the sandbox uid (:class:`SandboxError` otherwise). No network isolation.

Why a uid per run: RLIMIT_NPROC is ignored for root and counts every process of a uid machine-wide, so
concurrent runs sharing one uid would starve each other. Runs take a uid from a pool
(``SOPGRAPH_SANDBOX_UID_BASE``, default 1900000000, 256 slots; uids with a passwd entry, inside an
``/etc/subuid`` range or with live processes are skipped) under an ``flock`` held for the whole run, which
also coordinates separate framework processes. After every run all processes of that uid are killed before
the slot is released.

Memory: ``memory_mb`` bounds each process's address space and the resident memory of the whole run: a
memory cgroup per run where we may create one (root; cgroup v1 memory controller, or v2 with memory
delegated), else the parent sums the run's resident memory five times a second and kills it when over. A run's
cgroup (``sopgraph-<pid>-<n>``) is flock-ed by its framework while the run lives; a run starting sweeps only
those whose creating pid is gone and whose lock nobody holds, as with run directories below.

Run directories go under ``SOPGRAPH_SANDBOX_TMP`` (default: ``sopgraph-sbx-<uid>`` in the system temp dir),
each flock-ed while its run lives; a run starting sweeps the directories of runs whose framework died. The
launcher holds a lifeline pipe whose only write end is the framework's: when the framework dies, even by
SIGKILL, the launcher gets SIGIO at once and takes the whole run down.

Known limits: without a mount namespace (``none``) the program sees the host filesystem as its uid may, and
its disk use is bounded per file (RLIMIT_FSIZE), not in total; a lent workspace (``copy=False``) is the
host directory itself (not size-capped) and may come back with symlinks to anywhere, so do not follow them
as root; ``limit_hit`` for process limits is inferred from the exit signal, the process count at timeout and
well-known error texts, so it is a best guess; a test report is only as trustworthy as the code under test,
which runs inside pytest and could forge its result.

The package, one concern per module: ``api`` (what callers use: run_command, run_python, run_tests,
run_many), ``base`` (limits, isolation levels, results), ``isolation`` (probing), ``parent`` (one run as the
framework drives it), ``uids`` (the uid pool), ``files`` (run directories, workspaces, the private root's
plan), ``memory`` (cgroup or RSS sum), ``capture`` (bounded output), ``report`` (pytest's JUnit report and
the brief for a model) and ``launcher`` (the program that runs inside the containment).
"""

from __future__ import annotations

from .api import run_command, run_many, run_python, run_tests
from .base import Isolation, Limit, SandboxError, SandboxLimits, SandboxResult
from .isolation import available_isolations, detect_isolation
from .report import NO_TESTS_COLLECTED, TestCase, TestReport

__all__ = [
    "NO_TESTS_COLLECTED",
    "Isolation",
    "Limit",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "TestCase",
    "TestReport",
    "available_isolations",
    "detect_isolation",
    "run_command",
    "run_many",
    "run_python",
    "run_tests",
]
