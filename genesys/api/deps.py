"""What route handlers depend on: the app's services and the caller's role."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from genesys.agents.genesys import GenesysAssistant
from genesys.errors import AuthError
from genesys.runtime.ab_router import AbRouter
from genesys.runtime.engine_host import EngineHost
from genesys.runtime.interaction_log import InteractionLog
from genesys.runtime.metrics import Metrics
from genesys.runtime.rollout_controller import RolloutController
from genesys.runtime.settings import ApiKey, Role, Settings
from genesys.runtime.store import Store

if TYPE_CHECKING:
    from genesys.agents.scheduler import CycleScheduler

_RANK: dict[Role, int] = {"user": 0, "operator": 1, "admin": 2}


@dataclass
class Services:
    settings: Settings
    host: EngineHost
    store: Store
    log: InteractionLog
    router: AbRouter
    assistant: GenesysAssistant
    started_at: int
    metrics: Metrics
    # Applies rollouts to the engine and router (hot swap); None only in apps built without one.
    controller: RolloutController | None = None
    # Runs the society's learning cycles in the background; None in apps built without it.
    cycles: CycleScheduler | None = None


@dataclass(frozen=True)
class Caller:
    name: str | None
    role: Role


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def authenticate(settings: Settings, authorization: str | None) -> Caller:
    """The caller behind an ``Authorization`` header; everyone is admin when no keys are configured."""
    if not settings.auth_enabled:
        return Caller(None, "admin")
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthError("You didn't provide an API key. Send 'Authorization: Bearer <key>'.")
    given = _digest(authorization[7:].strip())
    match: ApiKey | None = None
    for key in settings.auth.keys:
        if hmac.compare_digest(given, _digest(key.key.get_secret_value())):
            match = key
    if match is None:
        raise AuthError("Incorrect API key provided.")
    return Caller(match.name, match.role)


def require(role: Role) -> Callable[..., Awaitable[Caller]]:
    """A dependency that lets through callers with ``role`` or a higher one."""

    # async: nothing here blocks, and a sync dependency costs a threadpool hop per request.
    async def _check(request: Request, services: ServicesDep) -> Caller:
        caller = authenticate(services.settings, request.headers.get("authorization"))
        if _RANK[caller.role] < _RANK[role]:
            raise AuthError(f"this needs the '{role}' role; your key has '{caller.role}'", forbidden=True)
        return caller

    return _check


UserCaller = Annotated[Caller, Depends(require("user"))]
OperatorCaller = Annotated[Caller, Depends(require("operator"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]
