"""Operators talk to the Deploy agent: "status", "why did v3 fail?", "approve v4", "hold", "resume",
"roll back", "reject".

``DeployOperator.converse`` takes one operator message of a conversation, answers it and stores both
(``store.operator_chats``). Two ways to think, as in the society (``autogen_agents.mode``):

- ``policy``: the message is read in code (``genesys.agents.operator_intents``); a step goes to the
  ``OperatorDesk`` with the operator as the actor, and the answer is built from the store (the rollout
  status, the Validator's report, the registry's transitions, the rollout audit trail). A message it
  does not understand gets the list of what it understands.
- ``llm``: an autogen ``AssistantAgent`` with the Deploy agent's prompt (``prompts/deploy.md``) and the
  desk's steps as ``FunctionTool``s. The reply is the model's, followed by what each step really did.

Either way the step is the desk's (and so the rollout service's): a model that approves an adapter the
Validator did not pass gets the refusal as its tool result, and the reply's ``action`` says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import structlog
from pydantic import BaseModel, ConfigDict, Field

from genesys.agents.operator_desk import ActionName, OperatorAction, OperatorDesk, VersionStory
from genesys.agents.operator_intents import ReadMessage, named_versions, read_message
from genesys.errors import ConfigError, GenesysError, InvalidRequest, NotFound
from genesys.runtime.store import OperatorMessage, Store
from genesys.tools.rollout import RolloutStatus

if TYPE_CHECKING:
    from autogen_core.models import ChatCompletionClient

    from genesys.runtime.prompts import PromptLibrary
    from genesys.runtime.settings import Settings

log = structlog.get_logger(__name__)

AGENT = "deploy agent"
MAX_MESSAGE_CHARS = 4000
HELP = (
    "I am the Deploy agent. I understand: 'status' (production, the rollout and its A/B arms); "
    "'why did v3 fail?' (the Validator's verdict, the rollouts of a version and how they ended); "
    "'roll out v4' (start a validated version); 'approve' or 'approve v4' (start the rollout waiting "
    "for approval); 'reject' (refuse it); 'hold' and 'resume' (stop and restart the stages); "
    "'roll back' (end the rollout, or take production back to its backup)."
)
_PAST = {
    "start": "started",
    "approve": "approved",
    "reject": "rejected",
    "hold": "held",
    "resume": "resumed",
    "rollback": "rolled back",
}
_VERB = {"rollback": "roll back"}


class OperatorChatRequest(BaseModel):
    """One operator message to the Deploy agent."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(max_length=MAX_MESSAGE_CHARS, description="What the operator says.")
    conversation_id: str | None = Field(
        None, max_length=64, description="Continue this conversation; omit it to start one."
    )


class OperatorChatReply(BaseModel):
    """The Deploy agent's answer, what it did, and the rollout after it."""

    conversation_id: str
    reply: str
    action: OperatorAction | None = Field(
        None, description="The rollout step taken (done) or refused (with why); null for a question."
    )
    rollout: RolloutStatus


class OperatorConversationDetail(BaseModel):
    """A stored conversation with the Deploy agent."""

    conversation_id: str
    started_by: str
    mode: str
    messages: list[OperatorMessage]


