"""Prometheus metrics (prometheus-client), in a registry of the app's own.

Names carry their unit and ``_total`` for counters; label values are bounded: endpoints are the
routes Genesys serves (anything else is ``other``), model versions and A/B arms come from the
registry and router, statuses from a fixed set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from genesys.runtime.store import Interaction, RolloutState, RunState, Store

CONTENT_TYPE = CONTENT_TYPE_LATEST
KPI_STATUSES = ("ok", "warning", "breached", "no_data")
RUN_STATES: tuple[RunState, ...] = get_args(RunState)
ROLLOUT_STATES: tuple[RolloutState, ...] = get_args(RolloutState)
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
KNOWN_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/fim/completions",
        "/v1/models",
        "/v1/feedback",
        "/v1/continue/events",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/rollout",
        "/v1/rollout/start",
        "/v1/rollout/approve",
        "/v1/rollout/reject",
        "/v1/rollout/hold",
        "/v1/rollout/resume",
        "/v1/rollout/rollback",
        "/v1/kpis",
        "/v1/alerts",
        "/v1/dashboard/snapshot",
        "/dashboard",
    }
)


def path_label(path: str) -> str:
    if path in KNOWN_PATHS:
        return path
    if path.startswith("/v1/interactions/"):
        return "/v1/interactions/{id}"
    return "other"


class Metrics:
    """The app's metrics; observe through the methods, export with ``render``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "genesys_http_requests_total",
            "HTTP requests by route and status code.",
            ["path", "code"],
            registry=r,
        )
        self.http_duration = Histogram(
            "genesys_http_request_duration_seconds",
            "Time to answer an HTTP request (to the last byte for streams).",
            ["path"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )
        self.generations = Counter(
            "genesys_generations_total",
            "Answers generated, by endpoint, model version, A/B arm and status.",
            ["endpoint", "model_version", "arm", "status"],
            registry=r,
        )
        self.generation_seconds = Histogram(
            "genesys_generation_duration_seconds",
            "Time from request to the end of the answer.",
            ["endpoint", "model_version", "arm"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft_seconds = Histogram(
            "genesys_time_to_first_token_seconds",
            "Time from request to the first generated text.",
            ["endpoint", "model_version", "arm"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "genesys_tokens_total",
            "Tokens processed, by kind (prompt or completion).",
            ["kind", "model_version", "arm"],
            registry=r,
        )
        self.adapter_scope = Counter(
            "genesys_adapter_scope_total",
            "Requests routed to a version's adapter, by whether its scope sent them to the adapter or to "
            "the base model.",
            ["model_version", "decision"],
            registry=r,
        )
        self.engine_ready = Gauge("genesys_engine_ready", "1 when the model is loaded.", registry=r)
        self.ab_traffic = Gauge(
            "genesys_ab_traffic_share",
            "Share of users the A/B router sends to each arm (the candidate's is 0 without a rollout).",
            ["arm", "model_version"],
            registry=r,
        )
        self.kpi_value = Gauge(
            "genesys_kpi_value",
            "Each KPI's value as GET /v1/kpis last computed it (ratios, seconds, points).",
            ["kpi"],
            registry=r,
        )
        self.kpi_status = Gauge(
            "genesys_kpi_status",
            "1 for each KPI's status (ok, warning, breached, no_data) as GET /v1/kpis last computed it.",
            ["kpi", "status"],
            registry=r,
        )
        self._kpis_with_value: set[str] = set()

    def observe_interaction(self, interaction: Interaction) -> None:
        labels = (interaction.endpoint, interaction.model_version, interaction.ab_arm or "none")
        self.generations.labels(*labels, interaction.status).inc()
        self.generation_seconds.labels(*labels).observe(interaction.latency_ms / 1000)
        if interaction.ttft_ms is not None:
            self.ttft_seconds.labels(*labels).observe(interaction.ttft_ms / 1000)
        self.tokens.labels("prompt", *labels[1:]).inc(interaction.prompt_tokens)
        self.tokens.labels("completion", *labels[1:]).inc(interaction.completion_tokens)

    def observe_adapter_scope(self, version: str, similarity: float, applied: bool) -> None:
        self.adapter_scope.labels(version, "adapter" if applied else "base").inc()

    def observe_split(self, production: str, candidate: str | None, traffic: float) -> None:
        """The A/B router's arms now; a version that no longer serves leaves the gauge."""
        self.ab_traffic.clear()
        share = traffic if candidate is not None else 0.0
        self.ab_traffic.labels("production", production).set(1.0 - share)
        if candidate is not None:
            self.ab_traffic.labels("candidate", candidate).set(share)

    def observe_kpi(self, name: str, value: float | None, status: str) -> None:
        """One KPI as ``GET /v1/kpis`` last computed it; a KPI without data has no value sample."""
        if value is not None:
            self.kpi_value.labels(name).set(value)
            self._kpis_with_value.add(name)
        elif name in self._kpis_with_value:
            self.kpi_value.remove(name)
            self._kpis_with_value.discard(name)
        for state in KPI_STATUSES:
            self.kpi_status.labels(name, state).set(1 if state == status else 0)

    def observe_http(self, path: str, status: int, seconds: float) -> None:
        label = path_label(path)
        self.http_requests.labels(label, str(status)).inc()
        self.http_duration.labels(label).observe(seconds)

    def watch_store(self, store: Store) -> None:
        """Export what the store knows (every replica's data) at each scrape."""
        self.registry.register(_StoreCollector(store))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StoreCollector(Collector):
    """Totals read from the database at scrape time, so they hold across replicas and restarts."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stored = GaugeMetricFamily("genesys_interactions_stored", "Interactions in the store.")
        stored.add_metric([], self.store.interactions.count())
        yield stored
        feedback = CounterMetricFamily(
            "genesys_feedback",
            "Feedback in the store, by source and verdict (up, down, none).",
            labels=["source", "verdict"],
        )
        for (source, verdict), count in sorted(self.store.feedback.counts().items()):
            feedback.add_metric([source, verdict], count)
        yield feedback
        yield from self._learning()
        alerts = GaugeMetricFamily(
            "genesys_alerts_firing", "Alerts firing now, by kind (the seed's four).", labels=["kind"]
        )
        for kind, count in self.store.alerts.firing_counts().items():
            alerts.add_metric([kind], count)
        yield alerts

    def _learning(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Satisfaction per model version and A/B arm, training runs, dataset sizes, the rollout."""
        verdicts = self.store.feedback.verdicts_by_version()
        judged = CounterMetricFamily(
            "genesys_feedback_verdicts",
            "Thumbs up and down by the model version and A/B arm of the answer they judge.",
            labels=["model_version", "arm", "verdict"],
        )
        satisfaction = GaugeMetricFamily(
            "genesys_satisfaction_ratio",
            "Thumbs up / (up + down) by model version and A/B arm, over all stored feedback.",
            labels=["model_version", "arm"],
        )
        for (version, arm, verdict), count in sorted(verdicts.items()):
            judged.add_metric([version, arm, verdict], count)
        for version, arm in sorted({(v, a) for v, a, _ in verdicts}):
            up, down = verdicts.get((version, arm, "up"), 0), verdicts.get((version, arm, "down"), 0)
            satisfaction.add_metric([version, arm], up / (up + down))
        yield judged
        yield satisfaction
        runs = GaugeMetricFamily("genesys_training_runs", "Training runs by state.", labels=["state"])
        by_state = self.store.training_runs.count_by_state()
        for run_state in RUN_STATES:
            runs.add_metric([run_state], by_state.get(run_state, 0))
        yield runs
        latest = self.store.datasets.latest()
        rows = GaugeMetricFamily(
            "genesys_dataset_rows",
            "SFT rows of the latest dataset version, by split.",
            labels=["split"],
        )
        splits = (latest.counts.get("splits") or {}) if latest is not None else {}
        for split in ("train", "validation", "test"):
            rows.add_metric([split], float((splits.get(split) or {}).get("sft", 0)))
        yield rows
        rollout = self.store.rollouts.latest()
        state = GaugeMetricFamily(
            "genesys_rollout_state",
            "1 for the state of the latest rollout (none without one).",
            labels=["state"],
        )
        for name in ("none", *ROLLOUT_STATES):
            state.add_metric([name], 1.0 if (rollout.state if rollout else "none") == name else 0.0)
        yield state
        stage = GaugeMetricFamily(
            "genesys_rollout_candidate_traffic_share",
            "Share of users the latest rollout sends to its candidate (0 when it does not serve).",
        )
        stage.add_metric([], rollout.traffic if rollout is not None and rollout.serving else 0.0)
        yield stage
