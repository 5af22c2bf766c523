"""``GET /v1/models``: the configured model name (A/B routed) and each servable version."""

from __future__ import annotations

from fastapi import APIRouter

from genesys.api.deps import ServicesDep, UserCaller
from genesys.api.schemas import ModelCard, ModelList
from genesys.api.serving import served_versions

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList)
async def list_models(services: ServicesDep, _: UserCaller) -> ModelList:
    name = services.settings.model.name
    created = services.started_at
    base = services.host.engine.info().base_model
    cards = [ModelCard(id=name, created=created, root=base)]
    cards += [
        ModelCard(id=f"{name}@{version}", created=created, root=base, parent=name)
        for version in served_versions(services)
    ]
    return ModelList(data=cards)
