"""``POST /v1/continue/events``: where Continue's ``data:`` destinations post development data.

Configure it in Continue's config.yaml (``data: [{name, destination: http://<host>/v1/continue/events,
schema: 0.2.0}]``); every event is stored, even one that cannot be linked to an interaction.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from genesys.api.deps import ServicesDep, UserCaller
from genesys.tools.continue_events import ContinueEvent, EventReceipt, ingest_continue_event

router = APIRouter(tags=["feedback"])


@router.post("/v1/continue/events", response_model=EventReceipt)
async def post_continue_event(body: ContinueEvent, services: ServicesDep, caller: UserCaller) -> EventReceipt:
    return await asyncio.to_thread(ingest_continue_event, services.store, body, user=caller.name)
