"""Code review: every written file version up to the review-round limit gets an LGTM or LBTM verdict.

`code_review` dispatches one review per unreviewed file version (in parallel, with Send); the engineer
then rewrites what came back LBTM. A version beyond `max_review_rounds` is not reviewed again, so the
send-back loop is bounded.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Command
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sopgraph.nodes.company.common import ENGINEER, Role, design_brief, fence, latest, latest_files
from sopgraph.nodes.routing import edge_labels
from sopgraph.state.company import (
    REVIEW_CODE,
    WRITE_CODE,
    WRITE_DESIGN,
    WRITE_TASKS,
    CodeReview,
    CompanyState,
    FileJob,
    JobInput,
    SystemDesign,
    TaskPlan,
)
from sopgraph.state.context import Context
from sopgraph.state.pool import Subscription
from sopgraph.tools.lenient import Items

ROLE = Role(
    name="reviewer",
    profile="Grace, a senior code reviewer",
    goal="catch real bugs before testing",
    constraints=(
        "judge only the file shown; say LBTM only for a concrete bug, a missing part the task asks for, or code "
        "that cannot run, else LGTM; at most 3 short comments; answer only through the ReviewReply tool"
    ),
    watches=Subscription(kinds=frozenset({WRITE_CODE, WRITE_DESIGN, WRITE_TASKS, REVIEW_CODE}), own=True),
)

REVIEW = "{design}\nTask of {path}: {task}\n\nCode:\n{code}\n\nReview {path}: LGTM or LBTM, with comments."


class ReviewReply(BaseModel):
    """Code review verdict for one file."""

    model_config = ConfigDict(extra="ignore")

    verdict: Literal["LGTM", "LBTM"] = Field(description="LGTM: looks good to me. LBTM: looks bad, must be fixed.")
    comments: Items = Field(default_factory=list, description="Up to 3 short, concrete comments.")

    @field_validator("verdict", mode="before")
    @classmethod
    def _verdict(cls, value: Any) -> Any:
        text = str(value).strip().upper()
        for verdict in ("LBTM", "LGTM"):
            if verdict in text:
                return verdict
        if re.search(r"\b(BAD|FAIL\w*|REJECT\w*|FIX|WRONG|BUG\w*|NOT|NO)\b", text):
            return "LBTM"
        if re.search(r"\b(GOOD|PASS\w*|APPROVE\w*|OK|YES|FINE|CORRECT)\b", text):
            return "LGTM"
        return text


@edge_labels(review_code="LBTM", qa="LGTM")
def code_review(state: CompanyState, runtime: Runtime[Context]) -> Command[Literal["review_code", "qa"]]:
    seen = ROLE.view(state)
    plan = latest(seen, TaskPlan, [WRITE_TASKS])
    design = latest(seen, SystemDesign, [WRITE_DESIGN])
    assert plan is not None and design is not None
    code = latest_files(seen, [WRITE_CODE])
    reviewed = {(r.path, r.version) for m in seen if isinstance((r := m.payload), CodeReview)}
    max_rounds = int(state.get("max_review_rounds", 1))
    jobs: list[FileJob] = []
    for path in plan.task_list:
        doc = code.get(path)
        if doc is None or doc.version > max_rounds or (path, doc.version) in reviewed:
            continue
        task = plan.task_for(path)
        prompt = REVIEW.format(
            design=design_brief(design, diagrams=True, limit=1200),
            path=path,
            task=task.description if task and task.description else "as the design says",
            code=fence(path, doc.content, 6000),
        )
        jobs.append(FileJob(path=path, out_dir=state["out_dir"], version=doc.version, prompt=prompt))
    if not jobs:
        return Command(goto="qa")
    return Command(goto=ROLE.dispatch(state, runtime, "review_code", jobs))


def review_code(state: JobInput, runtime: Runtime[Context]) -> dict[str, Any]:
    job = state["job"]
    llm = ROLE.worker_gateway(runtime, job)
    reply = llm.structured(ReviewReply, job.prompt, system=ROLE.system)
    review = CodeReview(path=job.path, version=job.version, verdict=reply.verdict, comments=reply.comments[:3])
    message = ROLE.say(REVIEW_CODE, f"{job.path} v{job.version}: {review.verdict}", review, [ENGINEER])
    return {"pool": [message], **llm.usage_update()}