class DeployOperator:
    """The Deploy agent answering operators. One per request: agents are not coroutine-safe."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        operator: str,
        on_change: Callable[[], object] | None = None,
        model_client: ChatCompletionClient | Callable[[], ChatCompletionClient] | None = None,
        prompts: PromptLibrary | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.operator = operator
        self.on_change = on_change
        self.model_client = model_client
        self.prompts = prompts
        self.mode = settings.autogen_agents.mode

    async def converse(self, message: str, conversation_id: str | None = None) -> OperatorChatReply:
        """Answer ``message`` in the conversation ``conversation_id`` (a new one when None).

        Raises ``InvalidRequest`` for an empty message and ``NotFound`` for an unknown conversation.
        """
        text = message.strip()
        if not text:
            raise InvalidRequest(
                "message must not be empty: say 'help' to see what I understand", param="message"
            )
        chats = self.store.operator_chats
        if conversation_id is None:
            conversation = await asyncio.to_thread(chats.create, started_by=self.operator, mode=self.mode)
        else:
            conversation = await asyncio.to_thread(chats.get, conversation_id)
        history = await asyncio.to_thread(chats.messages, conversation.id)
        await asyncio.to_thread(chats.add, conversation.id, role="operator", author=self.operator, text=text)
        desk = OperatorDesk(self.store, self.settings, operator=self.operator, on_change=self.on_change)
        if self.mode == "llm":
            reply, action = await self._think(desk, text, history)
        else:
            reply, action = await asyncio.to_thread(policy_answer, desk, text, history)
        status = await asyncio.to_thread(desk.status)
        payload = action.model_dump(mode="json") if action is not None else None
        await asyncio.to_thread(
            chats.add, conversation.id, role="deploy", author=AGENT, text=reply, action=payload
        )
        return OperatorChatReply(conversation_id=conversation.id, reply=reply, action=action, rollout=status)

    async def _think(
        self, desk: OperatorDesk, text: str, history: Sequence[OperatorMessage]
    ) -> tuple[str, OperatorAction | None]:
        from autogen_core.models import ChatCompletionClient

        from genesys.runtime.prompts import PromptLibrary

        given = self.model_client
        try:
            if given is None:
                raise ConfigError("llm mode needs a model client for the Deploy agent")
            client = given if isinstance(given, ChatCompletionClient) else given()
            prompt = (self.prompts or PromptLibrary()).get("deploy").text
        except GenesysError as exc:  # a server set up wrong: say so, and take no step
            log.error("operator.model_unavailable", error=str(exc))
            return f"My model is not available ({exc}); nothing was done. " + status_text(desk), None
        return await llm_answer(
            desk,
            text,
            history,
            client=client,
            system_message=prompt,
            max_tool_iterations=self.settings.autogen_agents.max_tool_iterations,
        )


def conversation_detail(store: Store, conversation_id: str) -> OperatorConversationDetail:
    """The stored conversation and its messages; raises ``NotFound``."""
    conversation = store.operator_chats.get(conversation_id)
    return OperatorConversationDetail(
        conversation_id=conversation.id,
        started_by=conversation.started_by,
        mode=conversation.mode,
        messages=store.operator_chats.messages(conversation_id),
    )


# -- policy: read in code, answered from the store ---------------------------------------------------


def policy_answer(
    desk: OperatorDesk, text: str, history: Sequence[OperatorMessage]
) -> tuple[str, OperatorAction | None]:
    """The reply to ``text`` and the step it took (None for a question), decided in code."""
    known = [v.version for v in desk.versions()]
    read = read_message(text, known)
    if not read.understood:
        return f"I did not understand that. {HELP}", None
    if read.intent == "help":
        return HELP, None
    if read.intent == "status":
        return status_text(desk), None
    if read.intent == "explain":
        return _explain(desk, read, history), None
    if read.negated:
        return (
            f"I did nothing: I take a step only when asked plainly "
            f"('{_VERB.get(read.intent, read.intent)}'). " + status_text(desk),
            None,
        )
    version = read.version or read.unknown_version
    action = desk.act(cast(ActionName, read.intent), version, reason=f"operator chat: {text}"[:2000])
    return action_text(action), action


def _explain(desk: OperatorDesk, read: ReadMessage, history: Sequence[OperatorMessage]) -> str:
    version = read.version
    if version is None and read.unknown_version is not None:
        try:
            desk.known(read.unknown_version)
        except NotFound as exc:
            return f"{exc}."
    if version is None:
        known = [v.version for v in desk.versions()]
        for message in reversed(history):  # "why did it fail?" after a message that named one
            version, _ = named_versions(message.text, known)
            if version is not None:
                break
    if version is None:
        version = desk.latest_failure()
        if version is None:
            return "Nothing has failed yet: no adapter version was rejected or rolled back. " + status_text(
                desk
            )
    return desk.explain(version).summary


def status_text(desk: OperatorDesk) -> str:
    """The rollout status in a few sentences, from the store."""
    status = desk.status()
    lines = [status.summary[:1].upper() + status.summary[1:] + "."]
    lines.append(f"Production: {status.production}; backup: {status.backup or 'none'}.")
    evaluation = status.evaluation
    if evaluation is not None:
        arms = []
        for arm in (evaluation.production, evaluation.candidate):
            satisfaction = "n/a" if arm.satisfaction is None else f"{arm.satisfaction:.0%}"
            arms.append(
                f"{arm.arm} {arm.model_version}: satisfaction {satisfaction} of {arm.judged} judged, "
                f"{arm.requests} requests"
            )
        lines.append(f"A/B ({evaluation.finding}): " + "; ".join(arms) + f". {evaluation.reasons[0]}.")
    waiting = desk.waiting_versions()
    if waiting:
        lines.append(f"Validated and not rolled out: {', '.join(waiting)}.")
    cycle = desk.store.cycles.latest()
    if cycle is not None:
        ended = f" ({cycle.outcome}: {cycle.outcome_reason})" if cycle.outcome else ""
        lines.append(f"Last learning cycle {cycle.id}: {cycle.state}{ended}.")
    return " ".join(lines)


def action_text(action: OperatorAction) -> str:
    if action.done:
        return f"Done, {_PAST[action.name]}: {action.detail}."
    return f"I did not {_VERB.get(action.name, action.name)}: {action.detail}."


# -- llm: an AssistantAgent with the desk's steps as tools -------------------------------------------


class OperatorStatus(BaseModel):
    """The rollout status, as the model reads it."""

    summary: str
    production: str
    backup: str | None
    rollout_id: str | None
    candidate: str | None
    state: str | None
    traffic: float
    validated_waiting: list[str]
    ab_test: str | None = Field(None, description="The A/B decision and its first reason.")


def operator_tools(desk: OperatorDesk) -> list[Any]:
    """The desk as ``FunctionTool``s; a refused step raises, so the model gets an error result."""
    from genesys.agents.roles import ReportTool

    def step(name: str, version: str | None, reason: str) -> OperatorAction:
        action = desk.act(cast(ActionName, name), version or None, reason=reason.strip() or None)
        if not action.done:
            raise InvalidRequest(f"{name} refused: {action.detail}")
        return action

    def rollout_status() -> OperatorStatus:
        """Production, its backup, the current (or last) rollout, its A/B arms, validated versions."""
        status = desk.status()
        rollout = status.rollout
        evaluation = status.evaluation
        return OperatorStatus(
            summary=status.summary,
            production=status.production,
            backup=status.backup,
            rollout_id=rollout.id if rollout else None,
            candidate=rollout.candidate if rollout else None,
            state=rollout.state if rollout else None,
            traffic=rollout.traffic if rollout else 0.0,
            validated_waiting=desk.waiting_versions(),
            ab_test=f"{evaluation.finding}: {evaluation.reasons[0]}" if evaluation else None,
        )

    def explain_version(version: str) -> VersionStory:
        """Why an adapter version is where it is: the Validator's verdict and failed gates, its
        rollouts and how they ended, every registry move."""
        return desk.explain(version)

    def start_rollout(candidate: str, reason: str = "") -> OperatorAction:
        """Roll a validated version out (an A/B test on a share of users). Refused for anything the
        Validator did not pass, or while another rollout is in progress."""
        return step("start", candidate, reason)

    def approve_rollout(candidate: str = "", reason: str = "") -> OperatorAction:
        """Start the rollout waiting for an operator's approval (of ``candidate``, when named)."""
        return step("approve", candidate, reason)

    def reject_rollout(reason: str = "") -> OperatorAction:
        """Refuse the rollout waiting for approval; its adapter becomes rejected."""
        return step("reject", None, reason)

    def hold_rollout(reason: str = "") -> OperatorAction:
        """Stop the running rollout from advancing; its traffic stays."""
        return step("hold", None, reason)

    def resume_rollout(reason: str = "") -> OperatorAction:
        """Let a held rollout advance again."""
        return step("resume", None, reason)

    def rollback_rollout(reason: str = "") -> OperatorAction:
        """End the rollout in progress (production keeps serving), or, with none, take production
        back to its backup."""
        return step("rollback", None, reason)

    functions: list[Callable[..., Any]] = [
        rollout_status,
        explain_version,
        start_rollout,
        approve_rollout,
        reject_rollout,
        hold_rollout,
        resume_rollout,
        rollback_rollout,
    ]
    return [ReportTool(f, description=(f.__doc__ or "").replace("\n", " ")) for f in functions]


