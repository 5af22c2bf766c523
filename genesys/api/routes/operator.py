"""``/v1/operator/chat``: operators talk to the Deploy agent (the operator role or above).

``POST /v1/operator/chat`` ``{"message", "conversation_id"?}`` answers ``{"conversation_id", "reply",
"action", "rollout"}``: the Deploy agent's reply, the rollout step it took or refused (null for a
question) and the rollout status after it. A step is taken with the caller's key name as the actor and
applied by the server at once (hot swap), as ``/v1/rollout`` does. ``GET
/v1/operator/chat/{conversation_id}`` reads a conversation back.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import APIRouter

from genesys.agents.deploy_operator import (
    DeployOperator,
    OperatorChatReply,
    OperatorChatRequest,
    OperatorConversationDetail,
    conversation_detail,
)
from genesys.api.deps import Caller, OperatorCaller, Services, ServicesDep
from genesys.runtime.prompts import PromptLibrary

if TYPE_CHECKING:
    from autogen_core.models import ChatCompletionClient

router = APIRouter(tags=["operator"])
# One library for the server's life: a prompt file broken by an edit falls back to its last good text.
_PROMPTS = PromptLibrary()


def _operator(caller: Caller) -> str:
    return caller.name or "local operator (no API keys)"


def _deploy_agent(services: Services, caller: Caller) -> DeployOperator:
    settings = services.settings

    def model_client() -> ChatCompletionClient:
        from genesys.agents.society import model_clients

        return model_clients(settings, services.host)("deploy")

    return DeployOperator(
        services.store,
        settings,
        operator=_operator(caller),
        on_change=services.controller.apply if services.controller is not None else None,
        model_client=model_client,
        prompts=_PROMPTS,
    )


@router.post("/v1/operator/chat", response_model=OperatorChatReply)
async def operator_chat(
    body: OperatorChatRequest, services: ServicesDep, caller: OperatorCaller
) -> OperatorChatReply:
    """One message to the Deploy agent; 400 for an empty message, 404 for an unknown conversation."""
    return await _deploy_agent(services, caller).converse(body.message, body.conversation_id)


@router.get("/v1/operator/chat/{conversation_id}", response_model=OperatorConversationDetail)
async def get_operator_chat(
    conversation_id: str, services: ServicesDep, _: OperatorCaller
) -> OperatorConversationDetail:
    """The conversation with every message, in order; 404 for an unknown id."""
    return await asyncio.to_thread(conversation_detail, services.store, conversation_id)
