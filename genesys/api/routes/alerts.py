"""``GET /v1/alerts``: the alerts the server's rules raised, newest first (operator role or above).

``state`` picks firing, resolved or all (the default); ``limit`` caps the list (100 by default).
The rules, their thresholds and their automatic actions are those of ``genesys.tools.alerts``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from genesys.api.deps import OperatorCaller, ServicesDep
from genesys.tools.alerts import AlertList, StateFilter, list_alerts

router = APIRouter(tags=["alerts"])


@router.get("/v1/alerts", response_model=AlertList)
async def get_alerts(
    services: ServicesDep,
    _: OperatorCaller,
    state: Annotated[StateFilter, Query(description="firing, resolved or all.")] = "all",
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many alerts.")] = 100,
) -> AlertList:
    """Each alert with its kind, severity, state, summary, value against threshold, times and actions."""
    return await asyncio.to_thread(list_alerts, services.store, state=state, limit=limit)
