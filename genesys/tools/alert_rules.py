"""The alert rules: pure functions of the store at a moment ``now``, each returning the conditions
that hold (one per key it fires about). ``genesys.tools.alerts`` turns them into stored alerts.

The seed's four kinds, with their rules (thresholds from the ``alerts`` settings):

- **performance_drop**
  - ``kpi_breached`` (key: the KPI): a KPI of ``genesys.tools.kpis`` listed in ``kpis`` has a status
    in ``kpi_statuses`` (``breached`` by default) over ``kpi_window_hours``.
  - ``p95_latency`` (key ``all``): the 95th percentile (nearest rank) of the latency of the answers
    completed in the last ``latency_window_minutes`` is above ``p95_latency_seconds`` (at least
    ``latency_min_samples`` answers).
- **critical_failure**
  - ``error_rate`` (key ``all``): of the requests that ended (completed or error) in the last
    ``window_minutes``, more than ``error_rate`` failed (at least ``min_requests``).
  - ``training_failed`` (key: the run id): the most recent training run that ended, failed, less
    than ``lookback_hours`` ago. A later run that succeeds resolves it.
  - ``rollout_rolled_back`` (key: the rollout id): the most recent rollout was rolled back by the
    deploy controller (the A/B test found a degradation or an error spike, or the candidate could not
    be served) less than ``lookback_hours`` ago. An operator's rollback is deliberate: no alert.
- **training_needed**
  - ``corrections`` (key ``all``): at least ``corrections`` answers got a correction (a usable
    correction text, or an implicit correction in the user's next message) since the last learning
    cycle started (ever, before the first). Starting a cycle resolves it.
- **anomaly** — the last ``window_minutes`` against the ``baseline_hours`` before it:
  - ``request_volume`` (key ``spike`` or ``drop``): requests in the window above ``volume_factor``
    times the baseline's mean per window, or below that mean divided by ``volume_factor``; judged
    only when that mean is at least ``min_baseline_requests``.
  - ``latency_shift`` (key ``all``): the median latency of the window's completed answers above
    ``latency_factor`` times the baseline's median (at least ``min_latency_samples`` answers each).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, Field

from genesys.runtime.store import AlertKind, Store
from genesys.runtime.store.alerts import RequestSample, Severity
from genesys.tools.kpis import compute_kpis
from genesys.tools.quality import usable_correction
from genesys.tools.rollout import CONTROLLER

if TYPE_CHECKING:
    from genesys.runtime.settings import AlertsConfig, Settings

log = structlog.get_logger(__name__)
_PAGE = 2_000


class AlertCondition(BaseModel):
    """A rule's condition that holds now: what an open alert says."""

    rule: str
    key: str = "all"
    kind: AlertKind
    severity: Severity
    summary: str
    value: float | None = None
    threshold: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class RuleResults(BaseModel):
    """The conditions that hold, and the rules that could not be evaluated (their alerts stay as they are)."""

    conditions: list[AlertCondition] = Field(default_factory=list)
    failed_rules: list[str] = Field(default_factory=list)
    evaluated_at: datetime


Rule = Callable[[Store, "Settings", datetime], list[AlertCondition]]


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(0.95 * len(ordered))) - 1]


def _minutes(value: float) -> str:
    return f"{value:g} min"


# -- performance_drop ---------------------------------------------------------------------------------


def kpi_breached(store: Store, settings: Settings, now: datetime) -> list[AlertCondition]:
    cfg = settings.alerts.performance_drop
    window = timedelta(hours=cfg.kpi_window_hours)
    # compute_kpis reads two learning windows back for the learning rate; when that KPI cannot fire,
    # a learning window of half the KPI window keeps every evaluation to the KPI window's rows.
    learning = timedelta(days=7) if "learning_rate" in cfg.kpis else window / 2
    report = compute_kpis(
        store, settings, now=now, window=window, learning_window=learning, min_samples=cfg.kpi_min_samples
    )
    found = []
    for kpi in report.data:
        if kpi.name not in cfg.kpis or kpi.status not in cfg.kpi_statuses or kpi.value is None:
            continue
        shown = f"{kpi.value:.3g} {kpi.unit}" if kpi.unit != "ratio" else f"{kpi.value:.1%}"
        target = f"{kpi.target:g} {kpi.unit}" if kpi.unit != "ratio" else f"{kpi.target:.0%}"
        found.append(
            AlertCondition(
                rule="kpi_breached",
                key=kpi.name,
                kind="performance_drop",
                severity="warning",
                summary=f"{kpi.name} is {kpi.status}: {shown} against a target of {kpi.comparison} {target} "
                f"({kpi.window}, {kpi.samples} samples)",
                value=kpi.value,
                threshold=kpi.target,
                details={"kpi": kpi.name, "status": kpi.status, "window": kpi.window, "samples": kpi.samples},
            )
        )
    return found


