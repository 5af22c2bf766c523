"""One settings object for all of Genesys.

Read from ``configs/genesys.yaml`` (or the file named by ``GENESYS_CONFIG``), overridden by
``GENESYS_*`` environment variables (nested keys joined by ``__``, e.g.
``GENESYS_SERVER__PORT=8001``). Unknown keys, in the file or in the environment, are an error.

The file carries the seed's whole ``TRAINING_CONFIG`` (``data_collection``, ``autogen_agents``,
``training_pipeline``, ``quality_gates``) plus the ``server``, ``model``, ``storage``, ``auth`` and
``logging`` sections.
"""

from __future__ import annotations

import itertools
import os
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from genesys.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = REPO_ROOT / "configs" / "genesys.yaml"
ENV_PREFIX = "GENESYS_"
# Environment variables read outside the settings object (they locate it, or clients read them:
# GENESYS_API_KEY is the key `genesys rollout` sends, often exported in the shell that serves).
_LOCATOR_ENV = {"GENESYS_CONFIG", "GENESYS_API_KEY"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --- the seed's TRAINING_CONFIG -------------------------------------------------------------------


class DataCollection(_Section):
    log_all_interactions: bool = Field(True, description="Store every interaction, not only rated ones.")
    quality_threshold: float = Field(0.7, ge=0, le=1, description="Score at or above which data is premium.")
    discard_threshold: float = Field(
        0.4, ge=0, le=1, description="Score below which an answer is discarded (between the two: standard)."
    )
    context_window: int = Field(4096, gt=0, description="Largest prompt in tokens; longer ones get a 400.")
    paraphrases_per_correction: int = Field(
        4,
        ge=0,
        le=10,
        description="Rewrites of each corrected question the Curator adds to the training split, each with "
        "the correction as its answer (genesys.tools.paraphrase); 0: none.",
    )
    tag_categories: list[str] = Field(
        default_factory=lambda: [
            "coding",
            "debugging",
            "explanation",
            "architecture",
            "optimization",
            "testing",
        ]
    )

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> DataCollection:
        if self.discard_threshold > self.quality_threshold:
            raise ValueError("discard_threshold must not be above quality_threshold")
        return self


class AgentConfig(_Section):
    model: str = Field(
        "genesys-local",
        description="In llm mode, the model that thinks for this agent: model.name (genesys-local) is the "
        "served engine, or autogen_agents.llm.model when that server is set; any other name is a model of "
        "the autogen_agents.llm server.",
    )
    specialization: str
    trigger_threshold: int | None = Field(None, gt=0, description="Interactions between two cycles.")
    filter_criteria: list[str] | None = None
    lora_config: LoraConfig | None = None
    metrics: list[str] | None = None
    min_examples: int | None = Field(
        None,
        gt=0,
        description="Analyst: usable examples (corrected answers plus premium ones) a cycle needs to train; "
        "fewer stop the cycle with the reason.",
    )
    min_train_rows: int | None = Field(
        None, gt=0, description="Curator: SFT training rows a dataset version needs to be trained on."
    )


class LoraConfig(_Section):
    rank: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)


AgentConfig.model_rebuild()


def _default_agents() -> dict[str, AgentConfig]:
    return {
        "data_analyst": AgentConfig(
            specialization="data_quality_analysis", trigger_threshold=100, min_examples=4
        ),
        "data_curator": AgentConfig(
            specialization="dataset_preparation",
            filter_criteria=["relevance", "accuracy", "completeness"],
            min_train_rows=4,
        ),
        "trainer_agent": AgentConfig(specialization="model_training", lora_config=LoraConfig()),
        "validator_agent": AgentConfig(
            specialization="model_validation", metrics=["bleu", "rouge", "bertscore", "user_satisfaction"]
        ),
        "deploy_agent": AgentConfig(specialization="model_deployment"),
    }


class SocietyLlmConfig(_Section):
    """An OpenAI-compatible server (vLLM, ...) whose models think for the society's agents in llm mode."""

    base_url: str = Field(description="The server's OpenAI API, e.g. http://127.0.0.1:8001/v1.")
    model: str = Field(
        min_length=1, description="The model agents use when their own `model` is the served one."
    )
    api_key_env: str | None = Field(
        None, description="Environment variable holding the server's API key (never the key itself)."
    )
    timeout_s: float = Field(120, gt=0)
    max_tokens: int = Field(512, gt=0, description="Longest reply of an agent's model in one step.")
    temperature: float = Field(0.0, ge=0, le=2)


