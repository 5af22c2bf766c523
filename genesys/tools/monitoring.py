"""One look at everything an operator watches (the seed's dashboard): the training run, the KPIs
against their targets, the alerts firing, the rollout and its A/B arms. ``genesys monitor`` shows it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from genesys.runtime.store import Store, TrainingRun
from genesys.tools.alerts import AlertPublic, list_alerts
from genesys.tools.kpis import KpiReport, compute_kpis
from genesys.tools.rollout import RolloutService, RolloutStatus

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings


class MonitorSnapshot(BaseModel):
    """Everything ``genesys monitor`` shows, as ``--json`` prints it."""

    run: TrainingRun | None = Field(description="The training run followed (the latest by default).")
    kpis: KpiReport = Field(description="The seed's KPIs, as GET /v1/kpis computes them.")
    alerts: list[AlertPublic] = Field(description="The alerts firing now, newest first.")
    rollout: RolloutStatus = Field(description="Production, the current (or last) rollout and its arms now.")


def take_snapshot(store: Store, settings: Settings, run: TrainingRun | None) -> MonitorSnapshot:
    """The KPIs, firing alerts and rollout now, beside ``run``."""
    return MonitorSnapshot(
        run=run,
        kpis=compute_kpis(store, settings),
        alerts=list_alerts(store, state="firing").alerts,
        rollout=RolloutService.from_settings(store, settings).status(),
    )
