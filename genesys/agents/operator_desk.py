"""What the Deploy agent can do and tell when an operator talks to it (``POST /v1/operator/chat``).

``OperatorDesk`` is the agent's toolbox for one operator's message: the rollout steps of
``genesys.tools.rollout.RolloutService`` taken with the operator as the actor, the rollout's status,
and the story of an adapter version told from the store (the Validator's report, the registry's
transitions, the rollouts of that version and their audit trail). Both ways of thinking (policy and
llm, ``genesys.agents.deploy_operator``) call the same desk, so the gates are the rollout service's
whatever the model asks: nothing the Validator did not pass can start, and a step that does not fit
the rollout's state is refused with the service's reason.

Every step returns an ``OperatorAction`` (taken or refused, and why); a refusal never raises here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog
from pydantic import BaseModel, Field

from genesys.errors import InvalidRequest, NotFound
from genesys.runtime.ab_router import BASE_VERSION
from genesys.runtime.store import AdapterVersion, Rollout, Store

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings
    from genesys.tools.rollout import RolloutService, RolloutStatus

log = structlog.get_logger(__name__)

ActionName = Literal["start", "approve", "reject", "hold", "resume", "rollback"]
ACTIONS: tuple[ActionName, ...] = ("start", "approve", "reject", "hold", "resume", "rollback")
# States in which a version has failed, and those in which it never did.
FAILED_STATES = frozenset({"rejected", "rolled_back"})


class OperatorAction(BaseModel):
    """A rollout step the Deploy agent took, or refused, for an operator."""

    name: ActionName
    version: str | None = Field(None, description="The adapter version the step was about.")
    done: bool = Field(description="True when the step was taken; False when it was refused.")
    detail: str = Field(description="What changed, or why nothing did (the rollout service's reason).")
    rollout_id: str | None = None
    rollout_state: str | None = Field(None, description="The rollout's state after the step.")


class VersionStory(BaseModel):
    """What happened to one adapter version, from the store."""

    version: str
    state: str
    failed: bool = Field(description="Rejected by the Validator or an operator, or rolled back.")
    summary: str = Field(description="The story in a few sentences.")
    failed_gates: list[str] = Field(default_factory=list, description="'gate: why' for each failed gate.")
    transitions: list[str] = Field(default_factory=list, description="Each registry move, with why.")
    rollouts: list[str] = Field(
        default_factory=list, description="Each rollout of the version, with how it ended."
    )


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment is not None else "at an unknown time"


class OperatorDesk:
    """The Deploy agent's tools for one operator message. Not shared between requests."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        operator: str,
        on_change: Callable[[], object] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.operator = operator
        self.on_change = on_change
        self.actions: list[OperatorAction] = []

    # -- reading ----------------------------------------------------------------------------------

    def service(self) -> RolloutService:
        from genesys.tools.rollout import RolloutService

        return RolloutService.from_settings(self.store, self.settings)

    def status(self, *, evaluate: bool = True) -> RolloutStatus:
        """Production, the backup, the current (or last) rollout with its trail and its arms."""
        return self.service().status(evaluate=evaluate)

    def versions(self) -> list[AdapterVersion]:
        return self.store.adapters.versions()

    def known(self, version: str) -> AdapterVersion:
        """The version; raises ``NotFound`` with the versions there are."""
        try:
            return self.store.adapters.get(version)
        except NotFound:
            names = [f"{v.version} ({v.state})" for v in self.versions()]
            there = f"the versions are {', '.join(names)}" if names else "no adapter has been trained yet"
            raise NotFound(f"I know no adapter version '{version}': {there}", param="version") from None

    def waiting_versions(self) -> list[str]:
        """Validated versions that no rollout has taken yet."""
        active = self.store.rollouts.active()
        taken = active.candidate if active is not None else None
        return [v.version for v in self.store.adapters.versions(state="validated") if v.version != taken]

    def latest_failure(self) -> str | None:
        """The version rejected or rolled back most recently, if any."""
        failed = [v for v in self.versions() if v.state in FAILED_STATES]
        return max(failed, key=lambda v: v.updated_at).version if failed else None

    def explain(self, version: str) -> VersionStory:
        """Why ``version`` is where it is: the Validator's verdict and failed gates, its rollouts and
        how they ended, each registry move. Raises ``NotFound`` for an unknown version."""
        adapter = self.known(version)
        transitions = self.store.adapters.transitions(version)
        rollouts = [r for r in self.store.rollouts.recent(limit=200) if r.candidate == version]
        validation = adapter.metrics.get("validation") or {}
        failed_gates = [
            f"{gate.get('name')}: {gate.get('reason')}"
            for gate in validation.get("gates", [])
            if isinstance(gate, dict) and not gate.get("passed")
        ]
        sentences = [self._headline(adapter, transitions, validation, failed_gates, rollouts)]
        for rollout in reversed(rollouts):  # oldest first
            sentences.append(self._rollout_sentence(rollout))
        ab_test = adapter.metrics.get("ab_test")
        if isinstance(ab_test, dict) and ab_test.get("candidate_satisfaction") is not None:
            sentences.append(_ab_sentence(ab_test))
        origin = self._origin(adapter)
        if origin:
            sentences.append(origin)
        return VersionStory(
            version=version,
            state=adapter.state,
            failed=adapter.state in FAILED_STATES,
            summary=" ".join(s for s in sentences if s),
            failed_gates=failed_gates,
            transitions=[
                f"{_when(t.at)}: {t.from_state or 'new'} -> {t.to_state} by {t.actor}: {t.reason}"
                for t in transitions
            ],
            rollouts=[f"{r.id}: {r.state}" + (f" ({r.outcome})" if r.outcome else "") for r in rollouts],
        )

    def _headline(
        self,
        adapter: AdapterVersion,
        transitions: list[Any],
        validation: dict[str, Any],
        failed_gates: list[str],
        rollouts: list[Rollout],
    ) -> str:
        version, state = adapter.version, adapter.state
        last = next((t for t in reversed(transitions) if t.to_state == state), None)
        if state == "rejected":
            if failed_gates and (last is None or last.actor == "validator" or "validat" in last.actor):
                against = validation.get("baseline") or BASE_VERSION
                return (
                    f"{version} was rejected by the Validator {_when(last.at if last else None)} against "
                    f"{against}: " + "; ".join(failed_gates) + "."
                )
            if last is not None:
                return f"{version} was rejected {_when(last.at)} by {last.actor}: {last.reason}."
            return f"{version} is rejected."
        if state == "rolled_back":
            if any(r.state == "rolled_back" for r in rollouts):  # the rollout's sentence says why
                return f"{version} was rolled back {_when(last.at if last else None)}."
            where = f" {_when(last.at)} by {last.actor}: {last.reason}" if last is not None else ""
            return f"{version} was rolled back{where}."
        if state == "candidate":
            return f"{version} has not failed: it is a candidate the Validator has not judged yet."
        if state == "validated":
            why = f" ({validation['summary']})" if validation.get("summary") else ""
            return f"{version} has not failed: the Validator passed it{why}; it waits for a rollout."
        if state == "canary":
            return f"{version} has not failed: it is in a rollout now (canary)."
        if state == "production":
            since = f" since {_when(last.at)}" if last is not None else ""
            return f"{version} has not failed: it is in production{since}."
        why = f" {_when(last.at)} by {last.actor}: {last.reason}" if last is not None else ""
        return f"{version} has not failed: it was {state}{why}."

    def _rollout_sentence(self, rollout: Rollout) -> str:
        events = self.store.rollouts.events(rollout.id)
        head = f"Rollout {rollout.id} (against {rollout.baseline}, started by {rollout.created_by})"
        if rollout.active:
            return f"{head} is {rollout.state.replace('_', ' ')} at {rollout.traffic:.0%} of users."
        end = events[-1] if events else None
        if end is None:
            return f"{head} ended {rollout.state}: {rollout.outcome}."
        at = f" at stage {end.stage + 1}" if rollout.started_at is not None else ""
        verb = rollout.state.replace("_", " ")
        return f"{head} was {verb}{at} {_when(end.at)} by {end.actor}: {end.reason}."

    def _origin(self, adapter: AdapterVersion) -> str:
        for cycle in self.store.cycles.recent(limit=200):
            if cycle.results.get("candidate") == adapter.version:
                dataset = f" on dataset {adapter.dataset_version}" if adapter.dataset_version else ""
                ended = cycle.outcome or cycle.state
                return f"It was trained by cycle {cycle.id}{dataset}, which ended {ended}."
        if adapter.dataset_version:
            return f"It was trained on dataset {adapter.dataset_version}."
        return ""

    # -- steps ------------------------------------------------------------------------------------

    def act(self, name: ActionName, version: str | None = None, reason: str | None = None) -> OperatorAction:
        """Take the rollout step ``name`` for the operator; a refusal comes back as ``done=False``."""
        steps: dict[str, Callable[[str | None, str | None], OperatorAction]] = {
            "start": self._start,
            "approve": self._approve,
            "reject": self._reject,
            "hold": self._steer("hold"),
            "resume": self._steer("resume"),
            "rollback": self._rollback,
        }
        try:
            if version is not None:
                self.known(version)
            action = steps[name](version, reason)
        except InvalidRequest as exc:  # NotFound included: the service's reason is the answer
            action = self._refused(name, version, str(exc))
        self.actions.append(action)
        if action.done and self.on_change is not None:
            try:  # the server loads, switches and drains now; a failure is in its log, not the reply's
                self.on_change()
            except Exception as exc:
                log.warning("operator.apply_failed", action=name, error=str(exc))
        log.info("operator.action", operator=self.operator, action=name, version=version, done=action.done)
        return action

    def _refused(self, name: ActionName, version: str | None, why: str) -> OperatorAction:
        active = self.store.rollouts.active()
        return OperatorAction(
            name=name,
            version=version,
            done=False,
            detail=why,
            rollout_id=active.id if active else None,
            rollout_state=active.state if active else None,
        )

    def _taken(self, name: ActionName, status: RolloutStatus, version: str | None) -> OperatorAction:
        rollout = status.rollout
        return OperatorAction(
            name=name,
            version=version or (rollout.candidate if rollout else None),
            done=True,
            detail=status.summary,
            rollout_id=rollout.id if rollout else None,
            rollout_state=rollout.state if rollout else None,
        )

    def _check_target(self, action: str, version: str | None, target: str | None, what: str) -> None:
        if version is not None and target is not None and version != target:
            raise InvalidRequest(f"{version} is not {what}: {target} is; nothing to {action} for {version}")

    def _start(self, version: str | None, reason: str | None) -> OperatorAction:
        if version is None:
            waiting = self.waiting_versions()
            hint = f" (validated: {', '.join(waiting)})" if waiting else " (none is validated)"
            raise InvalidRequest(f"name the version to roll out{hint}")
        service = self.service()
        status = service.start(version, actor=self.operator, reason=reason)
        return self._taken("start", status, version)

    def _approve(self, version: str | None, reason: str | None) -> OperatorAction:
        active = self.store.rollouts.active()
        service = self.service()
        if active is not None and active.state == "awaiting_approval":
            self._check_target("approve", version, active.candidate, "waiting for approval")
            return self._taken(
                "approve", service.approve(actor=self.operator, reason=reason), active.candidate
            )
        if version is None or active is not None:
            # The service says why there is nothing to approve.
            service.approve(actor=self.operator, reason=reason)
        assert version is not None
        # Nothing waits: approving a version is starting it (the gate: only a validated one starts).
        status = service.start(version, actor=self.operator, reason=reason or "approved by an operator")
        if status.rollout is not None and status.rollout.state == "awaiting_approval":
            status = service.approve(actor=self.operator, reason=reason)
        return self._taken("approve", status, version)

    def _reject(self, version: str | None, reason: str | None) -> OperatorAction:
        active = self.store.rollouts.active()
        if active is not None:
            self._check_target("reject", version, active.candidate, "waiting for approval")
        status = self.service().reject(actor=self.operator, reason=reason)
        return self._taken("reject", status, version)

    def _steer(self, name: Literal["hold", "resume"]) -> Callable[[str | None, str | None], OperatorAction]:
        def step(version: str | None, reason: str | None) -> OperatorAction:
            active = self.store.rollouts.active()
            if active is not None:
                self._check_target(name, version, active.candidate, "in the rollout in progress")
            service = self.service()
            status = (
                service.hold(actor=self.operator, reason=reason)
                if name == "hold"
                else service.resume(actor=self.operator, reason=reason)
            )
            return self._taken(name, status, version)

        return step

    def _rollback(self, version: str | None, reason: str | None) -> OperatorAction:
        active = self.store.rollouts.active()
        if active is not None:
            self._check_target("roll back", version, active.candidate, "in the rollout in progress")
        else:
            production = self.store.adapters.production()
            self._check_target(
                "roll back", version, production.version if production else BASE_VERSION, "in production"
            )
        status = self.service().rollback(actor=self.operator, reason=reason or "rolled back by an operator")
        return self._taken("rollback", status, version)


def _ab_sentence(ab_test: dict[str, Any]) -> str:
    def pct(value: Any) -> str:
        return f"{value:.0%}" if isinstance(value, int | float) else "n/a"

    judged = ab_test.get("judged") or [None, None]
    return (
        f"In its A/B test ({ab_test.get('finding', 'no finding')}) users were satisfied with "
        f"{pct(ab_test.get('candidate_satisfaction'))} of its judged answers ({judged[1]}) against "
        f"{pct(ab_test.get('production_satisfaction'))} for {ab_test.get('against', 'production')} "
        f"({judged[0]})."
    )
