"""The Deploy agent's rollout tools: start a validated adapter on a share of users, watch the A/B
arms, widen it stage by stage, promote it or roll it back, and let operators steer.

One rollout at a time. Its states (``genesys.runtime.store.rollouts``) and who moves them::

    start (approval auto)     -> running, stage 1 (ab_traffic of users)
    start (approval operator) -> awaiting_approval -> running (approve) | rejected (reject)
    running -> running, next stage   tick: the stage's time is over and the arms are healthy
    running -> promoted              tick: the last stage is over and the candidate is better
    running | held -> rolled_back    tick: error spike or degradation; or an operator's rollback
    running -> held -> running       an operator's hold and resume (or a degradation, when
                                     rollback_on_degradation is off)

With every rollout step, the registry moves the adapter in the same transaction: validated -> canary
when it first takes traffic, canary -> production on promotion (the old production is retired and
kept as the backup), canary -> rolled_back on rollback, validated -> rejected on reject. Only a
version in ``validated`` can start: the registry's rule that canary comes only from validated is the
gate that keeps anything the Validator did not pass away from users.

The stages last ``quality_gates.a_b_test_duration_hours`` in all, split evenly unless
``deploy.stage_hours`` says otherwise. The arms are compared by ``genesys.tools.ab_stats`` at each
tick. A degradation holds the rollout instead of rolling it back when
``quality_gates.rollback_on_degradation`` is off; an error spike always rolls back. A held rollout
keeps its traffic and does not advance, but is still rolled back automatically (error spike, or
degradation when rollback_on_degradation is on); resuming it gives its stage back the time it was
held.

The tools change rows only. The server's ``RolloutController`` makes the engine and the A/B router
follow them (hot swap). Every method raises ``InvalidRequest`` with a sentence an operator (or the
Deploy agent) can act on, or ``NotFound`` for an unknown version.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from genesys.errors import InvalidRequest
from genesys.runtime.ab_router import BASE_VERSION
from genesys.runtime.store import Rollout, RolloutEvent, Store, utcnow
from genesys.runtime.store.rollouts import AdapterChange, Approval, new_rollout_id
from genesys.tools.ab_stats import AbCriteria, AbDecision, evaluate_arms

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings

CONTROLLER = "deploy-controller"
TickAction = Literal["none", "waiting", "held", "continue", "advance", "hold", "promote", "rollback"]


class RolloutPolicy(BaseModel):
    """What a rollout follows, from the ``deploy`` and ``quality_gates`` settings."""

    approval: Approval = "auto"
    stages: list[float] = Field(default_factory=lambda: [0.2, 0.5, 1.0])
    stage_seconds: list[float] = Field(default_factory=lambda: [8 * 3600.0] * 3)
    extension_seconds: float = 24 * 3600.0
    rollback_on_degradation: bool = True
    criteria: AbCriteria = Field(default_factory=AbCriteria)

    @classmethod
    def from_settings(cls, settings: Settings) -> RolloutPolicy:
        deploy, gates = settings.deploy, settings.quality_gates
        if deploy.stage_hours is not None:
            seconds = [hours * 3600 for hours in deploy.stage_hours]
        else:
            seconds = [gates.a_b_test_duration_hours * 3600 / len(deploy.stages)] * len(deploy.stages)
        return cls(
            approval=deploy.approval,
            stages=list(deploy.stages),
            stage_seconds=seconds,
            extension_seconds=deploy.extension_hours * 3600,
            rollback_on_degradation=gates.rollback_on_degradation,
            criteria=AbCriteria.from_settings(settings),
        )


class StartRolloutRequest(BaseModel):
    """Roll a validated adapter version out."""

    candidate: str = Field(min_length=1, max_length=64, description="The adapter version (state validated).")
    reason: str = Field("validated; A/B test against production", min_length=1, max_length=2000)


class RolloutActionRequest(BaseModel):
    """An operator's step on the current rollout; the reason goes into the audit trail."""

    reason: str | None = Field(None, min_length=1, max_length=2000)


class RolloutStatus(BaseModel):
    """Where deployment stands: production, the backup, the current (or last) rollout and its arms."""

    production: str = Field(description="The version in production ('base': the model without adapter).")
    backup: str | None = Field(description="The version a production rollback restores.")
    rollout: Rollout | None = Field(description="The active rollout, else the most recent one.")
    events: list[RolloutEvent] = Field(default_factory=list, description="The rollout's audit trail.")
    stage_ends_at: datetime | None = None
    test_ends_at: datetime | None = Field(
        None, description="End of the last stage, when promotion is decided."
    )
    evaluation: AbDecision | None = Field(None, description="The arms now (or at the last tick).")
    summary: str


