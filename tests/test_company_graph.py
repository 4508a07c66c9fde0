"""The company graph's shape: routing is declared by the nodes (`Command[Literal[...]]`) and the drawing keeps
every edge and label. A changed edge set is a changed SOP; update the expectation only on purpose."""

from __future__ import annotations

from typing import Literal

import pytest
from langgraph.types import Command

from sopgraph.graphs.company import build_company_graph
from sopgraph.graphs.sop import SOPStateGraph
from sopgraph.nodes.routing import declared_targets, edge_labels
from sopgraph.state.company import CompanyState

# Every edge of the compiled graph: `source -> target`, plain; `source ~> target: label`, conditional.
EXPECTED = """
__start__ -> intake
intake -> product_manager
product_manager -> review_prd
review_prd -> architect
architect -> review_design
review_design -> project_manager
project_manager -> engineer
engineer ~> write_code: next file
engineer ~> code_review: all written
write_code -> engineer
code_review ~> review_code: LBTM
code_review ~> qa: LGTM
review_code -> engineer
qa ~> write_test: next test
qa ~> run_tests: tests written
write_test -> qa
run_tests ~> debug: fail, fixes left
run_tests ~> deliver: pass or out of fixes
debug -> run_tests
deliver -> __end__
"""


def _edges(text: str) -> set[tuple[str, str, str | None, bool]]:
    edges = set()
    for line in text.strip().splitlines():
        source, arrow, rest = line.split(" ", 2)
        target, _, label = rest.partition(": ")
        edges.add((source, target, label or None, arrow == "~>"))
    return edges


def test_company_graph_edges_are_the_sop() -> None:
    drawn = build_company_graph().compile().get_graph()
    assert {(e.source, e.target, e.data, e.conditional) for e in drawn.edges} == _edges(EXPECTED)


def test_edge_labels_must_name_exactly_the_declared_targets() -> None:
    @edge_labels(a="to a")
    def node(state: dict) -> Command[Literal["a", "b"]]:
        return Command(goto="a")

    assert declared_targets(node) == ("a", "b")
    with pytest.raises(ValueError, match="do not match its declared targets"):
        SOPStateGraph(CompanyState).add_node("n", node)
