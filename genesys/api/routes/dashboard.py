"""The operators' dashboard: ``GET /dashboard`` (a static page, its script and its style, all served
from the package: nothing is fetched from elsewhere) and ``GET /v1/dashboard/snapshot`` (the data it
polls, operator role or above; see ``genesys.tools.dashboard_snapshot``).

The page holds no data, so anyone may load it; it asks for an API key (kept in the tab's
``sessionStorage``) and sends it as a Bearer token to the snapshot. With no keys configured (loopback
only) everyone is admin and the page just works.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from genesys import __version__
from genesys.api.deps import OperatorCaller, Services, ServicesDep
from genesys.errors import NotFound
from genesys.tools.dashboard_snapshot import DashboardSnapshot, ServingState, Viewer, dashboard_snapshot
from genesys.tools.kpis import KpiReport, compute_kpis

router = APIRouter(tags=["dashboard"])

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "dashboard"
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The KPIs read two weeks of interactions: a page polling every few seconds reuses them this long.
KPI_TTL_S = 15.0
# Only our own origin: a page that tried to load a script or font from a CDN would be refused.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class _KpiCache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    report: KpiReport | None = None
    at: float = 0.0


def _kpis(request: Request, services: Services) -> KpiReport:
    cache: _KpiCache | None = getattr(request.app.state, "dashboard_kpis", None)
    if cache is None:
        cache = request.app.state.dashboard_kpis = _KpiCache()
    with cache.lock:
        if cache.report is None or time.monotonic() - cache.at > KPI_TTL_S:
            cache.report = compute_kpis(services.store, services.settings)
            cache.at = time.monotonic()
            for kpi in cache.report.data:
                services.metrics.observe_kpi(kpi.name, kpi.value, kpi.status)
        return cache.report


def _serving(services: Services) -> ServingState:
    engine = services.host.engine
    info = engine.info()
    split = services.router.split
    return ServingState(
        engine=info.engine,
        base_model=info.base_model,
        ready=services.host.ready,
        production=split.production,
        candidate=split.candidate,
        traffic=split.traffic if split.candidate is not None else 0.0,
        adapters_loaded=list(info.adapters),
        uptime_s=max(0, int(time.time()) - services.started_at),
        version=__version__,
        auth="api keys" if services.settings.auth_enabled else "none",
    )


@router.get("/v1/dashboard/snapshot", response_model=DashboardSnapshot)
async def get_snapshot(request: Request, services: ServicesDep, caller: OperatorCaller) -> DashboardSnapshot:
    """Traffic per minute, KPIs, users, training, datasets, the A/B arms and the adapter timeline, from
    the store now; what this server serves; and who asked."""

    def build() -> DashboardSnapshot:
        snapshot = dashboard_snapshot(services.store, services.settings, kpis=_kpis(request, services))
        viewer = Viewer(name=caller.name, role=caller.role)
        return snapshot.model_copy(update={"serving": _serving(services), "viewer": viewer})

    return await asyncio.to_thread(build)


@router.get("/dashboard", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/dashboard/{asset}", include_in_schema=False)
async def dashboard_asset(asset: str) -> FileResponse:
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise NotFound(f"the dashboard has no file '{asset}'", param="asset")
    return FileResponse(STATIC_DIR / asset, media_type=media_type, headers=_HEADERS)
