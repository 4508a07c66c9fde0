"""pytest's JUnit report read back into test cases, and the short brief a model is shown about a test run.

The report is written by code under test (it runs inside pytest), so it is parsed defensively: absent,
oversized or entity-laden reports count as no report."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .base import SandboxResult
from .launcher import OUTPUT_MAX_BYTES

NO_TESTS_COLLECTED = 5
"""pytest's exit code when it collected no test (pytest.ExitCode.NO_TESTS_COLLECTED)."""


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class

    name: str
    outcome: str  # "passed" | "failed" | "error" | "skipped"
    message: str = ""
    details: str = ""
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class TestReport:
    __test__ = False

    passed: int
    failed: int
    errors: int
    skipped: int
    cases: list[TestCase]
    result: SandboxResult
    report_found: bool

    @property
    def all_passed(self) -> bool:
        return (
            self.report_found
            and self.passed > 0
            and self.failed == 0
            and self.errors == 0
            and self.result.exit_code == 0
            and not self.result.timed_out
        )

    def summary_for_model(self, max_chars: int = 2000, max_cases: int = 5, frame_lines: int = 10) -> str:
        """A short debugging brief: counts, why the run ended, and the trimmed failing assertions."""
        r = self.result
        lines = [f"Tests: {self.passed} passed, {self.failed} failed, {self.errors} errors, {self.skipped} skipped."]
        if r.timed_out:
            lines.append(
                f"The run was killed after {r.duration_s:.0f}s (wall-clock limit); "
                "a test probably hangs or loops forever."
            )
        elif r.limit_hit:
            lines.append(f"The run hit the sandbox's {r.limit_hit.replace('_', ' ')} limit.")
        if not self.report_found:
            lines.append(f"pytest produced no report (exit code {r.exit_code}). Output tail:")
            tail = (r.stdout.strip() + "\n" + r.stderr.strip()).strip()
            lines.append(_tail_lines(tail, frame_lines * 2))
        bad = [c for c in self.cases if c.outcome in ("failed", "error")]
        for case in bad[:max_cases]:
            lines.append(f"{case.outcome.upper()} {case.name}")
            body = _trim_traceback(case.details or case.message, frame_lines)
            lines.extend("  " + ln for ln in body.splitlines())
        if len(bad) > max_cases:
            lines.append(f"... and {len(bad) - max_cases} more failing tests.")
        text = "\n".join(lines)
        if len(text) > max_chars:
            marker = f"\n...[{len(text) - max_chars} more chars]"
            text = text[: max(0, max_chars - len(marker))] + marker
        return text


def parse_junit(data: bytes | None) -> list[TestCase] | None:
    if not data or len(data) > OUTPUT_MAX_BYTES or b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        return None  # absent, oversized, or trying entity tricks on our parser
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return None
    cases = []
    for tc in root.iter("testcase"):
        classname, name = tc.get("classname", ""), tc.get("name", "")
        outcome, message, details = "passed", "", ""
        for tag, label in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            el = tc.find(tag)
            if el is not None:
                outcome, message, details = label, el.get("message", ""), (el.text or "").strip()
                break
        line = tc.get("line")
        cases.append(
            TestCase(
                name=f"{classname}::{name}" if classname else name,
                outcome=outcome,
                message=message,
                details=details,
                file=tc.get("file"),
                line=int(line) + 1 if line and line.isdigit() else None,
            )
        )
    return cases


def _tail_lines(text: str, n: int) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-n:])


# Caret underlines, empty `E` lines and pytest's "-v" hints cost a model tokens and tell it nothing.
_NOISE = re.compile(r"^\s*$|^\s*[\^~]+\s*$|^E\s*$|^E\s+Use -v to get|^E\s+Full diff:")


def _trim_traceback(text: str, max_lines: int) -> str:
    """Keep where it failed and why: the last frames and every `E` (explanation) line, capped."""
    lines = [ln.rstrip() for ln in text.splitlines() if not _NOISE.match(ln)]
    if len(lines) <= max_lines:
        return "\n".join(lines)
    explain = [i for i, ln in enumerate(lines) if ln.startswith("E ")]
    start = max(0, (explain[0] if explain else len(lines)) - 4)
    kept = lines[start:][:max_lines]
    skipped = len(lines) - len(kept)
    return "\n".join(
        [f"...[{start} traceback lines above]..."] * bool(start)
        + kept
        + [f"...[{skipped - start} more lines]"] * bool(skipped - start > 0)
    )
