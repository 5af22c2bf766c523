"""``dashboard_snapshot``: everything the operators' dashboard shows, read from the store in one call.

The page at ``/dashboard`` polls it (``GET /v1/dashboard/snapshot``) every few seconds, so every part
is read with bounded queries (light columns, recent rows, capped lists):

- **traffic**: requests, errors, latency (p50 and p95 of the completed answers) and completion
  tokens per minute over the last ``traffic_minutes``; and "now" (the last ``now_minutes``): requests
  per minute, error rate, p95 latency, tokens per second;
- **kpis**: the seed's KPIs (``genesys.tools.kpis``), against their targets;
- **users**: who used Genesys over the last ``users_window`` and how: a user is the request's
  ``user`` field or the caller's API key name (``anonymous`` with neither); interactions,
  conversations, errors, and the answers they judged positive or negative (the A/B test's rule);
- **training**: the running training run (else the latest) with its progress and its loss curve,
  the recent runs, and the society's current (else latest) learning cycle;
- **datasets**: the latest dataset versions, their rows per split, and the adapters trained on them;
- **rollout**: production, backup, the current (else last) rollout with its audit trail, and its
  A/B arms (measured now while the candidate serves, else the last tick's);
- **adapters**: the latest adapter versions and their registry transitions as a timeline, each
  event classified (registered, validated, canary, promotion, restore, rollback, retired, rejected).

Alerts are not in it: the page reads ``GET /v1/alerts`` itself.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from genesys.runtime.settings import Role
from genesys.runtime.store import (
    AdapterTransition,
    Cycle,
    Feedback,
    Interaction,
    Store,
    TrainingProgress,
    TrainingRun,
    utcnow,
)
from genesys.runtime.store.adapters import AdapterVersionRow
from genesys.runtime.store.interactions import InteractionRow
from genesys.tools.ab_stats import answer_verdict
from genesys.tools.kpis import KpiReport, compute_kpis
from genesys.tools.quality import usable_correction
from genesys.tools.rollout import RolloutService, RolloutStatus

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings

ANONYMOUS = "anonymous"
MAX_LOSS_POINTS = 400
TimelineKind = Literal[
    "registered", "validated", "rejected", "canary", "promotion", "restore", "rollback", "retired"
]


class TrafficPoint(BaseModel):
    """One minute of traffic."""

    minute: datetime = Field(description="Start of the minute (UTC).")
    requests: int = 0
    errors: int = 0
    latency_p50_ms: float | None = Field(None, description="Of the completed answers; None without any.")
    latency_p95_ms: float | None = None
    completion_tokens: int = 0


class TrafficNow(BaseModel):
    """The last few minutes, and totals."""

    minutes: int = Field(description="The period the rates cover.")
    requests_per_minute: float
    error_rate: float | None = Field(description="Errors among the requests that ended; None without any.")
    latency_p95_ms: float | None
    tokens_per_second: float = Field(description="Completion tokens generated per second.")
    interactions_total: int = Field(description="Every interaction in the store.")


class Traffic(BaseModel):
    minutes: int = Field(description="Length of the series, in minutes.")
    series: list[TrafficPoint] = Field(description="Oldest first; the last minute is the current one.")
    now: TrafficNow


class UserActivity(BaseModel):
    """One user's use of Genesys over the users window."""

    user: str = Field(description="The request's user field or the API key's name; 'anonymous' without.")
    interactions: int
    conversations: int
    errors: int
    positive: int = Field(description="Answers the user judged positively.")
    negative: int = Field(description="Answers the user corrected or rejected.")
    corrected: int = Field(description="Answers with a usable correction.")
    last_seen: datetime
    share: float = Field(description="The user's share of the window's interactions.")


class Users(BaseModel):
    window: str
    active: int = Field(description="Distinct users in the window.")
    interactions: int
    data: list[UserActivity] = Field(description="The most active users first (capped).")