class TickResult(BaseModel):
    """What one evaluation of the rollout did."""

    action: TickAction
    reason: str
    rollout: Rollout | None = None
    evaluation: AbDecision | None = None


class RolloutService:
    """The rollout tools over one store. Methods are safe to call from several threads."""

    def __init__(self, store: Store, policy: RolloutPolicy) -> None:
        self.store = store
        self.policy = policy

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> RolloutService:
        return cls(store, RolloutPolicy.from_settings(settings))

    # -- operator and agent actions ---------------------------------------------------------------

    def start(
        self, candidate: str, *, actor: str, reason: str | None = None, now: datetime | None = None
    ) -> RolloutStatus:
        """Start rolling ``candidate`` out: at once on ``ab_traffic`` of users (approval auto), or
        waiting for an operator (approval operator).

        Raises ``NotFound`` for an unknown version; ``InvalidRequest`` for a version that is not
        ``validated`` (the Validator has not passed it, or it already served) or while another rollout
        is active.
        """
        now = now or utcnow()
        reason = reason or "validated; A/B test against production"
        registry = self.store.adapters
        adapter = registry.get(candidate)
        if adapter.state != "validated":
            hint = {
                "candidate": "run the Validator on it first",
                "rejected": "the Validator or an operator rejected it",
                "canary": "it is already in a rollout",
                "production": "it is already in production",
            }.get(adapter.state, "only validated versions can be rolled out")
            raise InvalidRequest(
                f"adapter {candidate} is {adapter.state}, not validated: {hint}",
                param="candidate",
                code="not_validated",
            )
        production = registry.production()
        policy = self.policy
        rollout = Rollout(
            id=new_rollout_id(now),
            candidate=candidate,
            baseline=production.version if production else BASE_VERSION,
            state="awaiting_approval",
            approval=policy.approval,
            stages=list(policy.stages),
            stage_seconds=list(policy.stage_seconds),
            extension_seconds=policy.extension_seconds,
            created_by=actor,
            reason=reason,
            created_at=now,
            updated_at=now,
        )
        change = None
        if policy.approval == "auto":
            rollout = rollout.model_copy(update=self._running_from(now))
            change = AdapterChange("canary", f"rollout {rollout.id}: {self._stage_text(rollout)} ({reason})")
        self.store.rollouts.create(rollout, actor=actor, reason=reason, adapter=change)
        return self.status(now=now, evaluate=False)

    def approve(self, *, actor: str, reason: str | None = None, now: datetime | None = None) -> RolloutStatus:
        """Let the rollout waiting for approval start on ``ab_traffic`` of users.

        Raises ``InvalidRequest`` when no rollout waits for approval.
        """
        now = now or utcnow()
        rollout = self._waiting("approve")
        reason = reason or "approved"
        updates = self._running_from(now)
        started = rollout.model_copy(update=updates)
        self.store.rollouts.change(
            rollout.id,
            expected={"awaiting_approval"},
            action="approve",
            actor=actor,
            reason=reason,
            at=now,
            updates=updates,
            adapter=AdapterChange("canary", f"rollout {rollout.id}: {self._stage_text(started)} ({reason})"),
        )
        return self.status(now=now, evaluate=False)

    def reject(self, *, actor: str, reason: str | None = None, now: datetime | None = None) -> RolloutStatus:
        """Refuse the rollout waiting for approval; its adapter becomes ``rejected``.

        Raises ``InvalidRequest`` when no rollout waits for approval.
        """
        now = now or utcnow()
        rollout = self._waiting("reject")
        reason = reason or "rejected"
        self.store.rollouts.change(
            rollout.id,
            expected={"awaiting_approval"},
            action="reject",
            actor=actor,
            reason=reason,
            at=now,
            updates={"state": "rejected", "ended_at": now, "outcome": f"rejected by {actor}: {reason}"},
            adapter=AdapterChange("rejected", f"rollout {rollout.id} rejected by {actor}: {reason}"),
        )
        return self.status(now=now, evaluate=False)

    def hold(self, *, actor: str, reason: str | None = None, now: datetime | None = None) -> RolloutStatus:
        """Stop the running rollout from advancing; its traffic stays as it is.

        Raises ``InvalidRequest`` unless a rollout is running.
        """
        now = now or utcnow()
        rollout = self._active_in("hold", {"running"})
        self.store.rollouts.change(
            rollout.id,
            expected={"running"},
            action="hold",
            actor=actor,
            reason=reason or "held",
            at=now,
            updates={"state": "held", "held_at": now},
        )
        return self.status(now=now, evaluate=False)

    def resume(self, *, actor: str, reason: str | None = None, now: datetime | None = None) -> RolloutStatus:
        """Let a held rollout advance again; its stage gets back the time it was held.

        Raises ``InvalidRequest`` unless a rollout is held.
        """
        now = now or utcnow()
        rollout = self._active_in("resume", {"held"})
        stage_started = rollout.stage_started_at or now
        if rollout.held_at is not None:
            stage_started += now - rollout.held_at
        self.store.rollouts.change(
            rollout.id,
            expected={"held"},
            action="resume",
            actor=actor,
            reason=reason or "resumed",
            at=now,
            updates={"state": "running", "held_at": None, "stage_started_at": stage_started},
        )
        return self.status(now=now, evaluate=False)

    def rollback(
        self, *, actor: str, reason: str | None = None, now: datetime | None = None
    ) -> RolloutStatus:
        """Roll back: the rollout in progress (its candidate leaves, production keeps serving), or,
        with none in progress, the production version (the backup is restored; the base model
        serves when there is none).

        Raises ``InvalidRequest`` when a rollout only waits for approval (reject it) or when nothing
        is in production to roll back.
        """
        now = now or utcnow()
        reason = reason or "rolled back by an operator"
        rollout = self.store.rollouts.active()
        if rollout is not None:
            if not rollout.serving:
                raise InvalidRequest(
                    f"rollout {rollout.id} of {rollout.candidate} waits for approval and serves nobody; "
                    "reject it instead",
                    code="invalid_rollout_state",
                )
            self._end_rolled_back(rollout, actor=actor, reason=reason, now=now, evaluation=None)
            return self.status(now=now, evaluate=False)
        if self.store.adapters.production() is None:
            raise InvalidRequest(
                "no rollout is in progress and no adapter is in production: nothing to roll back",
                code="nothing_to_roll_back",
            )
        self.store.adapters.rollback(actor=actor, reason=reason)
        return self.status(now=now, evaluate=False)

    def status(self, *, now: datetime | None = None, evaluate: bool = True) -> RolloutStatus:
        """Production, backup, the active (else latest) rollout with its audit trail and schedule, and
        the arms: measured now when ``evaluate`` and the candidate serves, else the last tick's."""
        now = now or utcnow()
        registry = self.store.adapters
        production = registry.production()
        backup = registry.backup()
        rollout = self.store.rollouts.active() or self.store.rollouts.latest()
        evaluation: AbDecision | None = None
        events: list[RolloutEvent] = []
        stage_ends = test_ends = None
        if rollout is not None:
            events = self.store.rollouts.events(rollout.id)
            stage_ends, test_ends = _schedule(rollout, now)
            if evaluate and rollout.serving and rollout.started_at is not None:
                evaluation = self._evaluate(rollout, final=False)
            elif rollout.last_evaluation is not None:
                evaluation = AbDecision.model_validate(rollout.last_evaluation)
        production_name = production.version if production else BASE_VERSION
        return RolloutStatus(
            production=production_name,
            backup=backup.version if backup else None,
            rollout=rollout,
            events=events,
            stage_ends_at=stage_ends,
            test_ends_at=test_ends,
            evaluation=evaluation,
            summary=_summary(rollout, production_name, stage_ends),
        )

    # -- the controller's tick --------------------------------------------------------------------

    def tick(self, now: datetime | None = None, *, actor: str = CONTROLLER) -> TickResult:
        """Evaluate the active rollout once and take the step it calls for: roll back on an error
        spike or a degradation, advance a stage whose time is over, promote or roll back at the end.
        Never raises for a rollout that someone else moved meanwhile; the next tick sees the new state."""
        now = now or utcnow()
        rollout = self.store.rollouts.active()
        if rollout is None:
            return TickResult(action="none", reason="no rollout in progress")
        if not rollout.serving:
            return TickResult(action="waiting", reason="waiting for an operator's approval", rollout=rollout)
        try:
            return self._tick(rollout, now, actor)
        except InvalidRequest as exc:
            # An operator acted between our read and our write: nothing to do this time.
            return TickResult(action="none", reason=str(exc), rollout=self.store.rollouts.active())

    def abort(self, reason: str, *, now: datetime | None = None, actor: str = CONTROLLER) -> RolloutStatus:
        """Roll back the rollout in progress because the server cannot serve its candidate.

        Raises ``InvalidRequest`` when no rollout serves.
        """
        now = now or utcnow()
        rollout = self._active_in("rollback", {"running", "held"})
        self._end_rolled_back(rollout, actor=actor, reason=reason, now=now, evaluation=None)
        return self.status(now=now, evaluate=False)

    def _tick(self, rollout: Rollout, now: datetime, actor: str) -> TickResult:
        production = self.store.adapters.production()
        production_name = production.version if production else BASE_VERSION
        if production_name != rollout.baseline:
            reason = f"production changed from {rollout.baseline} to {production_name} during the rollout"
            ended = self._end_rolled_back(rollout, actor=actor, reason=reason, now=now, evaluation=None)
            return TickResult(action="rollback", reason=reason, rollout=ended)
        candidate_state = self.store.adapters.get(rollout.candidate).state
        if candidate_state != "canary":
            reason = f"adapter {rollout.candidate} left canary outside the rollout (it is {candidate_state})"
            ended = self.store.rollouts.change(
                rollout.id,
                expected={"running", "held"},
                action="rollback",
                actor=actor,
                reason=reason,
                at=now,
                updates={"state": "rolled_back", "traffic": 0.0, "ended_at": now, "outcome": reason},
            )
            return TickResult(action="rollback", reason=reason, rollout=ended)
        stage_ends, _ = _schedule(rollout, now)
        last = rollout.stage == len(rollout.stages) - 1
        stage_over = stage_ends is not None and now >= stage_ends
        decision = self._evaluate(rollout, final=last and stage_over)
        self.store.rollouts.record_evaluation(rollout.id, decision.model_dump(mode="json"), at=now)
        why = decision.reasons[0]
        if decision.action == "rollback":
            if decision.finding == "degradation" and not self.policy.rollback_on_degradation:
                if rollout.state == "held":
                    return TickResult(action="held", reason=why, rollout=rollout, evaluation=decision)
                held = self.store.rollouts.change(
                    rollout.id,
                    expected={"running"},
                    action="hold",
                    actor=actor,
                    reason=f"{why}; rollback_on_degradation is off: held for an operator",
                    at=now,
                    updates={"state": "held", "held_at": now},
                )
                return TickResult(action="hold", reason=why, rollout=held, evaluation=decision)
            ended = self._end_rolled_back(rollout, actor=actor, reason=why, now=now, evaluation=decision)
            return TickResult(action="rollback", reason=why, rollout=ended, evaluation=decision)
        if rollout.state == "held":
            return TickResult(
                action="held", reason="held: not advancing", rollout=rollout, evaluation=decision
            )
        if not stage_over:
            return TickResult(action="continue", reason=why, rollout=rollout, evaluation=decision)
        if not last:
            return self._advance(rollout, decision, now, actor)
        if decision.action == "promote":
            return self._promote(rollout, decision, now, actor)
        assert stage_ends is not None
        if now < stage_ends + timedelta(seconds=rollout.extension_seconds):
            return TickResult(
                action="continue", reason=f"test extended: {why}", rollout=rollout, evaluation=decision
            )
        reason = f"inconclusive after the extension: {why}"
        ended = self._end_rolled_back(rollout, actor=actor, reason=reason, now=now, evaluation=decision)
        return TickResult(action="rollback", reason=reason, rollout=ended, evaluation=decision)

    def _advance(self, rollout: Rollout, decision: AbDecision, now: datetime, actor: str) -> TickResult:
        stage = rollout.stage + 1
        traffic = rollout.stages[stage]
        reason = (
            f"stage {rollout.stage + 1} ({rollout.traffic:.0%}) done, arms healthy: {decision.reasons[0]}; "
            f"now {traffic:.0%} of users"
        )
        advanced = self.store.rollouts.change(
            rollout.id,
            expected={"running"},
            action="advance",
            actor=actor,
            reason=reason,
            at=now,
            updates={"stage": stage, "traffic": traffic, "stage_started_at": now},
        )
        return TickResult(action="advance", reason=reason, rollout=advanced, evaluation=decision)

    def _promote(self, rollout: Rollout, decision: AbDecision, now: datetime, actor: str) -> TickResult:
        reason = f"A/B test {rollout.id} won: {decision.reasons[0]}"
        promoted = self.store.rollouts.change(
            rollout.id,
            expected={"running"},
            action="promote",
            actor=actor,
            reason=reason,
            at=now,
            updates={"state": "promoted", "traffic": 1.0, "ended_at": now, "outcome": reason},
            adapter=AdapterChange("production", reason, {"ab_test": _ab_metrics(rollout, decision)}),
        )
        return TickResult(action="promote", reason=reason, rollout=promoted, evaluation=decision)

    # -- helpers ----------------------------------------------------------------------------------

    def _evaluate(self, rollout: Rollout, *, final: bool) -> AbDecision:
        assert rollout.started_at is not None
        return evaluate_arms(
            self.store,
            production_version=rollout.baseline,
            candidate_version=rollout.candidate,
            since=rollout.started_at,
            criteria=self.policy.criteria,
            final=final,
        )

    def _end_rolled_back(
        self, rollout: Rollout, *, actor: str, reason: str, now: datetime, evaluation: AbDecision | None
    ) -> Rollout:
        metrics = {"ab_test": _ab_metrics(rollout, evaluation)} if evaluation is not None else {}
        return self.store.rollouts.change(
            rollout.id,
            expected={"running", "held"},
            action="rollback",
            actor=actor,
            reason=reason,
            at=now,
            updates={"state": "rolled_back", "traffic": 0.0, "ended_at": now, "outcome": reason},
            adapter=AdapterChange("rolled_back", f"rollout {rollout.id}: {reason}", metrics),
        )

    def _running_from(self, now: datetime) -> dict[str, object]:
        return {
            "state": "running",
            "stage": 0,
            "traffic": self.policy.stages[0],
            "started_at": now,
            "stage_started_at": now,
        }

    @staticmethod
    def _stage_text(rollout: Rollout) -> str:
        return f"A/B test on {rollout.traffic:.0%} of users"

    def _waiting(self, action: str) -> Rollout:
        rollout = self.store.rollouts.active()
        if rollout is None or rollout.state != "awaiting_approval":
            where = f" (rollout {rollout.id} of {rollout.candidate} is {rollout.state})" if rollout else ""
            raise InvalidRequest(
                f"no rollout is waiting for approval, so there is nothing to {action}{where}",
                code="nothing_waiting",
            )
        return rollout

    def _active_in(self, action: str, states: set[str]) -> Rollout:
        rollout = self.store.rollouts.active()
        if rollout is None:
            raise InvalidRequest(
                f"no rollout is in progress, so there is nothing to {action}", code="no_rollout"
            )
        if rollout.state not in states:
            wanted = " or ".join(sorted(states))
            raise InvalidRequest(
                f"rollout {rollout.id} of {rollout.candidate} is {rollout.state}; "
                f"'{action}' needs it {wanted}",
                code="invalid_rollout_state",
            )
        return rollout


