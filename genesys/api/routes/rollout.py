"""``/v1/rollout``: operators see and steer the rollout of an adapter (the operator role or above).

Each step is audited with the caller's key name; the server applies it at once (hot swap) and
answers with the new status. A step that does not fit the rollout's state is a 400 whose message
says why (``approve`` with nothing waiting, ``hold`` with nothing running, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter

from genesys.api.deps import Caller, OperatorCaller, Services, ServicesDep
from genesys.tools.rollout import RolloutActionRequest, RolloutService, RolloutStatus, StartRolloutRequest

router = APIRouter(tags=["rollout"])


def _actor(caller: Caller) -> str:
    return caller.name or "local operator (no API keys)"


def _service(services: Services) -> RolloutService:
    return RolloutService.from_settings(services.store, services.settings)


async def _act(services: Services, step: Callable[[RolloutService], RolloutStatus]) -> RolloutStatus:
    """Take the step, make the server follow it (load, switch, drain), answer the status after both."""

    def run() -> RolloutStatus:
        step(_service(services))
        if services.controller is not None:
            services.controller.apply()
        return _service(services).status(evaluate=False)

    return await asyncio.to_thread(run)


@router.get("/v1/rollout", response_model=RolloutStatus)
async def get_rollout(services: ServicesDep, _: OperatorCaller) -> RolloutStatus:
    """Production, the backup, the current (or last) rollout with its audit trail, and its arms now."""
    return await asyncio.to_thread(_service(services).status)


@router.post("/v1/rollout/start", response_model=RolloutStatus)
async def start_rollout(
    body: StartRolloutRequest, services: ServicesDep, caller: OperatorCaller
) -> RolloutStatus:
    """Roll a validated adapter out (at once, or after approval when ``deploy.approval`` is operator)."""
    return await _act(services, lambda s: s.start(body.candidate, actor=_actor(caller), reason=body.reason))


@router.post("/v1/rollout/approve", response_model=RolloutStatus)
async def approve_rollout(
    services: ServicesDep, caller: OperatorCaller, body: RolloutActionRequest | None = None
) -> RolloutStatus:
    """Let the rollout waiting for approval start."""
    reason = body.reason if body else None
    return await _act(services, lambda s: s.approve(actor=_actor(caller), reason=reason))


@router.post("/v1/rollout/reject", response_model=RolloutStatus)
async def reject_rollout(
    services: ServicesDep, caller: OperatorCaller, body: RolloutActionRequest | None = None
) -> RolloutStatus:
    """Refuse the rollout waiting for approval (its adapter becomes rejected)."""
    reason = body.reason if body else None
    return await _act(services, lambda s: s.reject(actor=_actor(caller), reason=reason))


@router.post("/v1/rollout/hold", response_model=RolloutStatus)
async def hold_rollout(
    services: ServicesDep, caller: OperatorCaller, body: RolloutActionRequest | None = None
) -> RolloutStatus:
    """Stop the running rollout from advancing (its traffic stays)."""
    reason = body.reason if body else None
    return await _act(services, lambda s: s.hold(actor=_actor(caller), reason=reason))


@router.post("/v1/rollout/resume", response_model=RolloutStatus)
async def resume_rollout(
    services: ServicesDep, caller: OperatorCaller, body: RolloutActionRequest | None = None
) -> RolloutStatus:
    """Let a held rollout advance again."""
    reason = body.reason if body else None
    return await _act(services, lambda s: s.resume(actor=_actor(caller), reason=reason))


@router.post("/v1/rollout/rollback", response_model=RolloutStatus)
async def rollback_rollout(
    services: ServicesDep, caller: OperatorCaller, body: RolloutActionRequest | None = None
) -> RolloutStatus:
    """Roll back the rollout in progress, or, with none, production to its backup."""
    reason = body.reason if body else None
    return await _act(services, lambda s: s.rollback(actor=_actor(caller), reason=reason))
