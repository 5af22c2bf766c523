"""``/v1/cycles``: the society's learning cycles (the operator role or above).

``GET /v1/cycles`` lists them, newest first; ``GET /v1/cycles/{id}`` gives one with every message its
agents sent, in order (reports with their pydantic payloads, tool calls and results, the runner's
notes); ``POST /v1/cycles`` starts one in the background (202) — a 409 ``cycle_in_progress`` while
another runs, since one cycle runs at a time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from genesys.api.deps import OperatorCaller, ServicesDep
from genesys.api.errors import error_response
from genesys.runtime.store import Cycle, CycleInProgress, CycleMessage

router = APIRouter(tags=["cycles"])


class CycleCreate(BaseModel):
    """Start a learning cycle now."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("requested by an operator", min_length=1, max_length=2000)
    force_curate: bool = Field(False, description="Curate a new dataset version even if nothing changed.")


class CyclesPublic(BaseModel):
    data: list[Cycle]
    count: int = Field(description="All cycles stored.")


class CycleDetail(Cycle):
    messages: list[CycleMessage] = Field(description="Every message of the cycle, in order.")


@router.get("/v1/cycles", response_model=CyclesPublic)
async def list_cycles(
    services: ServicesDep,
    _: OperatorCaller,
    limit: int = Query(20, ge=1, le=200),
    offset: int = Query(0, ge=0),
) -> CyclesPublic:
    """The cycles, newest first."""

    def read() -> CyclesPublic:
        cycles = services.store.cycles
        return CyclesPublic(data=cycles.recent(limit=limit, offset=offset), count=cycles.count())

    return await asyncio.to_thread(read)


@router.get("/v1/cycles/{cycle_id}", response_model=CycleDetail)
async def get_cycle(cycle_id: str, services: ServicesDep, _: OperatorCaller) -> CycleDetail:
    """One cycle and its messages; 404 for an unknown id."""

    def read() -> CycleDetail:
        cycle = services.store.cycles.get(cycle_id)
        return CycleDetail(**cycle.model_dump(), messages=services.store.cycles.messages(cycle_id))

    return await asyncio.to_thread(read)


@router.post("/v1/cycles", response_model=Cycle, status_code=202)
async def start_cycle(services: ServicesDep, caller: OperatorCaller, body: CycleCreate | None = None) -> Any:
    """Start a cycle in the background; the answer names it (follow it with ``GET /v1/cycles/{id}``)."""
    scheduler = services.cycles
    if scheduler is None:
        return error_response(503, "the society does not run in this server", type_="server_error")
    body = body or CycleCreate()
    try:
        return await asyncio.to_thread(
            scheduler.trigger,
            trigger="operator",
            requested_by=caller.name or "local operator (no API keys)",
            reason=body.reason,
            force_curate=body.force_curate,
        )
    except CycleInProgress as exc:
        return _conflict(exc)


def _conflict(exc: CycleInProgress) -> JSONResponse:
    return error_response(409, str(exc), param=None, code=exc.code)
