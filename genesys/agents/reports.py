"""The reports the society's agents pass to each other, as pydantic models carried by autogen
``StructuredMessage``s (so that a stored cycle loads back exactly).

Each report says whether the cycle goes on (``proceed``) and why (``reason``, one sentence with the
numbers); the team's conditional edges read ``proceed`` and nothing else:

    AnalystReport    train or not, and why: how much usable data there is
    DatasetReport    the Curator's dataset version, its rows, whether it can be trained and validated on
    TrainingReport   the Trainer's run and the candidate adapter it registered
    ValidationSummary the Validator's verdict: passed, or the failed gates with their reasons
    DeployReport     the Deploy agent's rollout: started, waiting for an operator, or refused and why
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from autogen_agentchat.messages import BaseChatMessage, StructuredMessage
from pydantic import BaseModel, Field


class StepReport(BaseModel):
    """What every report has: whether the cycle goes on, and why."""

    step: ClassVar[str] = ""

    reason: str = Field(description="One sentence: why the cycle goes on or stops here, with the numbers.")

    @property
    def proceed(self) -> bool:  # pragma: no cover - every report overrides it
        raise NotImplementedError


class AnalystReport(StepReport):
    """The Analyst's decision: train now or not."""

    step: ClassVar[str] = "analyst"

    train: bool
    interactions: int = Field(0, description="Interactions in the store.")
    new_interactions: int = Field(0, description="Interactions since the previous cycle started.")
    analysed: int = Field(0, description="Interactions the Analyst scored and tagged in this cycle.")
    corrections: int = Field(0, description="Interactions with a usable correction.")
    premium: int = Field(0, description="Answers in the premium tier (high quality, judged positively).")
    discarded: int = Field(0, description="Answers in the discarded tier (poor quality).")
    usable_examples: int = Field(0, description="corrections + premium: what a dataset can teach.")
    min_examples: int = Field(0, description="The least usable_examples that justify training.")
    satisfaction: float | None = Field(
        None, description="Share of explicitly judged answers judged positive."
    )
    gaps: list[str] = Field(default_factory=list, description="Topics users correct most (knowledge gaps).")

    @property
    def proceed(self) -> bool:
        return self.train


class DatasetReport(StepReport):
    """The Curator's dataset version and whether it can be trained on."""

    step: ClassVar[str] = "curator"

    usable: bool
    version: str | None = None
    curated: bool = Field(False, description="Curated in this cycle (False: the latest version was reused).")
    train_rows: int = 0
    held_out_rows: int = Field(0, description="Held-out rows the Validator uses (see held_out_paths).")
    held_out_paths: list[str] = Field(
        default_factory=list, description="Their files: the test split, with a small validation split."
    )
    min_train_rows: int = 0
    splits: dict[str, int] = Field(default_factory=dict, description="SFT rows per split.")

    @property
    def proceed(self) -> bool:
        return self.usable


class TrainingReport(StepReport):
    """The Trainer's run and the candidate it registered."""

    step: ClassVar[str] = "trainer"

    succeeded: bool
    dataset_version: str | None = None
    run_id: str | None = None
    run_state: str | None = None
    candidate: str | None = Field(None, description="The adapter version registered as a candidate.")
    steps: int | None = None
    loss: float | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    adaptations: list[str] = Field(default_factory=list, description="Why hyperparameters were adapted.")
    seconds: float | None = None

    @property
    def proceed(self) -> bool:
        return self.succeeded and self.candidate is not None


class GateVerdict(BaseModel):
    name: str
    passed: bool
    reason: str


class ValidationSummary(StepReport):
    """The Validator's verdict on a candidate against production."""

    step: ClassVar[str] = "validator"

    passed: bool
    candidate: str | None = None
    baseline: str | None = Field(None, description="The production version compared with ('base': none).")
    state: str | None = Field(None, description="The candidate's registry state after the verdict.")
    gates: list[GateVerdict] = Field(default_factory=list)
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    error: str | None = Field(None, description="Why validation could not run, when it could not.")
    report_path: str | None = None

    @property
    def failed_gates(self) -> list[GateVerdict]:
        return [gate for gate in self.gates if not gate.passed]

    @property
    def proceed(self) -> bool:
        return self.passed


class DeployReport(StepReport):
    """The Deploy agent's rollout of a validated candidate."""

    step: ClassVar[str] = "deploy"

    started: bool
    candidate: str | None = None
    rollout_id: str | None = None
    rollout_state: str | None = Field(None, description="running, or awaiting_approval (deploy.approval).")
    traffic: float = Field(0.0, description="Share of users on the candidate now.")
    approval: str | None = None

    @property
    def proceed(self) -> bool:
        return self.started


AnalystMessage = StructuredMessage[AnalystReport]
DatasetMessage = StructuredMessage[DatasetReport]
TrainingMessage = StructuredMessage[TrainingReport]
ValidationMessage = StructuredMessage[ValidationSummary]
DeployMessage = StructuredMessage[DeployReport]

REPORT_MESSAGE_TYPES: list[type[BaseChatMessage]] = [
    AnalystMessage,
    DatasetMessage,
    TrainingMessage,
    ValidationMessage,
    DeployMessage,
]
REPORTS: tuple[type[StepReport], ...] = (
    AnalystReport,
    DatasetReport,
    TrainingReport,
    ValidationSummary,
    DeployReport,
)


def report_of(message: BaseChatMessage) -> StepReport | None:
    """The report a message carries, if it is one of the society's."""
    if isinstance(message, StructuredMessage) and isinstance(message.content, StepReport):
        return message.content
    return None


def proceeds(message: BaseChatMessage) -> bool:
    """The condition of every edge of the society: the report says go on."""
    report = report_of(message)
    return report is not None and report.proceed


Outcome = Literal[
    "no_data",
    "training_failed",
    "validation_failed",
    "rejected",
    "deployed",
    "awaiting_approval",
    "deploy_refused",
    "error",
]


def outcome_of(report: StepReport) -> tuple[Literal["completed", "stopped"], Outcome]:
    """The cycle's end state and outcome when ``report`` is the last one sent."""
    if isinstance(report, AnalystReport | DatasetReport):
        return "stopped", "no_data"
    if isinstance(report, TrainingReport):
        return "stopped", "training_failed"
    if isinstance(report, ValidationSummary):
        if report.passed:  # the Deploy agent did not speak (cannot happen in the society's graph)
            return "stopped", "deploy_refused"
        return "stopped", "validation_failed" if report.error else "rejected"
    if isinstance(report, DeployReport):
        if not report.started:
            return "stopped", "deploy_refused"
        return "completed", "awaiting_approval" if report.rollout_state == "awaiting_approval" else "deployed"
    return "stopped", "error"
