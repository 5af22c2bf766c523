"""``GET /v1/analysis``: what Genesys has learned from its use (``genesys analyze --no-update`` over
HTTP; the operator role or above).

The report is ``genesys.tools.overview.InteractionOverview``, read from the store as it is: the
Analyst's annotations are brought up to date by each learning cycle (and by ``genesys analyze``), and
``pending_analysis`` counts the interactions they do not cover yet.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query

from genesys.api.deps import OperatorCaller, ServicesDep

router = APIRouter(tags=["analysis"])


@router.get("/v1/analysis")
async def get_analysis(
    services: ServicesDep,
    _: OperatorCaller,
    datasets: int = Query(5, ge=0, le=100, description="How many of the latest dataset versions to list."),
) -> Any:
    """Interactions by type, status, category and tier, satisfaction, corrections, knowledge gaps and
    the latest dataset versions."""
    # Imported here: the overview pulls in the analysis tools (Chroma), which the app need not load
    # to start.
    from genesys.tools.overview import interaction_overview

    report = await asyncio.to_thread(
        interaction_overview, services.store, services.settings, datasets=datasets
    )
    return report.model_dump(mode="json")
