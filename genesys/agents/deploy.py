"""The Deploy agent: puts the Validator's candidate in front of users gradually (``DeployReport``).

Tools: ``start_rollout`` (``genesys.tools.rollout.RolloutService.start``: an A/B test on
``deploy.ab_traffic`` of users, or a rollout waiting for an operator with ``deploy.approval:
operator``), ``rollout_status`` and ``decline_rollout``. The gate is the rollout service's: it refuses
any adapter the Validator did not pass (state other than ``validated``) and a second rollout while one
is active, whatever an agent asks. The cycle ends once a rollout is started or queued; the server's
rollout controller then runs it (stages, promotion, rollback) for hours.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import ClassVar

import structlog
from autogen_agentchat.messages import BaseAgentEvent
from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient
from pydantic import BaseModel

from genesys.agents.reports import DeployReport, StepReport, ValidationSummary
from genesys.agents.roles import (
    CycleContext,
    Inbox,
    LlmAgent,
    PolicyAgent,
    ReportSlot,
    ReportTool,
    RoleAgent,
    build_llm_agent,
    build_policy_agent,
)
from genesys.runtime.store import Rollout

log = structlog.get_logger(__name__)

NAME = "deploy"
PROMPT = "deploy"
DESCRIPTION = "Rolls a validated adapter out to users: A/B test, gradual stages, rollback on degradation."


class RolloutOverview(BaseModel):
    production: str
    backup: str | None
    rollout_id: str | None
    candidate: str | None
    state: str | None
    traffic: float
    summary: str


def actor(ctx: CycleContext) -> str:
    return f"deploy agent (cycle {ctx.cycle_id})" if ctx.cycle_id else "deploy agent"


def _report(rollout: Rollout, *, reason: str) -> DeployReport:
    return DeployReport(
        started=True,
        reason=reason,
        candidate=rollout.candidate,
        rollout_id=rollout.id,
        rollout_state=rollout.state,
        traffic=rollout.traffic,
        approval=rollout.approval,
    )


def start(ctx: CycleContext, candidate: str, reason: str) -> DeployReport:
    """Start (or queue for approval) the rollout of ``candidate``; raises ``InvalidRequest`` when the
    rollout service refuses (not validated, another rollout active) and ``NotFound``."""
    from genesys.tools.rollout import RolloutService

    active = ctx.store.rollouts.active()
    if active is not None and active.candidate == candidate:  # a resumed cycle that already started it
        return _report(active, reason=f"rollout {active.id} of {candidate} is already {active.state}")
    service = RolloutService.from_settings(ctx.store, ctx.settings)
    status = service.start(candidate, actor=actor(ctx), reason=reason.strip() or None)
    rollout = status.rollout
    assert rollout is not None  # start made one
    ctx.record(rollout_id=rollout.id)
    if ctx.on_rollout is not None:  # the server loads the candidate and splits traffic now
        try:
            ctx.on_rollout()
        except Exception as exc:
            log.warning("deploy.apply_failed", rollout=rollout.id, error=str(exc))
    if rollout.state == "awaiting_approval":
        why = (
            f"rollout {rollout.id} of {candidate} waits for an operator's approval (genesys rollout approve)"
        )
    else:
        why = (
            f"rollout {rollout.id} started: {candidate} serves {rollout.traffic:.0%} of users against "
            f"{rollout.baseline}, then {', '.join(f'{s:.0%}' for s in rollout.stages[1:])}"
        )
    return _report(rollout, reason=why)


def tools(ctx: CycleContext, slot: ReportSlot) -> list[ReportTool]:
    def start_rollout(candidate: str, reason: str = "") -> DeployReport:
        """Roll the validated candidate out: an A/B test on a share of users, widened stage by stage
        (or queued for an operator's approval). Refused for anything the Validator did not pass."""
        with slot.noting("start_rollout"):
            return slot.keep(start(ctx, candidate, reason))

    def rollout_status() -> RolloutOverview:
        """Production, its backup, and the current (or last) rollout."""
        from genesys.tools.rollout import RolloutService

        status = RolloutService.from_settings(ctx.store, ctx.settings).status(evaluate=False)
        rollout = status.rollout
        return RolloutOverview(
            production=status.production,
            backup=status.backup,
            rollout_id=rollout.id if rollout else None,
            candidate=rollout.candidate if rollout else None,
            state=rollout.state if rollout else None,
            traffic=rollout.traffic if rollout else 0.0,
            summary=status.summary,
        )

    def decline_rollout(candidate: str, reason: str) -> DeployReport:
        """Do not roll the candidate out now, and say why (it stays validated for an operator)."""
        return slot.keep(DeployReport(started=False, reason=reason or "declined", candidate=candidate))

    return [
        ReportTool(start_rollout, description=start_rollout.__doc__ or ""),
        ReportTool(rollout_status, description=rollout_status.__doc__ or ""),
        ReportTool(decline_rollout, description=decline_rollout.__doc__ or ""),
    ]


class _Deploy:
    report_type: ClassVar[type[StepReport]] = DeployReport
    deciding_tool: ClassVar[str] = "start_rollout"

    def stop_report(self, reason: str) -> StepReport:
        return DeployReport(started=False, reason=reason)


class DeployPolicy(_Deploy, PolicyAgent):
    """Rolls out what the Validator passed."""

    async def decide(
        self, inbox: Inbox, cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent, None]:
        verdict = inbox.latest(ValidationSummary)
        if verdict is None or not verdict.passed or verdict.candidate is None:
            self.slot.keep(DeployReport(started=False, reason="the Validator passed no candidate"))
            return
        reason = f"validated: {verdict.reason}"[:2000]
        arguments = {"candidate": verdict.candidate, "reason": reason}
        async for event in self.call("start_rollout", arguments, cancellation_token):
            yield event


class DeployLlm(_Deploy, LlmAgent):
    pass


def policy_agent(ctx: CycleContext) -> RoleAgent:
    return build_policy_agent(DeployPolicy, NAME, DESCRIPTION, tools, ctx)


def llm_agent(ctx: CycleContext, client: ChatCompletionClient, prompt: str) -> RoleAgent:
    return build_llm_agent(DeployLlm, NAME, DESCRIPTION, tools, ctx, client, prompt)
