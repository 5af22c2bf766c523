"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the model and the store can serve; and
this replica's part in the society: leader, standby or single)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from genesys import __version__
from genesys.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    store_ok = await asyncio.to_thread(services.store.ping)
    engine = services.host.engine
    checks = {
        "engine": "ready" if services.host.ready else (services.host.load_error or "loading"),
        "store": "ok" if store_ok else "unreachable",
    }
    ready = services.host.ready and store_ok
    body: dict[str, object] = {
        "status": "ready" if ready else "not_ready",
        "checks": checks,
        "engine": engine.kind,
        "model_version": services.router.split.production,
    }
    if services.cycles is not None:
        # Replicas: which one runs the society (the holder of the lease), and which one this is.
        body["society"] = services.cycles.status()
    return JSONResponse(body, status_code=200 if ready else 503)
