"""The product manager: turns the user's requirement into a PRD."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from sopgraph.nodes.company import coverage
from sopgraph.nodes.company.common import Role, latest, prd_brief
from sopgraph.nodes.company.repository import write_docs
from sopgraph.state.company import EXISTING_PRD, PRD, USER_REQUIREMENT, WRITE_PRD, CompanyState, UserRequirement
from sopgraph.state.context import Context
from sopgraph.state.pool import Message, Subscription

ROLE = Role(
    name="product_manager",
    profile="Alice, a product manager",
    goal="turn a requirement into a short, concrete PRD for a small Python program",
    constraints=(
        "the product is a small program using only the Python standard library; keep every list to at most "
        "5 short items; answer only through the PRD tool"
    ),
    watches=Subscription(kinds=frozenset({USER_REQUIREMENT, EXISTING_PRD})),
)

NEW_PRODUCT = "Requirement: {requirement}\n\nWrite the PRD for it."
CHANGE_REQUEST = (
    "Current PRD of the product:\n{prd}\n\nNew requirement: {requirement}\n\n"
    "Write the updated PRD: keep what still holds and add what the new requirement needs."
)


def product_manager(state: CompanyState, runtime: Runtime[Context]) -> dict[str, Any]:
    seen = ROLE.view(state)
    request = latest(seen, UserRequirement)
    assert request is not None, "the intake node publishes the requirement first"
    current = latest(seen, PRD, [EXISTING_PRD])
    if current is None:
        prompt = NEW_PRODUCT.format(requirement=request.text)
    else:
        prompt = CHANGE_REQUEST.format(prd=prd_brief(current), requirement=request.text)
    llm = ROLE.gateway(state, runtime)
    prd, missing = coverage.structured_covering(llm, PRD, prompt, ROLE.system, request.text, "PRD")
    warnings = [coverage.coverage_note("PRD", missing)] if missing else []
    message = Message(sender=ROLE.name, kind=WRITE_PRD, content=f"PRD for {prd.project_name}", payload=prd)
    write_docs(state, runtime, [message])
    return {"pool": [message], "warnings": warnings, **llm.usage_update()}
