"""The company's documents as markdown: what the delivered repository's docs/ holds, and the text the
coverage check reads."""

from __future__ import annotations

from typing import Any

from sopgraph.state.company import PRD, SystemDesign, TaskPlan


def prd_markdown(prd: PRD, requirement: str = "") -> str:
    out = [f"# PRD: {prd.project_name}", ""]
    if requirement:
        out += ["## Original requirement", "", requirement, ""]
    out += ["## Product goals", "", *[f"- {g}" for g in prd.product_goals], ""]
    out += ["## User stories", "", *[f"- {s}" for s in prd.user_stories], ""]
    out += ["## Competitive analysis", "", *([f"- {c}" for c in prd.competitive_analysis] or ["- (none)"]), ""]
    out += ["## Requirement pool", "", "| priority | requirement |", "|---|---|"]
    out += [f"| {r.priority} | {r.text.replace('|', '/')} |" for r in prd.requirements]
    out += ["", "## UI notes", "", prd.ui_notes or "(none)", ""]
    out += ["## Open questions", "", *([f"- {q}" for q in prd.open_questions] or ["- (none)"]), ""]
    return "\n".join(out)


def design_markdown(design: SystemDesign) -> str:
    out = ["# System design", "", "## Implementation approach", "", design.implementation_approach, ""]
    out += ["## File list", "", *[f"- `{f}`" for f in design.file_list], ""]
    out += ["## Data structures and interfaces", "", "```mermaid", design.data_structures, "```", ""]
    out += ["## Program call flow", "", "```mermaid", design.call_flow, "```", ""]
    return "\n".join(out)


def tasks_markdown(plan: TaskPlan) -> str:
    out = ["# Tasks", "", "## Required packages", ""]
    out += [f"- {p}" for p in plan.required_packages] or ["- (standard library only)"]
    out += ["", "## Logic analysis", "", "| file | depends on | logic |", "|---|---|---|"]
    for t in plan.logic_analysis:
        deps = ", ".join(f"`{d}`" for d in t.depends_on) or "-"
        out.append(f"| `{t.file}` | {deps} | {t.description.replace('|', '/')} |")
    out += ["", "## Task list (dependency order)", "", *[f"{i}. `{f}`" for i, f in enumerate(plan.task_list, 1)]]
    out += ["", "## Shared knowledge", "", plan.shared_knowledge or "(none)", ""]
    return "\n".join(out)


def markdown(doc: Any) -> str:
    """Any company document as markdown (a PRD without its original requirement); others as their str()."""
    if isinstance(doc, PRD):
        return prd_markdown(doc)
    if isinstance(doc, SystemDesign):
        return design_markdown(doc)
    if isinstance(doc, TaskPlan):
        return tasks_markdown(doc)
    return str(doc)