async def llm_answer(
    desk: OperatorDesk,
    text: str,
    history: Sequence[OperatorMessage],
    *,
    client: ChatCompletionClient,
    system_message: str,
    max_tool_iterations: int = 6,
) -> tuple[str, OperatorAction | None]:
    """The model's reply to ``text`` (with the conversation so far), then what each step it asked
    for really did; the last step is the reply's action."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.messages import TextMessage
    from autogen_core import CancellationToken

    agent = AssistantAgent(
        "deploy",
        client,
        tools=operator_tools(desk),
        system_message=system_message,
        reflect_on_tool_use=False,
        max_tool_iterations=max_tool_iterations,
    )
    messages = [
        TextMessage(content=m.text, source="operator" if m.role == "operator" else "deploy") for m in history
    ]
    messages.append(TextMessage(content=text, source="operator"))
    said = ""
    try:
        response = await agent.on_messages(messages, CancellationToken())
        if isinstance(response.chat_message, TextMessage):
            said = response.chat_message.content.strip()
    except Exception as exc:  # the model or its client failed: say so, with what was done before
        log.exception("operator.model_failed")
        said = f"My model failed ({type(exc).__name__}: {exc})."
    notes = [f"[{a.name}: {'done' if a.done else 'refused'}: {a.detail}]" for a in desk.actions]
    if not said and not notes:
        said = "I have nothing to say to that. " + HELP
    return "\n\n".join(part for part in (said, "\n".join(notes)) if part), (
        desk.actions[-1] if desk.actions else None
    )
