"""The shipped graphs on the embedded model (slow; marked local_model): they must finish, not shine."""

from __future__ import annotations

from pathlib import Path

import pytest

from sopgraph.graphs import runner
from sopgraph.graphs.company import company_input
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.state.company import Delivery
from sopgraph.state.context import Context

pytestmark = [pytest.mark.local_model, pytest.mark.timeout(3600)]


def test_company_delivers_a_repository_whose_tests_ran(local_model_name: str, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    payload = company_input(
        "a function that adds two numbers, with a tiny command line", out_dir=out, max_debug=1, max_files=2
    )
    with open_checkpointer(str(tmp_path / "state.sqlite")) as saver:
        outcome = runner.start_run("company", dict(payload), saver, Context(model=local_model_name))
    assert outcome.status == "done"
    deliveries = [m.payload for m in outcome.values["pool"] if isinstance(m.payload, Delivery)]
    assert deliveries, "no delivery report"
    delivery = deliveries[-1]
    for doc in ("docs/prd.md", "docs/design.md", "docs/tasks.md", "README.md"):
        assert (out / doc).is_file(), doc
    assert any(out.glob("**/*.py"))
    if delivery.outcome != "no_tests":  # a weak model may write no usable test; then nothing could run
        assert delivery.attempts >= 1 and (out / "docs/test_report.md").is_file()
    print(
        f"\ncompany on the local model: {delivery.headline()}, {delivery.lines} lines, "
        f"{sum(r.total_tokens for r in outcome.values['usage'])} tokens, {outcome.seconds:.0f}s"
    )