class AutogenAgents(_Section):
    data_analyst: AgentConfig = Field(default_factory=lambda: _default_agents()["data_analyst"])
    data_curator: AgentConfig = Field(default_factory=lambda: _default_agents()["data_curator"])
    trainer_agent: AgentConfig = Field(default_factory=lambda: _default_agents()["trainer_agent"])
    validator_agent: AgentConfig = Field(default_factory=lambda: _default_agents()["validator_agent"])
    deploy_agent: AgentConfig = Field(default_factory=lambda: _default_agents()["deploy_agent"])
    mode: Literal["policy", "llm"] = Field(
        "policy",
        description="policy: each agent decides in code (works with the embedded model); llm: each agent is "
        "an AssistantAgent driven by a model, with the same tools and its prompt from prompts/<agent>.md.",
    )
    llm: SocietyLlmConfig | None = Field(
        None, description="In llm mode, a server for the agents' models; unset: the served engine."
    )
    max_tool_iterations: int = Field(
        6, gt=0, le=50, description="In llm mode, the most tool-call rounds an agent takes in one turn."
    )
    schedule: bool = Field(
        True, description="`genesys serve` runs the society in the background (threshold triggers, resume)."
    )
    poll_seconds: float = Field(
        10, gt=0, description="How often the scheduler counts new interactions against trigger_threshold."
    )
    stale_after_seconds: float = Field(
        600,
        gt=0,
        description="A running cycle whose process has not reported for this long is taken over and resumed.",
    )
    lease_seconds: float = Field(
        30,
        gt=0,
        description="Replicas sharing a database elect one to run the society (threshold triggers, "
        "resumes): its lease lasts this long and is renewed every third of it; when the leader dies, "
        "another replica takes over once the lease has expired.",
    )


class TrainingPipeline(_Section):
    batch_size: int = Field(4, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    epochs: int = Field(3, gt=0)
    gradient_accumulation: int = Field(8, gt=0)
    warmup_steps: int = Field(100, ge=0)
    evaluation_strategy: Literal["steps", "epoch", "no"] = "steps"
    eval_steps: int = Field(500, gt=0)
    save_strategy: Literal["steps", "epoch", "no"] = "epoch"
    logging_steps: int = Field(100, gt=0)
    corrective_stage: Literal["none", "dpo", "kto"] = Field(
        "none", description="After SFT: DPO on (correction, original) pairs, KTO on thumbs, or none."
    )
    replay_ratio: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Rows of the serving model's own answers to general coding prompts trained beside "
        "the corrections, as a share of the training rows (genesys.tools.training.replay); 0 turns it off "
        "(the default: with adapter_scope, requests far from the corrections do not reach the adapter, and "
        "replay cost learned facts).",
    )
    replay_max_tokens: int = Field(160, gt=0, description="Longest replayed answer, in tokens.")
    replay_loss: Literal["ce", "kl"] = Field(
        "ce",
        description="Replay rows trained by cross-entropy on their tokens ('ce') or by the KL divergence "
        "from the model without the adapter ('kl'), which only pulls back what drifted.",
    )
    adapter_scope: bool = Field(
        True,
        description="Give each new adapter a scope (genesys.runtime.adapter_scope): it answers requests "
        "close to its training questions, the base model the rest.",
    )
    adapter_scope_threshold: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Least MiniLM cosine similarity to a training question that is in an adapter's scope; "
        "None: calibrated from the training rows and the general replay prompts.",
    )


ValidationMetric = Literal["bleu", "rouge_l", "bertscore_f1", "reference_pass_rate", "judge_score"]
# The regression guard's fixed HumanEval subset: the embedded SmolLM2 passes 10 of these 20 (measured
# in genesys.tools.validation.humaneval_guard), so a candidate has something to lose and to gain.
DEFAULT_HUMANEVAL_PROBLEMS = [
    f"HumanEval/{n}" for n in (2, 7, 8, 13, 15, 16, 22, 23, 27, 28, 29, 30, 35, 42, 45, 48, 52, 53, 55, 60)
]


