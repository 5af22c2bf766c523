"""What the SDK's methods return: pydantic models of the server's answers.

They mirror the server's own models (``tests/client`` checks that no server field is missing) but
stand alone, so that ``import genesys.client`` stays light. Every model keeps fields it does not know
(``extra="allow"``), so a newer server's additions reach the caller instead of failing validation;
states and kinds are plain strings for the same reason, with their current values in the docs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class GenesysModel(BaseModel):
    """Base of the SDK's models: unknown fields are kept, not refused."""

    model_config = ConfigDict(extra="allow")


# --- health --------------------------------------------------------------------------------------


class Health(GenesysModel):
    """``GET /healthz``: the process answers."""

    status: str
    version: str


class Readiness(GenesysModel):
    """``GET /readyz``: whether the model is loaded and the store reachable (``ready``)."""

    status: str = Field(description="'ready' or 'not_ready'.")
    checks: dict[str, str] = Field(default_factory=dict, description="engine and store, each with its state.")
    engine: str | None = None
    model_version: str | None = Field(None, description="The version in production.")
    society: dict[str, Any] | None = Field(
        None, description="This replica's part in the society: role leader, standby or single."
    )

    @property
    def ready(self) -> bool:
        return self.status == "ready"


class ModelInfo(GenesysModel):
    """One entry of ``GET /v1/models``: ``genesys-local`` (A/B routed) or ``genesys-local@<version>``."""

    id: str
    object: str = "model"
    created: int
    owned_by: str = "genesys"
    root: str | None = None
    parent: str | None = None


# --- chat ----------------------------------------------------------------------------------------


