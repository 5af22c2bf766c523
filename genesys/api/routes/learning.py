"""``GET /v1/learning``: how the learning loop is set up in this server (the operator role or above):
the society's agents and their prompts, the triggers that start cycles, and the data pipeline that
feeds them. ``genesys.client``'s ``setup_training_system`` reads it."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from genesys.agents.learning_status import LearningSetup, learning_setup
from genesys.api.deps import OperatorCaller, ServicesDep

router = APIRouter(tags=["learning"])


@router.get("/v1/learning", response_model=LearningSetup)
async def get_learning(services: ServicesDep, _: OperatorCaller) -> LearningSetup:
    """The set-up and state now; nothing is loaded or started."""
    return await asyncio.to_thread(learning_setup, services.settings, services.store, services.cycles)