class JudgeConfig(_Section):
    base_url: str = Field(description="An OpenAI-compatible server that serves the judge model.")
    model: str = Field(min_length=1, description="The judge model's name on that server.")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the judge's API key (never the key itself)."
    )
    tolerance: float = Field(
        0.05, ge=0, le=1, description="Largest allowed drop of the judge score (in [0, 1]) from the baseline."
    )
    timeout_s: float = Field(60, gt=0)


class QualityGates(_Section):
    minimum_improvement: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Absolute gain of the primary metric over the baseline that a candidate needs (0.05 = "
        "5 points of a fraction); absolute, since a baseline of 0 makes a relative gain meaningless.",
    )
    validation_score_threshold: float = Field(
        0.8, ge=0, le=1, description="Least value of score_metric the candidate must reach."
    )
    user_satisfaction_threshold: float = Field(0.85, ge=0, le=1)
    a_b_test_duration_hours: float = Field(24, gt=0)
    rollback_on_degradation: bool = True
    primary_metric: ValidationMetric = Field(
        "reference_pass_rate",
        description="The metric minimum_improvement applies to; reference_pass_rate: answers that contain "
        "the reference's required facts.",
    )
    score_metric: ValidationMetric = Field(
        "bertscore_f1",
        description="The metric validation_score_threshold applies to; bertscore_f1: answers close in "
        "meaning to the references (MiniLM token similarity).",
    )
    guard_tolerance: float = Field(
        0.01, ge=0, le=1, description="Largest allowed drop of the HumanEval pass rate from the baseline."
    )
    humaneval_problems: list[str] = Field(
        default_factory=lambda: list(DEFAULT_HUMANEVAL_PROBLEMS),
        description="The fixed HumanEval subset of the regression guard (task ids).",
    )
    humaneval_timeout_s: float = Field(10, gt=0, description="Wall-clock limit of one HumanEval check.")
    humaneval_memory_mb: int = Field(512, ge=64, description="Address-space limit of one HumanEval check.")
    humaneval_max_tokens: int = Field(300, gt=0, description="Longest generated HumanEval completion.")
    max_tokens: int = Field(256, gt=0, description="Longest answer generated for a held-out prompt.")
    judge: JudgeConfig | None = Field(
        None, description="An LLM judge scoring answers against references; off when unset."
    )

    @field_validator("humaneval_problems")
    @classmethod
    def _humaneval_ids(cls, value: list[str]) -> list[str]:
        bad = [task for task in value if not (task.startswith("HumanEval/") and task[10:].isdigit())]
        if bad:
            raise ValueError(f"not HumanEval task ids: {', '.join(bad)} (expected 'HumanEval/<n>')")
        if len(set(value)) != len(value):
            raise ValueError("a HumanEval task is listed twice")
        return value

    @model_validator(mode="after")
    def _judge_metric_needs_a_judge(self) -> QualityGates:
        for key in ("primary_metric", "score_metric"):
            if getattr(self, key) == "judge_score" and self.judge is None:
                raise ValueError(f"{key} judge_score needs a judge (quality_gates.judge)")
        return self