class Usage(GenesysModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatResult(GenesysModel):
    """One answer of the assistant, with what feedback needs to name it."""

    interaction_id: str = Field(description="The answer's id: give it to feedback() or correct().")
    model_version: str = Field(description="The version that answered ('base': no adapter).")
    conversation_id: str | None = Field(
        None, description="Send it back to group the next turn with this one."
    )
    content: str = Field(description="The answer's text ('' when the model only called tools).")
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    usage: Usage | None = None
    model: str
    request_id: str | None = Field(None, description="Find the server's log lines of this request with it.")


# --- feedback and interactions -------------------------------------------------------------------


class Feedback(GenesysModel):
    """What was said about one answer: by a user (source ``explicit``), the IDE (``continue``) or the
    user's next message (``implicit``)."""

    interaction_id: str
    source: str = "explicit"
    signal: str
    thumbs: str | None = None
    rating: int | None = None
    correction: str | None = None
    fix_worked: bool | None = None
    comment: str | None = None
    evidence: str | None = None
    created_at: datetime
    updated_at: datetime


class Interaction(GenesysModel):
    """One stored exchange: what the IDE sent, what Genesys answered, and how."""

    id: str
    request_id: str | None = None
    conversation_id: str
    user: str | None = None
    endpoint: str
    request_messages: list[dict[str, Any]]
    context: dict[str, Any] = Field(default_factory=dict)
    answer: str
    tool_calls: list[dict[str, Any]] | None = None
    model_version: str
    ab_arm: str | None = None
    latency_ms: float
    ttft_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    status: str = Field(description="completed, error or cancelled.")
    error: str | None = None
    interaction_type: str
    category: str | None = None
    created_at: datetime
    completed_at: datetime


class IdeEvent(GenesysModel):
    """An IDE event (Continue's dev data) linked to an interaction."""

    id: int | None = None
    source: str
    name: str
    schema_version: str
    level: str
    profile_id: str | None = None
    session_id: str | None = None
    user: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    interaction_id: str | None = None
    link: str
    received_at: datetime


class InteractionDetail(GenesysModel):
    """``GET /v1/interactions/{id}``."""

    interaction: Interaction
    feedback: list[Feedback]
    ide_events: list[IdeEvent]


# --- analysis ------------------------------------------------------------------------------------


class Satisfaction(GenesysModel):
    judged: int = Field(description="Interactions with an explicit verdict (thumbs or rating).")
    positive: int
    rate: float | None = Field(description="positive / judged; None when nobody judged an answer.")
    target: float
    meets_target: bool | None


class Corrections(GenesysModel):
    interactions: int = Field(description="Interactions with a usable correction, from any source.")
    by_source: dict[str, int]


class GapSummary(GenesysModel):
    """A topic users keep correcting."""

    topic: str
    corrections: int
    interactions: int
    correction_rate: float
    key_terms: list[str]


class DatasetSummary(GenesysModel):
    version: str
    created_at: datetime
    kind: str = Field(description="'curated' (from interactions) or 'docs'.")
    topic: str | None = None
    rows: dict[str, int] = Field(description="SFT rows per split.")
    rebuilt_from: str | None = None
    reproduced: bool | None = None


class Analysis(GenesysModel):
    """``GET /v1/analysis`` (``genesys analyze``): what Genesys has learned from its use. Categories,
    tiers and gaps come from the Analyst's annotations, which each cycle brings up to date;
    ``pending_analysis`` counts the interactions they do not cover yet."""

    generated_at: datetime
    store: str
    empty: bool
    interactions: int
    first_at: datetime | None
    last_at: datetime | None
    by_type: dict[str, int]
    by_status: dict[str, int]
    analyzed: int
    pending_analysis: int
    by_category: dict[str, int]
    by_tier: dict[str, int]
    mean_quality: float | None
    satisfaction: Satisfaction
    corrections: Corrections
    gaps: list[GapSummary]
    datasets: list[DatasetSummary]


# --- monitoring ----------------------------------------------------------------------------------


class Kpi(GenesysModel):
    """One of the seed's KPIs now: its value against its target, over its window."""

    name: str
    value: float | None = Field(description="None when there are too few samples (status no_data).")
    target: float
    comparison: str = Field(description="'>': the value should reach the target; '<': stay under.")
    unit: str
    window: str
    status: str = Field(description="ok, warning, breached or no_data.")
    definition: str
    samples: int


class KpiReport(GenesysModel):
    """``GET /v1/kpis``."""

    data: list[Kpi]
    computed_at: datetime

    def get(self, name: str) -> Kpi:
        """The KPI ``name`` (e.g. ``user_satisfaction``); ``KeyError`` lists the names there are."""
        for kpi in self.data:
            if kpi.name == name:
                return kpi
        raise KeyError(f"no KPI {name!r}; there are: {', '.join(k.name for k in self.data)}")


class AlertAction(GenesysModel):
    """One automatic action an alert took, and how it went."""

    action: str = Field(description="retrain, rollback, notify or report.")
    event: str = Field(description="The change that ran it: the alert firing or resolving.")
    status: str = Field(description="done, skipped or failed.")
    detail: str
    at: datetime


class Alert(GenesysModel):
    """One alert of ``GET /v1/alerts``: a monitoring rule that fired (``kind``: performance_drop,
    critical_failure, training_needed, anomaly), with the actions it took."""

    id: str
    rule: str
    kind: str
    severity: str = Field(description="info, warning or critical.")
    state: str = Field(description="firing or resolved.")
    summary: str
    value: float | None = None
    threshold: float | None = None
    started_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None = None
    actions: list[AlertAction] = Field(default_factory=list)

    @property
    def firing(self) -> bool:
        return self.state == "firing"


# --- learning cycles -----------------------------------------------------------------------------

# A cycle in these states may still change; any other state is final.
ACTIVE_CYCLE_STATES = frozenset({"running", "interrupted"})


class Cycle(GenesysModel):
    """One learning cycle of the society (``state``: running, interrupted, completed, stopped, failed;
    ``outcome`` when it ended: no_data, training_failed, validation_failed, rejected, deployed,
    awaiting_approval, deploy_refused, error)."""

    id: str
    trigger: str
    requested_by: str
    reason: str
    mode: str
    state: str
    step: str | None = Field(None, description="The agent speaking now, or the last one that spoke.")
    outcome: str | None = None
    outcome_reason: str | None = Field(None, description="Why, in the words of the agent that ended it.")
    options: dict[str, Any] = Field(default_factory=dict)
    prompt_versions: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    results: dict[str, Any] = Field(
        default_factory=dict, description="What it produced: dataset_version, run_id, candidate, rollout_id."
    )
    progress: dict[str, Any] | None = None
    turns: int = 0
    resumes: int = 0
    owner: str | None = None
    interactions_at_start: int = 0
    created_at: datetime
    heartbeat_at: datetime
    ended_at: datetime | None = None

    @property
    def finished(self) -> bool:
        """It ended (completed, stopped or failed) and will not change any more."""
        return self.state not in ACTIVE_CYCLE_STATES


class CycleMessage(GenesysModel):
    """One message of a cycle: an agent's report (``chat``), a tool call or result (``event``), or a
    note of the runner (``note``)."""

    seq: int
    source: str
    type: str
    kind: str
    text: str
    payload: dict[str, Any]
    at: datetime


class CycleDetail(Cycle):
    """``GET /v1/cycles/{id}``: the cycle and every message of it, in order."""

    messages: list[CycleMessage]


class CycleList(GenesysModel):
    """``GET /v1/cycles``: newest first."""

    data: list[Cycle]
    count: int = Field(description="All cycles stored.")


# --- rollouts ------------------------------------------------------------------------------------


class Rollout(GenesysModel):
    """One rollout of a candidate adapter against production."""

    id: str
    candidate: str
    baseline: str
    state: str
    approval: str
    stage: int = 0
    stages: list[float]
    stage_seconds: list[float]
    extension_seconds: float = 0
    traffic: float = Field(0, description="Share of users on the candidate now.")
    created_by: str
    reason: str
    outcome: str | None = None
    last_evaluation: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None = None
    stage_started_at: datetime | None = None
    held_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime


class RolloutEvent(GenesysModel):
    """One audited step of a rollout."""

    rollout_id: str
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str
    stage: int
    traffic: float
    reason: str


class ArmStats(GenesysModel):
    arm: str
    model_version: str
    requests: int = 0
    errors: int = 0
    judged: int = 0
    positive: int = 0
    negative: int = 0
    corrected: int = 0
    latency_mean_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    satisfaction: float | None = None
    error_rate: float | None = None
    correction_rate: float | None = None


class AbEvaluation(GenesysModel):
    """What the arms of an A/B test say: continue, promote or rollback, and why."""

    action: str
    finding: str
    reasons: list[str]
    final: bool
    production: ArmStats
    candidate: ArmStats
    satisfaction_test: dict[str, Any] | None = None
    error_test: dict[str, Any] | None = None
    evaluated_at: datetime


class RolloutStatus(GenesysModel):
    """``GET /v1/rollout`` and the answer of every rollout action."""

    production: str = Field(description="The version in production ('base': the model without adapter).")
    backup: str | None
    rollout: Rollout | None = Field(description="The active rollout, else the most recent one.")
    events: list[RolloutEvent] = Field(default_factory=list)
    stage_ends_at: datetime | None = None
    test_ends_at: datetime | None = None
    evaluation: AbEvaluation | None = None
    summary: str


# --- the learning loop's set-up ------------------------------------------------------------------


class AgentSetup(GenesysModel):
    name: str
    settings_section: str | None
    specialization: str | None = None
    prompt_version: str = Field(description="Short hash of prompts/<name>.md in use; 'unavailable' if none.")


class SocietySetup(GenesysModel):
    available: bool = Field(description="The server runs the society.")
    running: bool = Field(description="Its background worker is alive.")
    mode: str
    llm_server: str | None
    agents: list[AgentSetup]
    warnings: list[str]


class TriggerSetup(GenesysModel):
    automatic: bool
    trigger_threshold: int | None
    poll_seconds: float
    interactions_since_last_cycle: int
    active_cycle: str | None
    last_cycle: str | None
    last_outcome: str | None


class DataPipelineSetup(GenesysModel):
    store: str
    interactions: int
    log_all_interactions: bool
    raw_export_dir: str
    raw_export_ready: bool
    vectors: str
    tag_categories: list[str]
    min_examples: int | None
    min_train_rows: int | None


class LearningSetup(GenesysModel):
    """``GET /v1/learning``: how the learning loop is set up in the server."""

    model: str
    society: SocietySetup
    triggers: TriggerSetup
    data_pipeline: DataPipelineSetup
