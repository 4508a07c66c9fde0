"""The architect: designs the program (files, classes, call flow) from the PRD."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from sopgraph.nodes.company import coverage, request
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
    "Design the program {files}. data_structures: a mermaid classDiagram with the "
    "classes, their fields and methods. call_flow: a mermaid sequenceDiagram of the main flow."
)
FILES = "in at most {max_files} Python files"
ONE_FILE = "as one Python file, {entry}, that holds all of it (its classes, functions and the command line)"
CURRENT = "Current design (update it; keep its files where they still fit):\n{design}\n\n"


def architect(state: CompanyState, runtime: Runtime[Context]) -> dict[str, Any]:
    seen = ROLE.view(state)
    prd = latest(seen, PRD, [WRITE_PRD])
    assert prd is not None, "the product manager publishes the PRD first"
    current = latest(seen, SystemDesign, [EXISTING_DESIGN])
    max_files = max(1, int(state.get("max_files", 5)))
    idea = idea_of(state, ROLE.name)  # to check the design against the idea's words, never in its prompt
    single = one_file(idea, state.get("one_file"), current)
    prompt = DESIGN.format(
        prd=prd_brief(prd),
        current=CURRENT.format(design=design_brief(current)) if current else "",
        files=ONE_FILE.format(entry=single) if single else FILES.format(max_files=max_files),
    )
    llm = ROLE.gateway(state, runtime)
    design, missing = coverage.structured_covering(llm, SystemDesign, prompt, ROLE.system, idea, "design")
    warnings = [f"design: {problem}" for problem in design.rejected]
    design, notes = runnable_files(design, single)
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


def one_file(idea: str, setting: bool | None, current: SystemDesign | None = None) -> str | None:
    """The one file that holds the whole program, or None to build the design's files.

    The rule, here and nowhere else: `setting` (the run's `one_file`: --one-file / --split-files, or
    `--set one_file=...` on a fork) decides when given; unset, a small idea gets one file: a request that
    spells its command line (`python main.py add TEXT`, request.is_small: at most 120 words), unless it
    changes a project whose design has several files. Why: given a sibling module as context, a small model
    copies it into main.py (the class, no commands); with one file there is nothing to copy. The file is
    the entry module the request names (else main.py); QA's tests come beside it, in tests/."""
    if setting is False:
        return None
    spelled = request.spelled_entries(idea)
    if setting is None and not (request.is_small(idea) and (current is None or len(current.file_list) <= 1)):
        return None
    return spelled[0] if spelled else "main.py"


def runnable_files(design: SystemDesign, single: str | None = None) -> tuple[SystemDesign, list[str]]:
    """The design's file list as the engineer can build it: `single` alone when one file holds the program
    (`one_file`); else Python modules only (a data file such as todo.json is the program's to create, not a
    module to write) and an entry module (main.py, added first unless the design names one of
    `program.ENTRY_STEMS`). A small model drops both; code puts them back."""
    if single is not None:
        if design.file_list == [single]:
            return design, []
        named = ", ".join(design.file_list) or "no file"
        note = f"design: one file, {single}, holds the whole program (a small idea; the design named {named})"
        return design.model_copy(update={"file_list": [single]}), [note]
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