class DeployConfig(_Section):
    """How the Deploy agent rolls a validated adapter out: A/B test, gradual switch, rollback.

    The rollout lasts ``quality_gates.a_b_test_duration_hours``, split evenly over ``stages`` unless
    ``stage_hours`` names each stage's length (24 h over 20%, 50%, 100%: 8 h each).
    """

    approval: Literal["auto", "operator"] = Field(
        "auto", description="auto: a rollout starts at once; operator: it waits for an operator's approval."
    )
    ab_traffic: float = Field(
        0.2, gt=0, le=1, description="Share of users (stable hash) the candidate gets in the A/B test."
    )
    stages: list[float] = Field(
        default_factory=lambda: [0.2, 0.5, 1.0],
        description="Candidate traffic at each stage, starting at ab_traffic and ending at 1.0.",
    )
    stage_hours: list[float] | None = Field(
        None, description="Length of each stage; default: a_b_test_duration_hours split evenly."
    )
    extension_hours: float = Field(
        24,
        ge=0,
        description="After the last stage, how long the test may run on to reach min_samples_per_arm; "
        "then it ends inconclusive and the candidate is rolled back.",
    )
    min_samples_per_arm: int = Field(
        100, ge=1, description="Judged answers (positive or negative) each arm needs before a test."
    )
    min_requests_for_errors: int = Field(
        50, ge=1, description="Requests the candidate arm needs before its error rate is compared."
    )
    significance: float = Field(
        0.05, gt=0, lt=1, description="alpha of the one-sided two-proportion z-tests (satisfaction, errors)."
    )
    max_degradation: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Satisfaction drop (absolute) tolerated; a significant larger drop is a degradation.",
    )
    error_rate_spike: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Rise of the candidate's error rate over production's (absolute) that rolls it back "
        "when significant.",
    )
    tick_seconds: float = Field(60, gt=0, description="How often the server evaluates a rollout.")
    drain_seconds: float = Field(
        30,
        ge=0,
        description="How long an adapter no longer routed to stays loaded (requests routed to it finish).",
    )

    @model_validator(mode="after")
    def _stages_make_sense(self) -> DeployConfig:
        stages = self.stages
        if not stages or any(not 0 < share <= 1 for share in stages):
            raise ValueError("stages must be shares of users in (0, 1]")
        if any(later <= earlier for earlier, later in itertools.pairwise(stages)):
            raise ValueError("stages must increase")
        if stages[-1] != 1.0:
            raise ValueError("the last stage must be 1.0 (every user on the candidate)")
        if abs(stages[0] - self.ab_traffic) > 1e-9:
            raise ValueError(f"stages must start at ab_traffic ({self.ab_traffic}), the A/B test's share")
        if self.stage_hours is not None:
            if len(self.stage_hours) != len(stages):
                raise ValueError("stage_hours needs one length per stage")
            if any(hours <= 0 for hours in self.stage_hours):
                raise ValueError("stage_hours must be positive")
        return self


# --- alerts (the seed's "Sistema de Alertas" and its automatic actions) ------------------------------

AlertAction = Literal["retrain", "rollback", "notify", "report"]
KpiAlertStatus = Literal["warning", "breached"]


def _actions(*names: AlertAction) -> Any:
    """A default_factory for a kind's actions."""

    def make() -> list[AlertAction]:
        return list(names)

    return make


def _breached() -> list[KpiAlertStatus]:
    return ["breached"]


class _AlertRule(_Section):
    enabled: bool = Field(True, description="Evaluate the rules of this kind.")
    actions: list[AlertAction] = Field(
        default_factory=list,
        description="What Genesys does when an alert of this kind fires: retrain (start a learning cycle, "
        "trigger 'alert'), rollback (roll the rollout in progress back), notify (webhook and log), report "
        "(a JSON and a Markdown file under <data_dir>/metrics/alerts/).",
    )

    @field_validator("actions")
    @classmethod
    def _unique_actions(cls, value: list[AlertAction]) -> list[AlertAction]:
        if len(set(value)) != len(value):
            raise ValueError("an action is listed twice")
        return value


class PerformanceDropAlerts(_AlertRule):
    """Performance drop: a KPI breached, or the p95 latency of recent answers over a threshold."""

    actions: list[AlertAction] = Field(default_factory=_actions("retrain", "notify"))
    kpis: list[str] = Field(
        default_factory=lambda: ["success_rate", "response_time", "user_satisfaction"],
        description="KPIs (GET /v1/kpis names) whose status fires an alert.",
    )
    kpi_statuses: list[KpiAlertStatus] = Field(
        default_factory=_breached, description="The KPI statuses that fire."
    )
    kpi_window_hours: float = Field(24, gt=0, description="The KPIs' window.")
    kpi_min_samples: int = Field(20, ge=1, description="Fewer samples: the KPI has no data, nothing fires.")
    p95_latency_seconds: float = Field(
        10,
        gt=0,
        description="p95 of the completed answers' latency over latency_window_minutes above which "
        "an alert fires.",
    )
    latency_window_minutes: float = Field(15, gt=0)
    latency_min_samples: int = Field(10, ge=1, description="Completed answers the window needs.")

    @field_validator("kpis")
    @classmethod
    def _known_kpis(cls, value: list[str]) -> list[str]:
        known = {
            "success_rate",
            "response_time",
            "user_satisfaction",
            "learning_rate",
            "knowledge_coverage",
            "technical_precision",
        }
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown KPI {', '.join(unknown)} (one of {', '.join(sorted(known))})")
        return value


