"""The project manager: breaks the design into per-file tasks in dependency order.

The model's plan is reconciled with the design before anyone uses it: files the design does not have are
dropped, files it forgot are added, dependencies are completed (an entry module imports the others; a file
that names another one's module uses it) and the order is made topological, so the engineer can always
write a file after the files it imports.
"""

from __future__ import annotations

import re
from typing import Any

from langgraph.runtime import Runtime

from sopgraph.nodes.company.common import Role, design_brief, latest, tasks_brief
from sopgraph.nodes.company.repository import write_docs
from sopgraph.state.company import (
    EXISTING_TASKS,
    WRITE_DESIGN,
    WRITE_TASKS,
    CompanyState,
    FileTask,
    SystemDesign,
    TaskPlan,
)
from sopgraph.state.context import Context
from sopgraph.state.pool import Message, Subscription
from sopgraph.tools.program import ENTRY_STEMS, stem

ROLE = Role(
    name="project_manager",
    profile="Eve, a project manager",
    goal="break the design into one clear task per file, in the order the files must be written",
    constraints=(
        "use exactly the files of the design; a file comes after the files it imports; answer only through "
        "the TaskPlan tool"
    ),
    watches=Subscription(kinds=frozenset({WRITE_DESIGN, EXISTING_TASKS})),
)

PLAN = (
    "Design:\n{design}\n\n{current}"
    "For every file give logic_analysis: what it defines (classes, functions) and depends_on: the project "
    "files it imports. task_list: all files, each one after the files it imports."
)
CURRENT = "Current tasks (update them for the new design):\n{tasks}\n\n"


def project_manager(state: CompanyState, runtime: Runtime[Context]) -> dict[str, Any]:
    seen = ROLE.view(state)
    design = latest(seen, SystemDesign, [WRITE_DESIGN])
    assert design is not None, "the architect publishes the design first"
    current = latest(seen, TaskPlan, [EXISTING_TASKS])
    prompt = PLAN.format(
        design=design_brief(design), current=CURRENT.format(tasks=tasks_brief(current)) if current else ""
    )
    llm = ROLE.gateway(state, runtime)
    plan, warnings = reconcile(llm.structured(TaskPlan, prompt, system=ROLE.system), design.file_list)
    message = Message(sender=ROLE.name, kind=WRITE_TASKS, content="tasks: " + " -> ".join(plan.task_list), payload=plan)
    write_docs(state, runtime, [message])
    return {"pool": [message], "warnings": warnings, **llm.usage_update()}


def reconcile(plan: TaskPlan, files: list[str]) -> tuple[TaskPlan, list[str]]:
    """The plan restricted to the design's files, completed, and in a dependency order."""
    warnings: list[str] = []
    tasks: dict[str, FileTask] = {}
    for task in plan.logic_analysis:
        if task.file not in files:
            warnings.append(f"tasks: dropped the analysis of {task.file!r}, which is not in the design")
        elif task.file not in tasks:
            tasks[task.file] = task
    for path in files:
        tasks.setdefault(path, FileTask(file=path))
    unknown = [f for f in plan.task_list if f not in files]
    if unknown:
        warnings.append(f"tasks: ignored {', '.join(unknown)} in the task list (not in the design)")

    entry = {f for f in files if stem(f) in ENTRY_STEMS}
    deps: dict[str, list[str]] = {}
    for path in files:
        declared = [d for d in tasks[path].depends_on if d in files and d != path]
        for other in files:  # "uses the todo module" -> depends on todo.py
            if other == path or other in declared or other in entry:
                continue
            if re.search(rf"\b{re.escape(stem(other))}\b", tasks[path].description, re.IGNORECASE):
                declared.append(other)
        if path in entry and not declared:
            declared = [f for f in files if f not in entry]
        deps[path] = [d for d in declared if not (path not in entry and d in entry)]

    preferred = [f for f in dict.fromkeys(plan.task_list) if f in files] + [f for f in files if f not in plan.task_list]
    order: list[str] = []
    remaining = list(preferred)
    while remaining:  # topological, keeping the model's order where it is consistent; a cycle breaks at the first
        pick = next((f for f in remaining if all(d in order for d in deps[f])), remaining[0])
        order.append(pick)
        remaining.remove(pick)
    position = {f: i for i, f in enumerate(order)}
    analysis = [
        FileTask(
            file=f,
            description=tasks[f].description,
            depends_on=[d for d in deps[f] if position[d] < position[f]],
        )
        for f in order
    ]
    cleaned = TaskPlan(
        required_packages=plan.required_packages,
        logic_analysis=analysis,
        task_list=order,
        shared_knowledge=plan.shared_knowledge,
    )
    return cleaned, warnings
