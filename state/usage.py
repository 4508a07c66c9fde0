"""The usage ledger: one record per model call, kept in state so a budget survives a resume."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Annotated

from langgraph.channels import DeltaChannel
from pydantic import BaseModel, ConfigDict, Field

from sopgraph.state.pool import SNAPSHOT_EVERY, append_unique


class UsageRecord(BaseModel):
    """What one model call cost."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    role: str
    model: str
    call: str = "text"
    """`text` or the name of the structured schema asked for."""
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    attempts: int = 1
    """Requests made, counting re-asks after an invalid structured reply."""
    ok: bool = True

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


UsageChannel = Annotated[list[UsageRecord], DeltaChannel(append_unique(UsageRecord), snapshot_frequency=SNAPSHOT_EVERY)]


class UsageTotals(BaseModel):
    calls: int = 0
    """Requests sent: a structured call that was re-asked counts each attempt."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def of(cls, records: Iterable[UsageRecord]) -> UsageTotals:
        totals = cls()
        for r in records:
            totals.calls += max(1, r.attempts)
            totals.input_tokens += r.input_tokens
            totals.output_tokens += r.output_tokens
            totals.cost_usd += r.cost_usd
            totals.latency_s += r.latency_s
        return totals


def totals_by(records: Iterable[UsageRecord], key: str = "role") -> dict[str, UsageTotals]:
    """Totals grouped by a record attribute (role or model)."""
    groups: dict[str, list[UsageRecord]] = {}
    for r in records:
        groups.setdefault(str(getattr(r, key)), []).append(r)
    return {name: UsageTotals.of(rs) for name, rs in groups.items()}