class CriticalFailureAlerts(_AlertRule):
    """Critical failures: an error-rate spike, a failed training run, an automatic rollback."""

    actions: list[AlertAction] = Field(default_factory=_actions("rollback", "notify"))
    error_rate: float = Field(
        0.1, gt=0, le=1, description="Share of failed requests over window_minutes above which it fires."
    )
    window_minutes: float = Field(15, gt=0)
    min_requests: int = Field(10, ge=1, description="Ended requests the window needs.")
    lookback_hours: float = Field(
        24, gt=0, description="A failed training run or an automatic rollback fires for this long after it."
    )


class TrainingNeededAlerts(_AlertRule):
    """Training needed: enough new corrections since the last learning cycle started."""

    actions: list[AlertAction] = Field(default_factory=_actions("notify"))
    corrections: int = Field(
        20, ge=1, description="Corrected answers (explicit or implicit) since the last cycle started."
    )


class AnomalyAlerts(_AlertRule):
    """Anomalies: request volume or latency of the last window far from the baseline before it."""

    actions: list[AlertAction] = Field(default_factory=_actions("report", "notify"))
    window_minutes: float = Field(15, gt=0, description="The recent window.")
    baseline_hours: float = Field(24, gt=0, description="The period before the window it is compared to.")
    volume_factor: float = Field(
        3,
        gt=1,
        description="Requests in the window above factor x (or below 1/factor x) the baseline's "
        "mean per window.",
    )
    min_baseline_requests: float = Field(
        5, gt=0, description="The baseline's mean requests per window must reach this to judge volume."
    )
    latency_factor: float = Field(
        2, gt=1, description="Median latency of the window above factor x the baseline's median."
    )
    min_latency_samples: int = Field(10, ge=1, description="Completed answers each period needs.")


class AlertsConfig(_Section):
    """Alert rules evaluated in the server's background, deduplicated and stored (GET /v1/alerts)."""

    enabled: bool = Field(True, description="`genesys serve` evaluates the rules in the background.")
    evaluate_seconds: float = Field(60, gt=0, description="How often the rules are evaluated.")
    webhook_url: str | None = Field(
        None,
        description="Receives each firing and resolved alert as JSON (Slack-compatible); unset: logs only.",
    )
    webhook_timeout_s: float = Field(5, gt=0)
    performance_drop: PerformanceDropAlerts = Field(default_factory=PerformanceDropAlerts)
    critical_failure: CriticalFailureAlerts = Field(default_factory=CriticalFailureAlerts)
    training_needed: TrainingNeededAlerts = Field(default_factory=TrainingNeededAlerts)
    anomaly: AnomalyAlerts = Field(default_factory=AnomalyAlerts)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return value


# --- server, model, storage, auth, logging --------------------------------------------------------


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, description="Larger request bodies get a 413.")
    cors_origins: list[str] = Field(default_factory=list)


class LlamaCppConfig(_Section):
    n_threads: int | None = Field(None, gt=0, description="CPU threads; default: all cores.")
    n_batch: int = Field(512, gt=0)
    max_loaded_models: int = Field(4, gt=0, description="Adapter models held in memory at once.")


class TransformersConfig(_Section):
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"


class VllmConfig(_Section):
    base_url: str = "http://127.0.0.1:8001/v1"
    api_key: SecretStr | None = None
    served_model: str | None = Field(None, description="vLLM's name for the base model; default: asked.")
    timeout_s: float = Field(120, gt=0)


class ModelConfig(_Section):
    engine: Literal["llamacpp", "transformers", "vllm"] = "llamacpp"
    name: str = Field("genesys-local", description="The model id clients send and /v1/models lists.")
    path: Path | None = Field(
        None, description="A GGUF file or a Hugging Face model directory; default: the embedded SmolLM2."
    )
    max_tokens: int = Field(512, gt=0, description="Default completion length when a request sets none.")
    temperature: float = Field(0.2, ge=0, le=2)
    seed: int | None = None
    llamacpp: LlamaCppConfig = Field(default_factory=LlamaCppConfig)
    transformers: TransformersConfig = Field(default_factory=TransformersConfig)
    vllm: VllmConfig = Field(default_factory=VllmConfig)


class StorageConfig(_Section):
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in the data dir.")
    chroma_url: str | None = Field(None, description="A Chroma server; default: embedded in the data dir.")
    embedding_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto",
        description="What runs MiniLM (tagging, dedupe, docs): onnx (ONNX Runtime float32, exported once "
        "into <data_dir>/cache/models: torch's vectors within cosine 0.99999), onnx-int8 (8-bit weights: "
        "the fastest that keeps float32's categories, the tagging embedding near ties again in float32; "
        "vectors within cosine 0.998; genesys bench ingest's default) or torch; auto = onnx where "
        "onnxruntime loads.",
    )


