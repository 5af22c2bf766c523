"""``GET /v1/kpis``: the seed's KPIs now, each with its target, window and status (operator role or
above). The definitions are those of ``genesys.tools.kpis``. Each call also sets the
``genesys_kpi_value`` and ``genesys_kpi_status`` gauges that ``/metrics`` exports."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from genesys.api.deps import OperatorCaller, ServicesDep
from genesys.tools.kpis import KpiReport, compute_kpis

router = APIRouter(tags=["kpis"])


@router.get("/v1/kpis", response_model=KpiReport)
async def get_kpis(services: ServicesDep, _: OperatorCaller) -> KpiReport:
    """Success rate, response time, user satisfaction, learning rate, knowledge coverage and technical
    precision, computed from the store at the time of the request (and exported to ``/metrics``)."""
    report = await asyncio.to_thread(compute_kpis, services.store, services.settings)
    for kpi in report.data:
        services.metrics.observe_kpi(kpi.name, kpi.value, kpi.status)
    return report
