"""The validation report: metrics of both sides, the gates and why, and every answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from genesys.runtime.store.db import utcnow
from genesys.tools.validation.gates import GateResult

# Bumped when metrics or gates change meaning, so that old reports can be told apart from new ones.
REPORT_VERSION = 1
BASE_MODEL = "base"
_ANSWER_CHARS = 400


class ItemResult(BaseModel):
    """One held-out item: the prompt, the facts checked, and the answers of both sides."""

    id: str
    prompt: str
    reference: str
    facts: list[str] = Field(description="What a right answer contains; empty: not scored.")
    candidate_answer: str
    baseline_answer: str
    candidate_right: bool | None = None
    baseline_right: bool | None = None
    candidate_judge: float | None = None
    baseline_judge: float | None = None


class HumanEvalTaskResult(BaseModel):
    """One HumanEval problem of the regression guard, on both sides."""

    task_id: str
    candidate_passed: bool
    baseline_passed: bool
    candidate_reason: str
    baseline_reason: str


class ValidationReport(BaseModel):
    """What the Validator decided about one candidate adapter, and why."""

    report_version: int = REPORT_VERSION
    candidate: str
    baseline: str | None = Field(description="The baseline adapter; None: the base model.")
    metrics: dict[str, dict[str, float]] = Field(description='{"candidate": {...}, "baseline": {...}}')
    gates: list[GateResult]
    passed: bool
    summary: str
    items: list[ItemResult] = Field(default_factory=list)
    humaneval: list[HumanEvalTaskResult] = Field(default_factory=list)
    error: str | None = Field(None, description="Why validation could not finish, when it could not.")
    quality_gates: dict[str, Any] = Field(default_factory=dict, description="The gate settings used.")
    created_at: datetime = Field(default_factory=utcnow)
    duration_s: float = 0.0

    @property
    def baseline_name(self) -> str:
        return self.baseline or BASE_MODEL

    @property
    def failed_gates(self) -> list[GateResult]:
        return [gate for gate in self.gates if not gate.passed]

    def to_markdown(self) -> str:
        """The report for people: verdict, gates, metrics, then each item's answers."""
        verdict = "validated" if self.passed else "not validated" if self.error else "rejected"
        lines = [
            f"# Validation of {self.candidate} against {self.baseline_name}: {verdict}",
            "",
            self.summary,
            "",
        ]
        if self.error:
            lines += [f"**Error:** {self.error}", ""]
        lines += [
            "## Gates",
            "",
            "| gate | result | value | threshold | why |",
            "| --- | --- | --- | --- | --- |",
        ]
        for gate in self.gates:
            lines.append(
                f"| {gate.name} | {'pass' if gate.passed else 'FAIL'} | {_number(gate.value)} | "
                f"{_number(gate.threshold)} | {_cell(gate.reason)} |"
            )
        names = sorted({name for side in self.metrics.values() for name in side})
        candidate, baseline = self.metrics.get("candidate", {}), self.metrics.get("baseline", {})
        lines += [
            "",
            "## Metrics",
            "",
            f"| metric | {self.candidate} (candidate) | {self.baseline_name} (baseline) |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {n} | {_number(candidate.get(n))} | {_number(baseline.get(n))} |" for n in names]
        if self.humaneval:
            lines += ["", "## HumanEval guard", "", "| task | candidate | baseline |", "| --- | --- | --- |"]
            for task in self.humaneval:
                lines.append(
                    f"| {task.task_id} | {_verdict(task.candidate_passed, task.candidate_reason)} | "
                    f"{_verdict(task.baseline_passed, task.baseline_reason)} |"
                )
        if self.items:
            lines += ["", "## Held-out answers", ""]
            for item in self.items:
                facts = ", ".join(f"`{f}`" for f in item.facts) or "none (not scored)"
                ours = f"**{self.candidate}** ({_right(item.candidate_right)})"
                theirs = f"**{self.baseline_name}** ({_right(item.baseline_right)})"
                lines += [
                    f"### {item.id}",
                    "",
                    f"**Prompt:** {_quote(item.prompt)}",
                    "",
                    f"**Reference:** {_quote(item.reference)}",
                    "",
                    f"**Required:** {facts}",
                    "",
                    f"{ours}: {_quote(item.candidate_answer)}",
                    "",
                    f"{theirs}: {_quote(item.baseline_answer)}",
                    "",
                ]
        return "\n".join(lines).rstrip() + "\n"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _verdict(passed: bool, reason: str) -> str:
    return "pass" if passed else f"fail ({_cell(reason)[:80]})"


def _right(value: bool | None) -> str:
    return "not scored" if value is None else "right" if value else "wrong"


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return (flat[:_ANSWER_CHARS] + " ...") if len(flat) > _ANSWER_CHARS else flat or "(empty)"
