"""The software company graph: MetaGPT's SOP as a LangGraph state graph.

intake → product_manager → review_prd → architect → review_design → project_manager → engineer
(⇄ write_code, files in dependency order, independent ones in parallel) → code_review (⇄ review_code, LBTM
sends a file back to the engineer) → qa (⇄ write_test) → run_tests (sandbox) → pass: deliver; fail with
fix rounds left: debug → run_tests; else deliver, reporting that it gave up. review_prd and review_design
pause for a human only when asked to. Roles talk only through the message pool, with typed documents.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sopgraph.graphs.sop import SOPStateGraph, labelled, validate_input
from sopgraph.nodes.company.architect import architect
from sopgraph.nodes.company.engineer import debug, engineer, write_code
from sopgraph.nodes.company.human import STAGES, review_design, review_prd
from sopgraph.nodes.company.product_manager import product_manager
from sopgraph.nodes.company.project_manager import project_manager
from sopgraph.nodes.company.qa import after_tests, qa, run_tests, write_test
from sopgraph.nodes.company.repository import default_out_dir, deliver, intake, load_manifest, materialize
from sopgraph.nodes.company.reviewer import code_review, review_code
from sopgraph.state.company import CompanyState
from sopgraph.state.context import Context
from sopgraph.state.limits import MAX_IDEA_CHARS, checked_text

REVIEW_STAGES = tuple(STAGES)


ReviewPoint = Literal["prd", "design"]


class CompanyInput(BaseModel):
    """What a company run is asked. Validated before any node runs, whether from Python, the CLI or the
    LangGraph API (it is the graph's input schema, so Studio renders it as a form)."""

    model_config = ConfigDict(extra="forbid")

    idea: str = Field(
        min_length=1,
        max_length=MAX_IDEA_CHARS,
        description="A new product idea, or a change to the repository in out_dir.",
    )
    out_dir: str | None = Field(
        default=None, description="Where the repository is written (default .sopgraph/workspaces/<run id>)."
    )
    review: list[ReviewPoint] = Field(default_factory=list, description="Pause for a human after: prd, design.")
    max_debug: int = Field(default=3, ge=0, le=50, description="Fix rounds allowed after a failing test run.")
    max_files: int = Field(default=5, ge=1, le=24, description="Cap on the design's file list.")
    one_file: bool | None = Field(
        default=None,
        description="The whole program in one file (the entry module): true, false, or unset for a small idea "
        "(one that spells its command line, python main.py ..., in at most 120 words).",
    )
    max_review_rounds: int = Field(default=1, ge=0, le=10, description="Times code review may send a file back.")
    parallel: bool = Field(default=True, description="Write independent files (and reviews, tests) in parallel.")
    incremental: bool | None = Field(
        default=None, description="Update the repository in out_dir; unset: decide by whether it holds one."
    )
    test_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Limit of one sandboxed test run.")

    @field_validator("idea", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("review", mode="before")
    @classmethod
    def _points(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            return list(dict.fromkeys(v.strip().lower() for v in value if isinstance(v, str) and v.strip()))
        return value


def build_company_graph() -> StateGraph[CompanyState, Context, CompanyInput]:
    builder = SOPStateGraph(CompanyState, input_schema=CompanyInput, context_schema=Context)
    builder.add_node("intake", intake)
    builder.add_node("product_manager", product_manager)
    builder.add_node("review_prd", review_prd, metadata={"review point": "pauses with --review prd"})
    builder.add_node("architect", architect)
    builder.add_node("review_design", review_design, metadata={"review point": "pauses with --review design"})
    builder.add_node("project_manager", project_manager)
    builder.add_node("engineer", engineer)
    builder.add_node("write_code", write_code)
    builder.add_node("code_review", code_review)
    builder.add_node("review_code", review_code)
    builder.add_node("qa", qa)
    builder.add_node("write_test", write_test)
    builder.add_node("run_tests", run_tests)
    builder.add_node("debug", debug)
    builder.add_node("deliver", deliver)

    builder.add_edge(START, "intake")
    builder.add_edge("intake", "product_manager")
    builder.add_edge("product_manager", "review_prd")
    builder.add_edge("review_prd", "architect")
    builder.add_edge("architect", "review_design")
    builder.add_edge("review_design", "project_manager")
    builder.add_edge("project_manager", "engineer")
    builder.add_edge("write_code", "engineer")
    builder.add_edge("review_code", "engineer")
    builder.add_edge("write_test", "qa")
    builder.add_conditional_edges("run_tests", *labelled(after_tests))
    builder.add_edge("debug", "run_tests")
    builder.add_edge("deliver", END)
    return builder


def company_input(
    idea: str,
    *,
    out_dir: str | Path | None = None,
    review: Iterable[str] = (),
    max_debug: int = 3,
    max_files: int = 5,
    one_file: bool | None = None,
    max_review_rounds: int = 1,
    parallel: bool = True,
    incremental: bool | None = None,
    test_timeout_s: float = 60.0,
) -> CompanyState:
    """The graph input (checked against CompanyInput; a ValueError names the bad field). `out_dir` defaults
    to .sopgraph/workspaces/<run id>; an existing generated repository there is updated (incremental mode)
    unless `incremental=False`."""
    stages = [s.strip().lower() for s in review if s.strip()]
    unknown = sorted(set(stages) - set(REVIEW_STAGES))
    if unknown:
        raise ValueError(f"unknown review point(s) {', '.join(unknown)}; choose from {', '.join(REVIEW_STAGES)}")
    idea = checked_text("the requirement", idea)
    values = validate_input(
        CompanyInput,
        {
            "idea": idea,
            "out_dir": None if out_dir is None else str(Path(out_dir).expanduser().absolute()),
            "review": stages,
            "max_debug": max_debug,
            "max_files": max_files,
            "one_file": one_file,
            "max_review_rounds": max_review_rounds,
            "parallel": parallel,
            "incremental": incremental,
            "test_timeout_s": test_timeout_s,
        },
        "company",
    )
    state: CompanyState = {k: v for k, v in values.items() if v is not None or k == "incremental"}  # type: ignore[assignment]
    if "out_dir" in state and incremental is None:  # decided now: a replay of this input reads no later manifest
        state["incremental"] = load_manifest(state["out_dir"]) is not None
    return state


def checkpoint_files(
    values: dict[str, Any],
    context: Context,
    *,
    thread_id: str,
    branch: str | None = None,
    out_dir: str | None = None,
) -> Context:
    """Materialise a checkpoint's repository before a run continues from it; returns the context to run with.

    `branch` (replay, fork) gives the continuation a directory of its own (`out_dir`, else one beside the
    run's), so it never writes over the original run's repository; without it (resume) the run's own
    directory is brought back to the checkpoint (files a crashed step wrote after it are removed).
    """
    # a new branch sits beside the run's own directory (not beside an earlier branch's: names would nest)
    own = values.get("out_dir") if branch else None
    base = own or context.out_dir or values.get("out_dir") or str(default_out_dir(thread_id))
    target = Path(out_dir or (f"{base}-{branch}-{uuid.uuid4().hex[:6]}" if branch else base)).expanduser().absolute()
    if branch and target.is_dir() and any(target.iterdir()) and load_manifest(target) is None:
        raise ValueError(f"{target} is not empty and not a generated repository; choose another out_dir")
    if values.get("pool") or branch:
        materialize(values, str(target))
    return dataclasses.replace(context, out_dir=str(target)) if branch or context.out_dir else context


graph = build_company_graph().compile(name="company")
