"""The architect: designs the program (files, classes, call flow) from the PRD."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from sopgraph.nodes.company import coverage
from sopgraph.nodes.company.common import Role, design_brief, idea_of, latest, prd_brief
from sopgraph.nodes.company.repository import write_docs
from sopgraph.state.company import (
    EXISTING_DESIGN,
    PRD,
    WRITE_DESIGN,
    WRITE_PRD,
    CompanyState,
    SystemDesign,
)
from sopgraph.state.context import Context
from sopgraph.state.pool import Message, Subscription
from sopgraph.tools import program

ROLE = Role(
    name="architect",
    profile="Bob, a software architect",
    goal="design a small, simple Python program that meets the PRD",
    constraints=(
        "Python standard library only; as few files as the job needs; plain module names named after what "
        "they do in this product, and main.py; no test files (QA writes tests); "
        "answer only through the SystemDesign tool"
    ),
    watches=Subscription(kinds=frozenset({WRITE_PRD, EXISTING_DESIGN})),
)

DESIGN = (
    "PRD:\n{prd}\n\n{current}"
    "Design the program in at most {max_files} Python files. data_structures: a mermaid classDiagram with the "
    "classes, their fields and methods. call_flow: a mermaid sequenceDiagram of the main flow."
)
CURRENT = "Current design (update it; keep its files where they still fit):\n{design}\n\n"


def architect(state: CompanyState, runtime: Runtime[Context]) -> dict[str, Any]:
    seen = ROLE.view(state)
    prd = latest(seen, PRD, [WRITE_PRD])
    assert prd is not None, "the product manager publishes the PRD first"
    current = latest(seen, SystemDesign, [EXISTING_DESIGN])
    max_files = max(1, int(state.get("max_files", 5)))
    prompt = DESIGN.format(
        prd=prd_brief(prd),
        current=CURRENT.format(design=design_brief(current)) if current else "",
        max_files=max_files,
    )
    llm = ROLE.gateway(state, runtime)
    idea = idea_of(state, ROLE.name)  # only to check the design against the idea's words, never in its prompt
    design, missing = coverage.structured_covering(llm, SystemDesign, prompt, ROLE.system, idea, "design")
    warnings = [f"design: {problem}" for problem in design.rejected]
    design, notes = runnable_files(design)
    warnings += notes
    warnings += [coverage.coverage_note("design", missing)] if missing else []
    if len(design.file_list) > max_files:
        dropped = design.file_list[max_files:]
        warnings.append(f"design: kept the first {max_files} files, dropped {', '.join(dropped)}")
        design = design.model_copy(update={"file_list": design.file_list[:max_files]})
    message = Message(
        sender=ROLE.name, kind=WRITE_DESIGN, content=f"design: {', '.join(design.file_list)}", payload=design
    )
    write_docs(state, runtime, [message])
    return {"pool": [message], "warnings": warnings, **llm.usage_update()}


def runnable_files(design: SystemDesign) -> tuple[SystemDesign, list[str]]:
    """The design's file list as the engineer can build it: Python modules only (a data file such as
    todo.json is the program's to create, not a module to write) and an entry module (main.py, added first
    unless the design names one of `program.ENTRY_STEMS`). A small model drops both; code puts them back."""
    notes: list[str] = []
    files = [f for f in design.file_list if f.endswith(".py")]
    dropped = [f for f in design.file_list if f not in files]
    if dropped:
        notes.append(f"design: dropped {', '.join(dropped)}: not Python modules (the program creates its data files)")
    if not any(program.stem(f) in program.ENTRY_STEMS for f in files):
        files.insert(0, "main.py")  # first, so a cap on the number of files keeps it
        notes.append("design: added main.py, the entry point the design left out")
    if files == design.file_list:
        return design, notes
    return design.model_copy(update={"file_list": files}), notes