Role = Literal["user", "operator", "admin"]
_PLACEHOLDER_KEYS = {"changeme", "change-me", "secret", "password", "your-api-key", "xxx", "todo"}


class ApiKey(_Section):
    name: str
    role: Role = "user"
    key: SecretStr

    @field_validator("key")
    @classmethod
    def _real_key(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw.lower() in _PLACEHOLDER_KEYS or raw.lower().startswith("your"):
            raise ValueError("API key is a placeholder; set a real secret")
        if len(raw) < 16:
            raise ValueError("API key must be at least 16 characters")
        return value


class AuthConfig(_Section):
    keys: list[ApiKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> AuthConfig:
        seen = [k.key.get_secret_value() for k in self.keys]
        if len(seen) != len(set(seen)):
            raise ValueError("the same API key is listed twice")
        return self


class DocsConfig(_Section):
    """Local documentation (``genesys docs add``) and what the assistant retrieves from it."""

    # Chroma's rule for collection names: 3-63 letters, digits, ".", "_" or "-", alphanumeric ends.
    COLLECTION_NAME: ClassVar[str] = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$"

    collection: str = Field(
        "docs", pattern=COLLECTION_NAME, description="Chroma collection of the indexed docs."
    )
    retrieval: bool = Field(True, description="Put relevant chunks into the assistant's context.")
    top_k: int = Field(3, ge=1, le=20, description="At most this many chunks per request.")
    min_similarity: float = Field(
        0.4, ge=0, le=1, description="Cosine similarity (MiniLM) a chunk needs to the user's question."
    )
    max_context_tokens: int = Field(600, gt=0, description="Token budget of the retrieved chunks.")
    chunk_tokens: int = Field(300, ge=50, le=2000, description="Largest chunk when indexing, in tokens.")
    chunk_overlap_tokens: int = Field(40, ge=0, description="Text repeated between consecutive chunks.")

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> DocsConfig:
        if self.chunk_overlap_tokens * 2 > self.chunk_tokens:
            raise ValueError("chunk_overlap_tokens must be at most half of chunk_tokens")
        return self


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_logs: bool = Field(True, alias="json")


class Settings(BaseSettings):
    """Everything Genesys reads from configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    data_dir: Path = Field(Path("data"), description="Where the store, datasets and adapters live.")
    server: ServerConfig = Field(default_factory=ServerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    docs: DocsConfig = Field(default_factory=DocsConfig)
    data_collection: DataCollection = Field(default_factory=DataCollection)
    autogen_agents: AutogenAgents = Field(default_factory=AutogenAgents)
    training_pipeline: TrainingPipeline = Field(default_factory=TrainingPipeline)
    quality_gates: QualityGates = Field(default_factory=QualityGates)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Priority: explicit arguments, then the environment, then the YAML file.
        return (init_settings, env_settings, _YamlSource(settings_cls))

    @model_validator(mode="after")
    def _resolve_data_dir(self) -> Settings:
        if not self.data_dir.is_absolute():
            object.__setattr__(self, "data_dir", (Path.cwd() / self.data_dir).resolve())
        return self

    @cached_property
    def database_url(self) -> str:
        return self.storage.database_url or f"sqlite:///{self.data_dir / 'genesys.db'}"

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth.keys)


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML config file; a missing default file means all defaults."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return load_config_file(config_path())


def config_path() -> Path:
    return Path(os.environ.get("GENESYS_CONFIG", str(DEFAULT_CONFIG_PATH)))


def load_config_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        if path == DEFAULT_CONFIG_PATH:
            return {}
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


def _unknown_env_keys() -> list[str]:
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields} | _LOCATOR_ENV
    unknown = []
    for var in os.environ:
        if not var.startswith(ENV_PREFIX) or var in _LOCATOR_ENV:
            continue
        head = var.split("__", 1)[0]
        if head not in known:
            unknown.append(var)
    return sorted(unknown)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; raises ``ConfigError`` with one readable line on any mistake."""
    from pydantic import ValidationError

    unknown = _unknown_env_keys()
    if unknown:
        raise ConfigError(f"unknown setting in the environment: {', '.join(unknown)}")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