def p95_latency(store: Store, settings: Settings, now: datetime) -> list[AlertCondition]:
    cfg = settings.alerts.performance_drop
    since = now - timedelta(minutes=cfg.latency_window_minutes)
    latencies = [r.latency_ms / 1000 for r in store.alerts.requests(since, now) if r.status == "completed"]
    if len(latencies) < cfg.latency_min_samples:
        return []
    p95 = _p95(latencies)
    if p95 <= cfg.p95_latency_seconds:
        return []
    return [
        AlertCondition(
            rule="p95_latency",
            kind="performance_drop",
            severity="warning",
            summary=f"p95 latency {p95:.2f} s over the last {_minutes(cfg.latency_window_minutes)} is above "
            f"{cfg.p95_latency_seconds:g} s ({len(latencies)} answers)",
            value=round(p95, 3),
            threshold=cfg.p95_latency_seconds,
            details={"samples": len(latencies), "window_minutes": cfg.latency_window_minutes},
        )
    ]


# -- critical_failure ---------------------------------------------------------------------------------


def error_rate(store: Store, settings: Settings, now: datetime) -> list[AlertCondition]:
    cfg = settings.alerts.critical_failure
    since = now - timedelta(minutes=cfg.window_minutes)
    ended = [r for r in store.alerts.requests(since, now) if r.status in ("completed", "error")]
    if len(ended) < cfg.min_requests:
        return []
    errors = sum(r.status == "error" for r in ended)
    rate = errors / len(ended)
    if rate <= cfg.error_rate:
        return []
    return [
        AlertCondition(
            rule="error_rate",
            kind="critical_failure",
            severity="critical",
            summary=f"{rate:.0%} of the requests failed over the last {_minutes(cfg.window_minutes)} "
            f"({errors} of {len(ended)}); the threshold is {cfg.error_rate:.0%}",
            value=round(rate, 4),
            threshold=cfg.error_rate,
            details={"errors": errors, "requests": len(ended), "window_minutes": cfg.window_minutes},
        )
    ]


def training_failed(store: Store, settings: Settings, now: datetime) -> list[AlertCondition]:
    cfg = settings.alerts.critical_failure
    ended = [r for r in store.training_runs.recent(limit=50) if r.finished and r.finished_at is not None]
    if not ended:
        return []
    latest = max(ended, key=lambda r: r.finished_at or r.created_at)
    assert latest.finished_at is not None
    if latest.state != "failed" or not now - timedelta(hours=cfg.lookback_hours) <= latest.finished_at <= now:
        return []
    error = latest.error.strip().splitlines()[-1][:300] if latest.error and latest.error.strip() else None
    return [
        AlertCondition(
            rule="training_failed",
            key=latest.id,
            kind="critical_failure",
            severity="critical",
            summary=f"training run {latest.id} failed at {latest.finished_at:%Y-%m-%d %H:%M} UTC: "
            f"{error or 'no error recorded'}",
            details={"run_id": latest.id, "dataset_version": latest.dataset_version, "error": latest.error},
        )
    ]


def rollout_rolled_back(store: Store, settings: Settings, now: datetime) -> list[AlertCondition]:
    cfg = settings.alerts.critical_failure
    rollout = store.rollouts.latest()
    if rollout is None or rollout.state != "rolled_back" or rollout.ended_at is None:
        return []
    if not now - timedelta(hours=cfg.lookback_hours) <= rollout.ended_at <= now:
        return []
    last = store.rollouts.events(rollout.id)[-1]
    if last.actor != CONTROLLER:
        return []
    return [
        AlertCondition(
            rule="rollout_rolled_back",
            key=rollout.id,
            kind="critical_failure",
            severity="critical",
            summary=f"rollout {rollout.id} of {rollout.candidate} was rolled back automatically: "
            f"{rollout.outcome or last.reason}",
            details={"rollout_id": rollout.id, "candidate": rollout.candidate, "baseline": rollout.baseline},
        )
    ]


# -- training_needed ----------------------------------------------------------------------------------


