"""``GET /v1/interactions/{id}``: one interaction with its feedback and the IDE events linked to it."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from genesys.api.deps import ServicesDep, UserCaller
from genesys.tools.feedback import InteractionDetail, interaction_detail

router = APIRouter(tags=["interactions"])


@router.get("/v1/interactions/{interaction_id}", response_model=InteractionDetail)
async def get_interaction(interaction_id: str, services: ServicesDep, _: UserCaller) -> InteractionDetail:
    return await asyncio.to_thread(interaction_detail, services.store, interaction_id)
