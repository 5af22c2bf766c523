"""``GET /metrics``: the Prometheus text format (operator role when API keys are configured)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from genesys.api.deps import OperatorCaller, ServicesDep
from genesys.runtime.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def metrics(services: ServicesDep, _: OperatorCaller) -> Response:
    services.metrics.engine_ready.set(1 if services.host.ready else 0)
    body = await asyncio.to_thread(services.metrics.render)  # the store is read at scrape time
    return Response(body, media_type=CONTENT_TYPE)