def _schedule(rollout: Rollout, now: datetime) -> tuple[datetime | None, datetime | None]:
    """End of the current stage and of the last one (held time does not count)."""
    if rollout.stage_started_at is None or not rollout.serving:
        return None, None
    paused = (
        now - rollout.held_at if rollout.state == "held" and rollout.held_at is not None else timedelta(0)
    )
    stage_ends = rollout.stage_started_at + paused + timedelta(seconds=rollout.stage_seconds[rollout.stage])
    later = sum(rollout.stage_seconds[rollout.stage + 1 :])
    return stage_ends, stage_ends + timedelta(seconds=later)


def _ab_metrics(rollout: Rollout, decision: AbDecision | None) -> dict[str, object]:
    if decision is None:
        return {"rollout": rollout.id}
    return {
        "rollout": rollout.id,
        "against": rollout.baseline,
        "finding": decision.finding,
        "production_satisfaction": decision.production.satisfaction,
        "candidate_satisfaction": decision.candidate.satisfaction,
        "production_error_rate": decision.production.error_rate,
        "candidate_error_rate": decision.candidate.error_rate,
        "judged": [decision.production.judged, decision.candidate.judged],
    }


def _summary(rollout: Rollout | None, production: str, stage_ends: datetime | None) -> str:
    if rollout is None:
        return f"no rollout yet; {production} serves everyone"
    head = f"rollout {rollout.id} of {rollout.candidate} (against {rollout.baseline})"
    if rollout.state == "awaiting_approval":
        return f"{head} waits for an operator's approval (genesys rollout approve | reject)"
    if rollout.state in ("running", "held"):
        where = f"{rollout.traffic:.0%} of users, stage {rollout.stage + 1}/{len(rollout.stages)}"
        if rollout.state == "held":
            return f"{head} is held at {where}"
        until = f" until {stage_ends:%Y-%m-%d %H:%M} UTC" if stage_ends is not None else ""
        return f"{head} runs on {where}{until}"
    return f"{head} {rollout.state.replace('_', ' ')}: {rollout.outcome}; {production} in production"