def corrections(store: Store, settings: Settings, now: datetime) -> list[AlertCondition]:
    cfg = settings.alerts.training_needed
    if store.cycles.active() is not None:
        return []  # a cycle is learning from them now
    latest = store.cycles.latest()
    since = latest.created_at if latest is not None else None
    corrected: set[str] = set()
    offset = 0
    while True:
        page = store.feedback.list(since=since, limit=_PAGE, offset=offset)
        for f in page:
            recent = (since is None or f.created_at >= since) and f.created_at < now
            if recent and (usable_correction(f) or (f.source == "implicit" and f.signal == "correction")):
                corrected.add(f.interaction_id)
        if len(page) < _PAGE:
            break
        offset += _PAGE
    if len(corrected) < cfg.corrections:
        return []
    after = f"since cycle {latest.id} started" if latest is not None else "and no learning cycle has run yet"
    return [
        AlertCondition(
            rule="corrections",
            kind="training_needed",
            severity="info",
            summary=f"{len(corrected)} answers were corrected {after} (threshold {cfg.corrections})",
            value=float(len(corrected)),
            threshold=float(cfg.corrections),
            details={
                "since": since.isoformat() if since else None,
                "last_cycle": latest.id if latest else None,
            },
        )
    ]


# -- anomaly ------------------------------------------------------------------------------------------


def _periods(store: Store, cfg: Any, now: datetime) -> tuple[list[RequestSample], list[RequestSample], float]:
    """The window's requests, the baseline's, and how many windows the baseline spans."""
    window = timedelta(minutes=cfg.window_minutes)
    baseline = timedelta(hours=cfg.baseline_hours)
    rows = store.alerts.requests(now - window - baseline, now)
    start = now - window
    return (
        [r for r in rows if r.created_at >= start],
        [r for r in rows if r.created_at < start],
        baseline / window,
    )


def request_volume(store: Store, settings: Settings, now: datetime) -> list[AlertCondition]:
    cfg = settings.alerts.anomaly
    current, before, windows = _periods(store, cfg, now)
    mean = len(before) / windows
    if mean < cfg.min_baseline_requests:
        return []
    high, low = mean * cfg.volume_factor, mean / cfg.volume_factor
    if low <= len(current) <= high:
        return []
    spike = len(current) > high
    return [
        AlertCondition(
            rule="request_volume",
            key="spike" if spike else "drop",
            kind="anomaly",
            severity="warning",
            summary=f"{len(current)} requests in the last {_minutes(cfg.window_minutes)}, "
            f"{'above' if spike else 'below'} the {cfg.baseline_hours:g} h baseline of {mean:.1f} per "
            f"{_minutes(cfg.window_minutes)} ({len(current) / mean:.1f}x)",
            value=float(len(current)),
            threshold=round(high if spike else low, 3),
            details={"baseline_mean": round(mean, 3), "baseline_requests": len(before)},
        )
    ]


def latency_shift(store: Store, settings: Settings, now: datetime) -> list[AlertCondition]:
    cfg = settings.alerts.anomaly
    current, before, _ = _periods(store, cfg, now)
    now_ms = [r.latency_ms for r in current if r.status == "completed"]
    then_ms = [r.latency_ms for r in before if r.status == "completed"]
    if min(len(now_ms), len(then_ms)) < cfg.min_latency_samples:
        return []
    median_now, median_then = statistics.median(now_ms) / 1000, statistics.median(then_ms) / 1000
    limit = median_then * cfg.latency_factor
    if median_now <= limit:
        return []
    return [
        AlertCondition(
            rule="latency_shift",
            kind="anomaly",
            severity="warning",
            summary=f"median latency {median_now:.2f} s over the last {_minutes(cfg.window_minutes)}, "
            f"{median_now / median_then:.1f}x the {cfg.baseline_hours:g} h baseline of {median_then:.2f} s",
            value=round(median_now, 3),
            threshold=round(limit, 3),
            details={"baseline_median_s": round(median_then, 3), "samples": len(now_ms)},
        )
    ]


RULES: dict[AlertKind, dict[str, Rule]] = {
    "performance_drop": {"kpi_breached": kpi_breached, "p95_latency": p95_latency},
    "critical_failure": {
        "error_rate": error_rate,
        "training_failed": training_failed,
        "rollout_rolled_back": rollout_rolled_back,
    },
    "training_needed": {"corrections": corrections},
    "anomaly": {"request_volume": request_volume, "latency_shift": latency_shift},
}


def _kind_config(alerts: AlertsConfig, kind: AlertKind) -> Any:
    return getattr(alerts, kind)


def evaluate_rules(store: Store, settings: Settings, *, now: datetime) -> RuleResults:
    """Every enabled rule at ``now``. A rule that raises is logged and listed in ``failed_rules``."""
    results = RuleResults(evaluated_at=now)
    for kind, rules in RULES.items():
        if not _kind_config(settings.alerts, kind).enabled:
            continue
        for name, rule in rules.items():
            try:
                results.conditions.extend(rule(store, settings, now))
            except Exception as exc:  # one broken rule must not silence the others
                log.exception("alerts.rule_failed", rule=name, error=str(exc))
                results.failed_rules.append(name)
    return results
