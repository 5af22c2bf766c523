"""What ``genesys monitor`` shows besides the training run (the seed's dashboard in a terminal): the KPIs
against their targets, the alerts firing, the rollout and its A/B arms; and ``genesys alerts``.

Both read the store of the data directory (like ``genesys monitor`` always has), so they work on the
machine that serves, with or without the server running. Imports stay light at module level: every
``genesys`` command loads this module.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from genesys.cli import ConfigOpt, DataDirOpt, _settings, app, fail, readable_errors

if TYPE_CHECKING:
    from rich.console import RenderableType

    from genesys.tools.kpis import Kpi
    from genesys.tools.monitoring import MonitorSnapshot
    from genesys.tools.rollout import RolloutStatus

_STATUS_STYLE = {"ok": "green", "warning": "yellow", "breached": "bold red", "no_data": "dim"}
_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def kpi_value(kpi: Kpi, value: float | None) -> str:
    if value is None:
        return "n/a"
    if kpi.unit == "ratio":
        return f"{value:.1%}"
    if kpi.unit == "points":
        return f"{value * 100:+.1f} pts"
    return f"{value:.2f} {kpi.unit}"


def _arms(status: RolloutStatus) -> list[str]:
    evaluation = status.evaluation
    if evaluation is None:
        return []
    lines = []
    for arm in (evaluation.production, evaluation.candidate):
        satisfaction = "n/a" if arm.satisfaction is None else f"{arm.satisfaction:.1%}"
        latency = "n/a" if arm.latency_p95_ms is None else f"{arm.latency_p95_ms / 1000:.2f} s"
        lines.append(
            f"{arm.arm} {arm.model_version}: {arm.requests} requests, errors {arm.error_rate:.1%}, "
            f"satisfaction {satisfaction} ({arm.judged} judged), p95 {latency}"
        )
    return lines


def snapshot_lines(snapshot: MonitorSnapshot, run_line: str) -> list[str]:
    """The text of ``monitor --once``: the run line first (as it always was), then the rest."""
    kpis = "; ".join(
        f"{k.name} {kpi_value(k, k.value)} ({k.comparison} {kpi_value(k, k.target)}) {k.status}"
        for k in snapshot.kpis.data
    )
    lines = [run_line, f"KPIs: {kpis}"]
    if snapshot.alerts:
        lines.append(f"alerts: {len(snapshot.alerts)} firing")
        lines += [f"  [{a.severity}] {a.kind}/{a.rule}: {a.summary}" for a in snapshot.alerts]
    else:
        lines.append("alerts: none firing")
    lines.append(f"rollout: {snapshot.rollout.summary}")
    lines += [f"  {line}" for line in _arms(snapshot.rollout)]
    return lines


def monitor_view(snapshot: MonitorSnapshot, training: RenderableType) -> RenderableType:
    """The live screen: training, KPIs, alerts, rollout."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    kpis = Table(title="KPIs", expand=True, title_justify="left")
    for column in ("KPI", "value", "target", "status", "window", "samples"):
        kpis.add_column(column, justify="right" if column in ("value", "target", "samples") else "left")
    for k in snapshot.kpis.data:
        style = _STATUS_STYLE[k.status]
        kpis.add_row(
            k.name,
            kpi_value(k, k.value),
            f"{k.comparison} {kpi_value(k, k.target)}",
            f"[{style}]{k.status}[/]",
            k.window,
            str(k.samples),
        )
    alerts = Table(title=f"Alerts firing: {len(snapshot.alerts)}", expand=True, title_justify="left")
    for column in ("severity", "kind", "rule", "since", "summary"):
        alerts.add_column(column)
    for a in snapshot.alerts:
        style = _SEVERITY_STYLE[a.severity]
        alerts.add_row(f"[{style}]{a.severity}[/]", a.kind, a.rule, f"{a.started_at:%m-%d %H:%M}", a.summary)
    if not snapshot.alerts:
        alerts.add_row("[green]none[/]", "", "", "", "")
    rollout = "\n".join([snapshot.rollout.summary, *_arms(snapshot.rollout)])
    return Group(
        Panel(training, title="Training"),
        kpis,
        alerts,
        Panel(rollout, title=f"Rollout (production: {snapshot.rollout.production})"),
    )


@app.command("alerts")
@readable_errors
def alerts_command(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    state: Annotated[str, typer.Option(help="firing, resolved or all.")] = "all",
    limit: Annotated[int, typer.Option(min=1, help="At most this many alerts.")] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON (as GET /v1/alerts answers).")] = False,
) -> None:
    """The alerts the server's rules raised, newest first (the store of the data directory)."""
    from genesys.runtime.store import Store
    from genesys.tools.alerts import list_alerts

    if state not in ("firing", "resolved", "all"):
        fail(f"--state must be firing, resolved or all, got {state!r}")
    settings = _settings(config, data_dir)
    store = Store(settings.database_url)
    try:
        found = list_alerts(store, state=state, limit=limit)  # type: ignore[arg-type]
    finally:
        store.close()
    if json_out:
        typer.echo(json.dumps(found.model_dump(mode="json"), indent=2))
        return
    if not found.alerts:
        typer.echo("no alerts" if state == "all" else f"no {state} alerts")
        return
    for a in found.alerts:
        when = f"{a.started_at:%Y-%m-%d %H:%M} UTC"
        if a.resolved_at is not None:
            when += f" -> {a.resolved_at:%H:%M}"
        typer.echo(f"{a.state:8} {a.severity:8} {a.kind}/{a.rule}  {when}  {a.summary}")


def snapshot_json(snapshot: MonitorSnapshot) -> str:
    return json.dumps(snapshot.model_dump(mode="json"), indent=2)
