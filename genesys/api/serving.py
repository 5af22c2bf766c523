"""What the generation routes share: choosing the model version, parameters, SSE framing, recording."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from genesys.api.deps import Services
from genesys.api.schemas import _GenerationFields
from genesys.errors import NotFound
from genesys.runtime.ab_router import BASE_VERSION, Route
from genesys.runtime.engines.base import GenerationParams
from genesys.runtime.interaction_log import last_user_text
from genesys.runtime.interaction_type import classify_interaction
from genesys.runtime.store import Endpoint, Interaction, Status, new_interaction_id, utcnow

INTERACTION_HEADER = "X-Genesys-Interaction-Id"
VERSION_HEADER = "X-Genesys-Model-Version"
CONVERSATION_HEADER = "X-Genesys-Conversation-Id"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def served_versions(services: Services) -> list[str]:
    return [BASE_VERSION, *services.host.engine.info().adapters]


def resolve_route(services: Services, model: str, *, user: str | None, conversation_id: str) -> Route:
    """``<name>`` goes through the A/B router; ``<name>@<version>`` or a bare version is pinned."""
    name = services.settings.model.name
    if model == name:
        return services.router.route(user=user, conversation_id=conversation_id)
    version = model.split("@", 1)[1] if model.startswith(f"{name}@") else model
    if version in served_versions(services):
        return services.router.pinned(version)
    raise NotFound(
        f"The model '{model}' does not exist or you do not have access to it. Use '{name}' "
        f"(or '{name}@<version>' for one of: {', '.join(served_versions(services))}).",
        param="model",
        code="model_not_found",
    )


def generation_params(
    services: Services, body: _GenerationFields, max_tokens: int | None
) -> GenerationParams:
    model = services.settings.model
    return GenerationParams(
        max_tokens=max_tokens or model.max_tokens,
        temperature=model.temperature if body.temperature is None else body.temperature,
        top_p=body.top_p or 1.0,
        stop=tuple(body.stop or ()),
        seed=body.seed if body.seed is not None else model.seed,
    )


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


SSE_DONE = "data: [DONE]\n\n"


@dataclass
class Exchange:
    """One request being served: what is known up front, filled in as the answer arrives."""

    endpoint: Endpoint
    route: Route
    model: str
    conversation_id: str
    user: str | None
    request_id: str | None
    messages: list[dict[str, Any]]
    context: dict[str, Any]
    id: str = ""
    created_at: Any = field(default_factory=utcnow)
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None

    def __post_init__(self) -> None:
        self.id = self.id or new_interaction_id(self.endpoint)
        self.created = int(self.created_at.timestamp())

    @property
    def headers(self) -> dict[str, str]:
        return {
            INTERACTION_HEADER: self.id,
            VERSION_HEADER: self.route.model_version,
            CONVERSATION_HEADER: self.conversation_id,
        }

    def mark_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def interaction(
        self,
        answer: str,
        *,
        tool_calls: list[dict[str, Any]] | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        finish_reason: str | None = None,
        status: Status = "completed",
        error: str | None = None,
    ) -> Interaction:
        now = time.perf_counter()
        return Interaction(
            id=self.id,
            request_id=self.request_id,
            conversation_id=self.conversation_id,
            user=self.user,
            endpoint=self.endpoint,
            request_messages=self.messages,
            context=self.context,
            answer=answer,
            tool_calls=tool_calls or None,
            model_version=self.route.model_version,
            ab_arm=self.route.arm,
            latency_ms=(now - self.started) * 1000,
            ttft_ms=(self.first_token_at - self.started) * 1000 if self.first_token_at else None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish_reason,
            status=status,
            error=error,
            interaction_type=classify_interaction(last_user_text(self.messages)),
            created_at=self.created_at,
        )
