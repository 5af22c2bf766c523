"""Alerts: the rules' conditions (``genesys.tools.alert_rules``) become stored alerts, and alerts take
the seed's automatic actions.

``AlertEvaluator.evaluate(now)``:

1. evaluates every enabled rule at ``now``;
2. opens an alert for each condition that holds and has none open (one open alert per rule and key:
   evaluating again only refreshes ``last_seen_at``, the value and the summary);
3. resolves each open alert whose condition no longer holds (a rule that failed to evaluate leaves
   its alerts as they are);
4. runs the actions of the alert's kind (``alerts.<kind>.actions``) for each alert that just fired,
   and ``notify`` and ``report`` again for each that just resolved. What each action did is kept on
   the alert (``actions``).

The actions (the seed's "Ações Automáticas"):

- ``retrain``: start a learning cycle (trigger ``alert``) through the injected ``retrain`` callable
  (the server's ``CycleScheduler.trigger``); skipped while another cycle runs.
- ``rollback``: roll back the rollout whose candidate serves now, then let the server follow
  (``after_rollback``); skipped when no candidate serves. Production itself is never rolled back
  automatically.
- ``notify``: log the alert, and POST it to ``alerts.webhook_url`` when set (Slack-compatible JSON).
- ``report``: write ``<alert id>.json`` and ``<alert id>.md`` under ``<data_dir>/metrics/alerts/``.

An action that fails is recorded as failed and logged; it never stops the evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog
from pydantic import BaseModel, Field

from genesys.errors import InvalidRequest
from genesys.runtime.store import Alert, AlertActionRecord, AlertKind, AlertState, Store, utcnow
from genesys.runtime.store.alerts import Severity
from genesys.runtime.webhook import WebhookNotifier
from genesys.tools.alert_rules import evaluate_rules
from genesys.tools.rollout import RolloutService

if TYPE_CHECKING:
    from genesys.runtime.settings import AlertAction, Settings

log = structlog.get_logger(__name__)

ALERTS_ACTOR = "alerts"
StateFilter = Literal["firing", "resolved", "all"]
# Starts a learning cycle for the reason given and returns its id; raises CycleInProgress (an
# InvalidRequest) while another cycle is active.
Retrainer = Callable[[str], str]
_TIME = "%Y-%m-%d %H:%M:%S"
_EMOJI = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}
_COLOR = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4", "resolved": "#2ca02c"}


class AlertPublic(BaseModel):
    """An alert as ``GET /v1/alerts`` shows it."""

    id: str
    rule: str = Field(description="The rule that fired, e.g. error_rate, kpi_breached, corrections.")
    kind: AlertKind
    severity: Severity
    state: AlertState
    summary: str
    value: float | None = Field(description="The measured value (None for an event such as a failed run).")
    threshold: float | None = Field(description="What the value was compared to.")
    started_at: datetime
    last_seen_at: datetime = Field(description="The last evaluation that found the condition.")
    resolved_at: datetime | None
    actions: list[AlertActionRecord] = Field(description="The automatic actions taken, in order.")

    @classmethod
    def of(cls, alert: Alert) -> AlertPublic:
        return cls.model_validate(alert.model_dump())


class AlertList(BaseModel):
    alerts: list[AlertPublic]


class AlertEvaluation(BaseModel):
    """What one evaluation changed."""

    fired: list[AlertPublic] = Field(default_factory=list)
    resolved: list[AlertPublic] = Field(default_factory=list)
    firing: int = Field(0, description="Alerts open after the evaluation.")
    failed_rules: list[str] = Field(default_factory=list)
    evaluated_at: datetime


def list_alerts(store: Store, *, state: StateFilter = "all", limit: int = 100) -> AlertList:
    """The alerts, newest first; ``state`` firing, resolved or all."""
    alerts = store.alerts.recent(state=None if state == "all" else state, limit=limit)
    return AlertList(alerts=[AlertPublic.of(a) for a in alerts])


def notification(alert: Alert, event: AlertState) -> dict[str, object]:
    """The webhook body: Slack's ``text`` and ``attachments`` (Mattermost and most chat receivers
    read them too), plus the alert itself under ``genesys``."""
    head = "RESOLVED" if event == "resolved" else alert.severity.upper()
    icon = ":white_check_mark:" if event == "resolved" else _EMOJI[alert.severity]
    text = f"{icon} [{head}] Genesys {alert.kind.replace('_', ' ')}: {alert.summary}"
    fields = [
        {"title": "rule", "value": f"{alert.rule} ({alert.key})", "short": True},
        {"title": "started", "value": f"{alert.started_at:%Y-%m-%d %H:%M:%S} UTC", "short": True},
    ]
    if alert.value is not None:
        fields.append({"title": "value", "value": f"{alert.value:g}", "short": True})
    if alert.threshold is not None:
        fields.append({"title": "threshold", "value": f"{alert.threshold:g}", "short": True})
    return {
        "text": text,
        "attachments": [
            {
                "color": _COLOR["resolved" if event == "resolved" else alert.severity],
                "title": f"{alert.kind}: {alert.rule}",
                "text": alert.summary,
                "fields": fields,
                "footer": "Genesys alerts",
            }
        ],
        "genesys": {"event": event, "alert": AlertPublic.of(alert).model_dump(mode="json"), "key": alert.key},
    }


def report_markdown(alert: Alert) -> str:
    lines = [
        f"# Alert {alert.id}: {alert.kind.replace('_', ' ')}",
        "",
        alert.summary,
        "",
        "| field | value |",
        "| --- | --- |",
        f"| rule | {alert.rule} ({alert.key}) |",
        f"| severity | {alert.severity} |",
        f"| state | {alert.state} |",
        f"| value | {'-' if alert.value is None else f'{alert.value:g}'} |",
        f"| threshold | {'-' if alert.threshold is None else f'{alert.threshold:g}'} |",
        f"| started | {alert.started_at:%Y-%m-%d %H:%M:%S} UTC |",
        f"| last seen | {alert.last_seen_at:%Y-%m-%d %H:%M:%S} UTC |",
        f"| resolved | {'-' if alert.resolved_at is None else f'{alert.resolved_at:{_TIME}} UTC'} |",
    ]
    if alert.details:
        lines += ["", "## Details", ""] + [f"- {k}: {v}" for k, v in alert.details.items()]
    if alert.actions:
        lines += ["", "## Actions", ""] + [
            f"- {a.at:%H:%M:%S} {a.action} ({a.event}): {a.status}, {a.detail}" for a in alert.actions
        ]
    return "\n".join(lines) + "\n"


class AlertEvaluator:
    """Evaluates the rules against one store and acts. Safe to call from one thread at a time per
    process; several processes may evaluate the same store (an alert opens once)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        retrain: Retrainer | None = None,
        after_rollback: Callable[[], object] | None = None,
        notifier: WebhookNotifier | None = None,
        report_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.retrain = retrain
        self.after_rollback = after_rollback
        config = settings.alerts
        if notifier is None and config.webhook_url is not None:
            notifier = WebhookNotifier(config.webhook_url, timeout_s=config.webhook_timeout_s)
        self.notifier = notifier
        self.report_dir = report_dir or settings.data_dir / "metrics" / "alerts"

    def evaluate(self, now: datetime | None = None) -> AlertEvaluation:
        """Evaluate every enabled rule at ``now``, open and resolve alerts, run their actions."""
        now = now or utcnow()
        results = evaluate_rules(self.store, self.settings, now=now)
        holding = {(c.rule, c.key) for c in results.conditions}
        fired: list[Alert] = []
        for condition in results.conditions:
            alert, created = self.store.alerts.fire(**condition.model_dump(), now=now)
            if created:
                fired.append(alert)
        resolved: list[Alert] = []
        for alert in self.store.alerts.open():
            if (alert.rule, alert.key) in holding or alert.rule in results.failed_rules:
                continue
            closed = self.store.alerts.resolve(alert.id, now=now)
            if closed is not None:
                resolved.append(closed)
        fired = [self._act(alert, "firing", now) for alert in fired]
        resolved = [self._act(alert, "resolved", now) for alert in resolved]
        for alert in fired:
            log.warning(
                "alert.fired", alert_id=alert.id, rule=alert.rule, kind=alert.kind, summary=alert.summary
            )
        for alert in resolved:
            log.info("alert.resolved", alert_id=alert.id, rule=alert.rule, kind=alert.kind)
        return AlertEvaluation(
            fired=[AlertPublic.of(a) for a in fired],
            resolved=[AlertPublic.of(a) for a in resolved],
            firing=len(self.store.alerts.open()),
            failed_rules=results.failed_rules,
            evaluated_at=now,
        )

    # -- actions ----------------------------------------------------------------------------------

    def _act(self, alert: Alert, event: AlertState, now: datetime) -> Alert:
        actions: list[AlertAction] = list(getattr(self.settings.alerts, alert.kind).actions)
        if event == "resolved":  # retraining or rolling back is for a problem that holds
            actions = [a for a in actions if a in ("notify", "report")]
        records: list[AlertActionRecord] = []
        for action in actions:
            try:
                status, detail = getattr(self, f"_{action}")(alert, event, now)
            except Exception as exc:  # an action's failure is recorded, never raised
                log.exception("alert.action_failed", alert_id=alert.id, action=action, error=str(exc))
                status, detail = "failed", f"{type(exc).__name__}: {exc}"
            records.append(
                AlertActionRecord(action=action, event=event, status=status, detail=detail, at=now)
            )
            alert = alert.model_copy(update={"actions": [*alert.actions, records[-1]]})
        return self.store.alerts.add_actions(alert.id, records) if records else alert

    def _retrain(self, alert: Alert, event: AlertState, now: datetime) -> tuple[str, str]:
        if self.retrain is None:
            return "skipped", "no learning-cycle scheduler in this process"
        try:
            cycle_id = self.retrain(f"alert {alert.id} ({alert.rule}): {alert.summary}")
        except InvalidRequest as exc:  # CycleInProgress: one cycle at a time
            return "skipped", str(exc)
        return "done", f"learning cycle {cycle_id} started"

    def _rollback(self, alert: Alert, event: AlertState, now: datetime) -> tuple[str, str]:
        rollout = self.store.rollouts.active()
        if rollout is None or not rollout.serving:
            return "skipped", "no candidate is serving: nothing to roll back"
        service = RolloutService.from_settings(self.store, self.settings)
        try:
            # abort, not rollback: it rolls back only a rollout that serves, never production itself
            # (rollback would, if the rollout ended between our read and this call).
            service.abort(f"alert {alert.id} ({alert.rule}): {alert.summary}", now=now, actor=ALERTS_ACTOR)
        except InvalidRequest as exc:
            return "skipped", str(exc)
        if self.after_rollback is not None:
            self.after_rollback()
        return "done", f"rollout {rollout.id} of {rollout.candidate} rolled back; {rollout.baseline} serves"

    def _notify(self, alert: Alert, event: AlertState, now: datetime) -> tuple[str, str]:
        log.warning(
            "alert.notify",
            change=event,
            alert_id=alert.id,
            kind=alert.kind,
            rule=alert.rule,
            summary=alert.summary,
        )
        if self.notifier is None:
            return "done", "logged (no alerts.webhook_url)"
        result = self.notifier.post(notification(alert, event))
        return ("done" if result.ok else "failed"), result.detail

    def _report(self, alert: Alert, event: AlertState, now: datetime) -> tuple[str, str]:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        base = self.report_dir / alert.id
        body = {**AlertPublic.of(alert).model_dump(mode="json"), "key": alert.key, "details": alert.details}
        base.with_suffix(".json").write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        base.with_suffix(".md").write_text(report_markdown(alert), encoding="utf-8")
        return "done", f"report written to {base}.json and {base}.md"