class RunSummary(BaseModel):
    """A training run as the dashboard shows it."""

    id: str
    state: str
    phase: str | None = None
    dataset_version: str | None = None
    step: int | None = None
    total_steps: int | None = None
    progress: float | None = Field(None, description="step / total_steps of the current stage (0..1).")
    epoch: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    error: str | None = None
    adapter_version: str | None = Field(None, description="The adapter registered from this run.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class LossPoint(BaseModel):
    """One logged step; ``x`` runs on across stages (a DPO stage starts where SFT ended)."""

    x: int
    stage: str
    step: int
    loss: float | None = None
    eval_loss: float | None = None


class CycleSummary(BaseModel):
    id: str
    state: str
    step: str | None = None
    trigger: str
    outcome: str | None = None
    outcome_reason: str | None = None
    created_at: datetime
    ended_at: datetime | None = None


class Training(BaseModel):
    current: RunSummary | None = Field(description="The running run, else the latest; None before any.")
    loss: list[LossPoint] = Field(description="The current run's loss curve (downsampled when long).")
    stages: list[str] = Field(description="The current run's stages, in order.")
    recent: list[RunSummary]
    cycle: CycleSummary | None = Field(description="The active learning cycle, else the latest.")


class DatasetRow(BaseModel):
    version: str
    created_at: datetime
    kind: str = Field(description="'curated' (from interactions) or 'docs'.")
    topic: str | None = None
    rows: dict[str, int] = Field(description="SFT rows per split.")
    preference: int = Field(0, description="Preference (DPO) pairs over all splits.")
    kto: int = Field(0, description="KTO examples over all splits.")
    rebuilt_from: str | None = None
    adapters: list[str] = Field(default_factory=list, description="Adapter versions trained on it.")


class AdapterLane(BaseModel):
    version: str
    state: str
    is_backup: bool
    dataset_version: str | None = None
    run_id: str | None = None
    parent_version: str | None = None
    created_at: datetime


class TimelineEvent(BaseModel):
    at: datetime
    version: str
    kind: TimelineKind
    from_state: str | None
    to_state: str
    actor: str
    reason: str


class Adapters(BaseModel):
    versions: list[AdapterLane] = Field(description="The latest versions, oldest first.")
    events: list[TimelineEvent] = Field(description="Their registry transitions, oldest first.")


class ServingState(BaseModel):
    """What this server process serves now (filled in by the API, not from the store)."""

    engine: str
    base_model: str
    ready: bool
    production: str
    candidate: str | None
    traffic: float
    adapters_loaded: list[str]
    uptime_s: int
    version: str
    auth: Literal["api keys", "none"]


class Viewer(BaseModel):
    """Who asked for the snapshot (filled in by the API)."""

    name: str | None = Field(description="The API key's name; None when no keys are configured.")
    role: Role


class DashboardSnapshot(BaseModel):
    generated_at: datetime
    traffic: Traffic
    kpis: KpiReport
    users: Users
    training: Training
    datasets: list[DatasetRow]
    rollout: RolloutStatus
    adapters: Adapters
    serving: ServingState | None = None
    viewer: Viewer | None = None


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (the KPIs' rule)."""
    if not ordered:
        return None
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _recent_interactions(store: Store, since: datetime) -> list[Interaction]:
    """The interactions since ``since`` without their texts (only what the dashboard counts)."""
    columns = (
        InteractionRow.id,
        InteractionRow.conversation_id,
        InteractionRow.user,
        InteractionRow.status,
        InteractionRow.latency_ms,
        InteractionRow.completion_tokens,
        InteractionRow.model_version,
        InteractionRow.created_at,
    )
    query = select(*columns).where(InteractionRow.created_at >= since).order_by(InteractionRow.created_at)
    with store.db.reader() as session:
        rows = session.execute(query).all()
    return [
        Interaction(
            id=i,
            conversation_id=conversation,
            user=user,
            status=status,
            latency_ms=float(latency),
            completion_tokens=int(tokens or 0),
            model_version=version,
            request_messages=[],
            answer="",
            created_at=created,
        )
        for i, conversation, user, status, latency, tokens, version, created in rows
    ]


def _traffic(
    interactions: list[Interaction], total: int, now: datetime, minutes: int, now_minutes: int
) -> Traffic:
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    buckets: list[list[Interaction]] = [[] for _ in range(minutes)]
    for interaction in interactions:
        index = int((interaction.created_at - first).total_seconds() // 60)
        if 0 <= index < minutes:
            buckets[index].append(interaction)
    series = []
    for index, bucket in enumerate(buckets):
        latencies = sorted(i.latency_ms for i in bucket if i.status == "completed")
        series.append(
            TrafficPoint(
                minute=first + timedelta(minutes=index),
                requests=len(bucket),
                errors=sum(i.status == "error" for i in bucket),
                latency_p50_ms=_rounded(_percentile(latencies, 0.5)),
                latency_p95_ms=_rounded(_percentile(latencies, 0.95)),
                completion_tokens=sum(i.completion_tokens for i in bucket),
            )
        )
    recent = [i for i in interactions if i.created_at >= now - timedelta(minutes=now_minutes)]
    ended = [i for i in recent if i.status in ("completed", "error")]
    latencies = sorted(i.latency_ms for i in recent if i.status == "completed")
    return Traffic(
        minutes=minutes,
        series=series,
        now=TrafficNow(
            minutes=now_minutes,
            requests_per_minute=round(len(recent) / now_minutes, 2),
            error_rate=sum(i.status == "error" for i in ended) / len(ended) if ended else None,
            latency_p95_ms=_rounded(_percentile(latencies, 0.95)),
            tokens_per_second=round(sum(i.completion_tokens for i in recent) / (now_minutes * 60), 2),
            interactions_total=total,
        ),
    )


def _users(
    interactions: list[Interaction], feedback: dict[str, list[Feedback]], window: str, limit: int
) -> Users:
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for interaction in interactions:
        by_user[interaction.user or ANONYMOUS].append(interaction)
    data = []
    for user, mine in by_user.items():
        verdicts = [answer_verdict(i, feedback.get(i.id, [])) for i in mine]
        data.append(
            UserActivity(
                user=user,
                interactions=len(mine),
                conversations=len({i.conversation_id for i in mine}),
                errors=sum(i.status == "error" for i in mine),
                positive=verdicts.count("positive"),
                negative=verdicts.count("negative"),
                corrected=sum(any(usable_correction(f) for f in feedback.get(i.id, [])) for i in mine),
                last_seen=max(i.created_at for i in mine),
                share=len(mine) / len(interactions),
            )
        )
    data.sort(key=lambda u: (-u.interactions, u.user))
    return Users(window=window, active=len(by_user), interactions=len(interactions), data=data[:limit])


def _run_summary(run: TrainingRun, adapter_by_run: dict[str, str]) -> RunSummary:
    progress = None
    if run.state == "succeeded":
        progress = 1.0
    elif run.step is not None and run.total_steps:
        progress = min(1.0, run.step / run.total_steps)
    return RunSummary(
        id=run.id,
        state=run.state,
        phase=run.phase,
        dataset_version=run.dataset_version,
        step=run.step,
        total_steps=run.total_steps,
        progress=progress,
        epoch=run.epoch,
        loss=run.loss,
        eval_loss=run.eval_loss,
        tokens_per_s=run.tokens_per_s,
        eta_s=run.eta_s,
        error=run.error,
        adapter_version=adapter_by_run.get(run.id),
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def loss_curve(progress: list[TrainingProgress], *, max_points: int = MAX_LOSS_POINTS) -> list[LossPoint]:
    """The logged steps with a loss, ``x`` running on across stages; at most ``max_points`` of them
    (every k-th, the last one always kept)."""
    points: list[LossPoint] = []
    offsets: dict[str, int] = {}
    end = 0  # where the stages seen so far end
    for row in progress:
        if row.stage not in offsets:
            offsets[row.stage] = end
        end = max(end, offsets[row.stage] + max(row.total_steps, row.step))
        if row.loss is None and row.eval_loss is None:
            continue
        points.append(
            LossPoint(
                x=offsets[row.stage] + row.step,
                stage=row.stage,
                step=row.step,
                loss=row.loss,
                eval_loss=row.eval_loss,
            )
        )
    if len(points) > max_points:
        stride = math.ceil(len(points) / max_points)
        points = points[::stride] if (len(points) - 1) % stride == 0 else [*points[::stride], points[-1]]
    return points


def _training(store: Store, adapter_by_run: dict[str, str], runs: int) -> Training:
    recent = store.training_runs.recent(limit=runs)
    running = store.training_runs.recent(state="running", limit=1)
    current = running[0] if running else (recent[0] if recent else None)
    progress = store.training_runs.progress(current.id) if current is not None else []
    cycle: Cycle | None = store.cycles.active() or store.cycles.latest()
    return Training(
        current=_run_summary(current, adapter_by_run) if current is not None else None,
        loss=loss_curve(progress),
        stages=list(dict.fromkeys(p.stage for p in progress)),
        recent=[_run_summary(run, adapter_by_run) for run in recent],
        cycle=CycleSummary.model_validate(cycle.model_dump()) if cycle is not None else None,
    )


def _datasets(store: Store, adapters_by_dataset: dict[str, list[str]], limit: int) -> list[DatasetRow]:
    out = []
    for dataset in store.datasets.list(limit=limit):
        counts: dict[str, Any] = dataset.counts or {}
        splits: dict[str, Any] = counts.get("splits") or {}
        out.append(
            DatasetRow(
                version=dataset.version,
                created_at=dataset.created_at,
                kind=str(counts.get("kind", "curated")),
                topic=counts.get("topic"),
                rows={str(s): int((c or {}).get("sft", 0)) for s, c in splits.items()},
                preference=sum(int((c or {}).get("preference", 0)) for c in splits.values()),
                kto=sum(int((c or {}).get("kto", 0)) for c in splits.values()),
                rebuilt_from=dataset.rebuilt_from,
                adapters=adapters_by_dataset.get(dataset.version, []),
            )
        )
    return out


def timeline_kind(transition: AdapterTransition) -> TimelineKind:
    """What a registry transition means on the timeline."""
    if transition.from_state is None:
        return "registered"
    if transition.to_state == "production":
        return "restore" if transition.from_state == "retired" else "promotion"
    if transition.to_state == "rolled_back":
        return "rollback"
    kind: TimelineKind = transition.to_state  # type: ignore[assignment]  # the other states name themselves
    return kind


def _adapters(store: Store, limit: int) -> Adapters:
    query = (
        select(AdapterVersionRow)
        .order_by(AdapterVersionRow.created_at.desc(), AdapterVersionRow.version.desc())
        .limit(limit)
    )
    with store.db.reader() as session:
        rows = list(reversed(session.scalars(query).all()))
        versions = [AdapterLane.model_validate(row, from_attributes=True) for row in rows]
    names = {v.version for v in versions}
    events = [
        TimelineEvent(kind=timeline_kind(t), **t.model_dump())
        for t in store.adapters.transitions()
        if t.version in names
    ]
    return Adapters(versions=versions, events=events)


def dashboard_snapshot(
    store: Store,
    settings: Settings,
    *,
    now: datetime | None = None,
    kpis: KpiReport | None = None,
    traffic_minutes: int = 60,
    now_minutes: int = 5,
    users_window: timedelta = timedelta(hours=24),
    max_users: int = 12,
    max_datasets: int = 6,
    max_runs: int = 6,
    max_adapters: int = 12,
) -> DashboardSnapshot:
    """The dashboard's data at ``now`` (default: the current time). ``kpis``: computed already (the
    API caches them, they read two weeks of interactions); computed here when None.

    Raises ``ValueError`` for a window or a cap that is not positive.
    """
    if min(traffic_minutes, now_minutes, max_users, max_datasets, max_runs, max_adapters) <= 0:
        raise ValueError("the windows and caps must be positive")
    if users_window <= timedelta(0):
        raise ValueError("the users window must be positive")
    now = now or utcnow()
    since = min(now - users_window, now - timedelta(minutes=traffic_minutes))
    interactions = [i for i in _recent_interactions(store, since) if i.created_at <= now]
    in_users_window = [i for i in interactions if i.created_at >= now - users_window]
    feedback = store.feedback.for_interactions([i.id for i in in_users_window])
    adapters = _adapters(store, max_adapters)
    adapter_by_run: dict[str, str] = {}
    adapters_by_dataset: dict[str, list[str]] = defaultdict(list)
    for adapter in store.adapters.versions():
        if adapter.run_id:
            adapter_by_run[adapter.run_id] = adapter.version
        if adapter.dataset_version:
            adapters_by_dataset[adapter.dataset_version].append(adapter.version)
    hours = users_window.total_seconds() / 3600
    return DashboardSnapshot(
        generated_at=now,
        traffic=_traffic(interactions, store.interactions.count(), now, traffic_minutes, now_minutes),
        kpis=kpis if kpis is not None else compute_kpis(store, settings, now=now),
        users=_users(
            in_users_window, feedback, f"{hours:g}h" if hours < 48 else f"{hours / 24:g}d", max_users
        ),
        training=_training(store, adapter_by_run, max_runs),
        datasets=_datasets(store, adapters_by_dataset, max_datasets),
        rollout=RolloutService.from_settings(store, settings).status(now=now),
        adapters=adapters,
    )
