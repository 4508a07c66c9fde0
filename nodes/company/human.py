"""Optional human review points after the PRD and after the design (LangGraph interrupts).

The run pauses with the document; the answer approves it, or edits it (the changed fields, merged over the
document and validated against its schema). An invalid answer pauses again with the reason, so a typo
never ends the run. An edited document is republished under the same kind, so every role downstream
reads the human's version.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Protocol

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import ValidationError

from sopgraph.nodes.company.repository import DESIGN_DOC, PRD_DOC, write_docs
from sopgraph.state.company import (
    HUMAN_REVIEW,
    PRD,
    WRITE_DESIGN,
    WRITE_PRD,
    CompanyState,
    HumanDecision,
    SystemDesign,
)
from sopgraph.state.context import Context
from sopgraph.state.pool import Document, Message, Pool

STAGES: dict[str, tuple[str, type[Document], str]] = {
    "prd": (WRITE_PRD, PRD, PRD_DOC),
    "design": (WRITE_DESIGN, SystemDesign, DESIGN_DOC),
}
HOW = 'answer {"action": "approve"} or {"action": "edit", "document": {<fields to change>}}'


def parse_answer(answer: Any, current: Document) -> tuple[Literal["approve", "edit"], Document | None, list[str]] | str:
    """(action, edited document, changed fields), or a one-line reason the answer is unusable."""
    if isinstance(answer, str):
        text = answer.strip()
        if text.lower() in ("approve", "approved", "ok", "yes", "lgtm", ""):
            return ("approve", None, [])
        try:
            answer = json.loads(text)
        except json.JSONDecodeError:
            return f"not understood: {text[:80]!r}"
    if answer is None or answer is True:
        return ("approve", None, [])
    if not isinstance(answer, dict):
        return f"not understood: {str(answer)[:80]!r}"
    action = str(answer.get("action", "edit" if "document" in answer else "")).lower()
    if action == "approve":
        return ("approve", None, [])
    if action != "edit":
        return f"unknown action {action!r}"
    edits = answer.get("document")
    if not isinstance(edits, dict) or not edits:
        return "an edit needs a non-empty 'document' object with the fields to change"
    schema = type(current)
    fields = set(schema.model_fields)
    unknown = sorted(set(edits) - fields - {"doc_type"})
    if unknown:
        return f"unknown field(s) {', '.join(unknown)}; the {schema.__name__} has {', '.join(sorted(fields))}"
    merged = {**current.model_dump(mode="json", exclude={"doc_type"}), **edits}
    merged.pop("doc_type", None)
    try:
        edited = schema.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"the edited {schema.__name__} is invalid ({exc.error_count()} errors): {where}: {first['msg']}"
    changed = sorted(k for k in edits if k != "doc_type")
    return ("edit", edited, changed)


class ReviewNode(Protocol):
    """A node LangGraph calls with the runtime by keyword (a plain Callable type cannot say so)."""

    def __call__(self, state: CompanyState, runtime: Runtime[Context]) -> dict[str, Any]: ...


def review_point(stage: str) -> ReviewNode:
    kind, schema, doc_path = STAGES[stage]

    def node(state: CompanyState, runtime: Runtime[Context]) -> dict[str, Any]:
        if stage not in (state.get("review") or []):
            return {}
        current = None
        for message in Pool(state.get("pool")).messages:
            if message.kind == kind and isinstance(message.payload, schema):
                current = message.payload
        assert current is not None, f"no {schema.__name__} to review"
        where = f"{state['out_dir']}/{doc_path}"
        question: dict[str, Any] = {
            "reason": "review",
            "stage": stage,
            "document": current.model_dump(mode="json"),
            "path": where,
            "message": f"review the {schema.__name__} ({where}); {HOW}",
        }
        while isinstance(decision := parse_answer(interrupt(question), current), str):
            question = {**question, "error": decision, "message": f"{decision}. Review again: {HOW}"}
        action, edited, changed = decision
        record = Message(
            sender="human",
            kind=HUMAN_REVIEW,
            content=f"{stage}: {action}",
            payload=HumanDecision(
                stage=stage,
                action=action,
                changed=changed,
            ),
        )
        if edited is None:
            return {"pool": [record]}
        republished = Message(
            sender="human", kind=kind, content=f"{stage} edited: {', '.join(changed)}", payload=edited
        )
        write_docs(state, runtime, [record, republished])
        return {"pool": [record, republished]}

    node.__name__ = f"review_{stage}"
    return node


review_prd = review_point("prd")
review_design = review_point("design")
