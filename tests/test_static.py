"""Static tools resolve `sopgraph.*` to the real modules, so a cross-module type error is caught.

The top-level folders reach the package through symlinks in sopgraph/ (pyproject.toml), not an import hook:
were `sopgraph.state.pool` unresolvable, mypy would type `Message` as Any and the probe below would pass.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """\
from sopgraph.state.pool import Message


def probe(message: Message) -> None:
    wrong: int = message
"""


def test_mypy_sees_types_across_modules(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (the dev extra brings it)")
    (tmp_path / "probe.py").write_text(PROBE)
    store = getattr(request.config, "cache", None)  # pytest's cache dir keeps mypy's cache between runs
    cache = store.mkdir("mypy") if store else tmp_path / "mypy-cache"
    # Run outside the checkout: the import resolves through the installed package, as an editor's would.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(cache)]
        + ["--no-error-summary", "probe.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert errors == [
        'probe.py:5: error: Incompatible types in assignment (expression has type "Message", '
        'variable has type "int")  [assignment]'
    ], done.stdout + done.stderr
    assert done.returncode == 1
