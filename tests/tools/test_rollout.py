"""The rollout state machine on a real store (SQLite and PostgreSQL), with simulated time (every call
takes ``now``): the Validator's gate, approval, stages, promotion with a backup, automatic rollback on
degradation and error spikes, hold and resume, and the audit trail of every step."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from genesys.errors import InvalidRequest, NotFound
from genesys.runtime.ab_router import AbRouter, Split
from genesys.runtime.engines.llamacpp import LlamaCppEngine
from genesys.runtime.rollout_controller import RolloutController
from genesys.runtime.serving_versions import serving_split
from genesys.runtime.settings import DeployConfig, QualityGates, load_settings
from genesys.runtime.store import AdapterVersion, Feedback, Interaction, Store
from genesys.tools.ab_stats import AbCriteria
from genesys.tools.rollout import CONTROLLER, RolloutPolicy, RolloutService

T0 = datetime(2026, 5, 1, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)
_ids = itertools.count()


def policy(**changes: Any) -> RolloutPolicy:
    """Three one-hour stages; 20 judged answers per arm; errors compared from 20 requests."""
    base = RolloutPolicy(
        approval="auto",
        stages=[0.2, 0.5, 1.0],
        stage_seconds=[3600.0] * 3,
        extension_seconds=3600.0,
        criteria=AbCriteria(min_samples_per_arm=20, min_requests_for_errors=20, satisfaction_threshold=0.85),
    )
    return base.model_copy(update=changes)


def register(store: Store, version: str, *, state: str = "validated") -> None:
    registry = store.adapters
    registry.register(
        AdapterVersion(version=version, path=f"/nowhere/{version}", base_model="embedded"),
        actor="trainer",
        reason="trained",
    )
    if state in ("validated", "production"):
        registry.transition(version, "validated", actor="validator", reason="passed the gates")
    if state == "rejected":
        registry.transition(version, "rejected", actor="validator", reason="regressed on HumanEval")
    if state == "production":
        registry.promote(version, actor="deploy", reason="first production version")


@pytest.fixture()
def store(store_url: str) -> Iterator[Store]:
    """The store on both backends (SQLite, PostgreSQL): the state machine must hold on each."""
    opened = Store(store_url)
    yield opened
    opened.close()


@pytest.fixture()
def service(store: Store) -> RolloutService:
    register(store, "v1", state="production")
    register(store, "v2")
    return RolloutService(store, policy())


def seed(
    store: Store, arm: str, version: str, *, up: int = 0, down: int = 0, errors: int = 0, at: datetime = T0
) -> None:
    """Answers of one arm: ``up`` thumbs-up, ``down`` thumbs-down, ``errors`` failed requests."""
    kinds = ["up"] * up + ["down"] * down + ["error"] * errors
    for kind in kinds:
        interaction = Interaction(
            id=f"chatcmpl-ro{next(_ids)}",
            conversation_id=f"conv-{next(_ids)}",
            request_messages=[{"role": "user", "content": "hi"}],
            answer="hello",
            model_version=version,
            ab_arm=arm,
            latency_ms=120,
            status="error" if kind == "error" else "completed",
            created_at=at + timedelta(minutes=1),
        )
        store.interactions.record(interaction)
        if kind != "error":
            store.feedback.upsert(Feedback(interaction_id=interaction.id, thumbs=kind))  # type: ignore[arg-type]


def actions(service: RolloutService) -> list[tuple[str, str | None, str, str]]:
    status = service.status(evaluate=False)
    return [(e.action, e.from_state, e.to_state, e.actor) for e in status.events]


def test_the_policy_splits_the_ab_test_duration_over_the_stages(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    made = RolloutPolicy.from_settings(settings)
    assert made.stages == [0.2, 0.5, 1.0] and made.stage_seconds == [8 * 3600.0] * 3
    assert made.approval == "auto" and made.rollback_on_degradation is True
    assert made.criteria.satisfaction_threshold == 0.85
    settings.deploy = DeployConfig(ab_traffic=0.1, stages=[0.1, 1.0], stage_hours=[2, 1], approval="operator")
    settings.quality_gates = QualityGates(rollback_on_degradation=False)
    made = RolloutPolicy.from_settings(settings)
    assert (made.stages, made.stage_seconds, made.approval) == ([0.1, 1.0], [7200.0, 3600.0], "operator")
    assert made.rollback_on_degradation is False
    with pytest.raises(ValueError, match="start at ab_traffic"):
        DeployConfig(ab_traffic=0.3)
    with pytest.raises(ValueError, match=r"last stage must be 1\.0"):
        DeployConfig(stages=[0.2, 0.5])


@pytest.mark.parametrize(("state", "hint"), [("candidate", "run the Validator"), ("rejected", "rejected it")])
def test_start_refuses_a_version_the_validator_has_not_passed(store: Store, state: str, hint: str) -> None:
    register(store, "v9", state=state)
    service = RolloutService(store, policy())
    with pytest.raises(InvalidRequest, match=f"adapter v9 is {state}, not validated: .*{hint}") as caught:
        service.start("v9", actor="ana", now=T0)
    assert caught.value.code == "not_validated"
    with pytest.raises(NotFound, match="no adapter version 'v404'"):
        service.start("v404", actor="ana", now=T0)
    assert store.rollouts.active() is None and store.adapters.get("v9").state == state
    assert serving_split(store.adapters, store.rollouts) == Split("base")


def test_auto_approval_starts_at_ab_traffic(service: RolloutService, store: Store) -> None:
    status = service.start("v2", actor="deploy-agent", reason="beats v1 by 7 points offline", now=T0)
    rollout = status.rollout
    assert rollout is not None and (rollout.state, rollout.traffic, rollout.baseline) == (
        "running",
        0.2,
        "v1",
    )
    assert status.stage_ends_at == T0 + HOUR and status.test_ends_at == T0 + 3 * HOUR
    assert "runs on 20% of users, stage 1/3" in status.summary
    assert store.adapters.get("v2").state == "canary"
    assert serving_split(store.adapters, store.rollouts) == Split("v1", "v2", 0.2)
    assert actions(service) == [("start", None, "running", "deploy-agent")]
    with pytest.raises(InvalidRequest, match="is still running; finish it"):
        register(store, "v3")
        service.start("v3", actor="ana", now=T0)


def test_operator_approval_waits_until_approved(store: Store) -> None:
    register(store, "v1", state="production")
    register(store, "v2")
    service = RolloutService(store, policy(approval="operator"))
    status = service.start("v2", actor="deploy-agent", now=T0)
    assert status.rollout is not None and status.rollout.state == "awaiting_approval"
    assert "waits for an operator's approval" in status.summary
    # Nothing serves it while it waits, and ticks do not start it.
    assert store.adapters.get("v2").state == "validated"
    assert service.tick(T0 + 5 * HOUR).action == "waiting"
    assert serving_split(store.adapters, store.rollouts) == Split("v1")
    with pytest.raises(InvalidRequest, match="waits for approval and serves nobody; reject it"):
        service.rollback(actor="ana", reason="no", now=T0)

    approved = service.approve(actor="ana", reason="looks good", now=T0 + 2 * HOUR)
    assert approved.rollout is not None and (approved.rollout.state, approved.rollout.traffic) == (
        "running",
        0.2,
    )
    assert approved.rollout.started_at == T0 + 2 * HOUR
    assert store.adapters.get("v2").state == "canary"
    assert serving_split(store.adapters, store.rollouts) == Split("v1", "v2", 0.2)
    with pytest.raises(
        InvalidRequest, match="no rollout is waiting for approval, so there is nothing to approve"
    ):
        service.approve(actor="ana", now=T0)
    assert actions(service) == [
        ("start", None, "awaiting_approval", "deploy-agent"),
        ("approve", "awaiting_approval", "running", "ana"),
    ]


def test_reject_ends_a_waiting_rollout(store: Store) -> None:
    register(store, "v2")
    service = RolloutService(store, policy(approval="operator"))
    service.start("v2", actor="deploy-agent", now=T0)
    status = service.reject(actor="ana", reason="not during the release freeze", now=T0 + HOUR)
    assert status.rollout is not None and status.rollout.state == "rejected"
    assert status.rollout.outcome == "rejected by ana: not during the release freeze"
    assert store.rollouts.active() is None
    last = store.adapters.transitions("v2")[-1]
    assert (last.from_state, last.to_state, last.actor) == ("validated", "rejected", "ana")
    assert "not during the release freeze" in last.reason
    with pytest.raises(InvalidRequest, match="nothing to reject"):
        service.reject(actor="ana", now=T0)


def test_stages_advance_with_time_and_healthy_arms_then_promote(
    service: RolloutService, store: Store
) -> None:
    service.start("v2", actor="deploy-agent", now=T0)
    seed(store, "production", "v1", up=30, down=10)
    seed(store, "candidate", "v2", up=20, down=1)

    early = service.tick(T0 + HOUR / 2)
    assert early.action == "continue" and early.evaluation is not None
    assert early.evaluation.finding == "healthy"
    advanced = service.tick(T0 + HOUR)
    assert advanced.action == "advance" and advanced.rollout is not None and advanced.rollout.traffic == 0.5
    assert serving_split(store.adapters, store.rollouts) == Split("v1", "v2", 0.5)
    assert service.tick(T0 + 2 * HOUR).action == "advance"
    assert serving_split(store.adapters, store.rollouts) == Split("v1", "v2", 1.0)
    seed(store, "candidate", "v2", up=19, at=T0 + 2 * HOUR)
    assert service.tick(T0 + 2.5 * HOUR).action == "continue"

    promoted = service.tick(T0 + 3 * HOUR)
    assert promoted.action == "promote", promoted.reason
    assert (
        promoted.reason.startswith("A/B test ro-")
        and "better: satisfaction 97.5% vs 75.0%" in promoted.reason
    )

    registry = store.adapters
    production, backup = registry.production(), registry.backup()
    assert production is not None and production.version == "v2"
    assert backup is not None and backup.version == "v1"
    assert production.metrics["ab_test"]["candidate_satisfaction"] == pytest.approx(0.975)
    assert serving_split(store.adapters, store.rollouts) == Split("v2")
    # Audited: who, when, why, in the rollout's trail and in the registry's.
    status = service.status(now=T0 + 3 * HOUR)
    assert status.summary.startswith("rollout ro-") and "promoted" in status.summary
    assert [(e.action, e.traffic, e.at) for e in status.events] == [
        ("start", 0.2, T0),
        ("advance", 0.5, T0 + HOUR),
        ("advance", 1.0, T0 + 2 * HOUR),
        ("promote", 1.0, T0 + 3 * HOUR),
    ]
    assert all(e.actor == CONTROLLER for e in status.events[1:])
    moves = [(t.version, t.from_state, t.to_state, t.actor) for t in registry.transitions()][-3:]
    assert moves == [
        ("v2", "validated", "canary", "deploy-agent"),
        ("v1", "production", "retired", CONTROLLER),
        ("v2", "canary", "production", CONTROLLER),
    ]
    assert "replaced by v2" in registry.transitions("v1")[-1].reason


def test_degradation_rolls_back_automatically(service: RolloutService, store: Store) -> None:
    service.start("v2", actor="deploy-agent", now=T0)
    seed(store, "production", "v1", up=36, down=4)
    seed(store, "candidate", "v2", up=12, down=12)
    result = service.tick(T0 + HOUR / 4)
    assert result.action == "rollback" and result.reason.startswith(
        "degradation: satisfaction 50.0% vs 90.0%"
    )
    assert store.adapters.get("v2").state == "rolled_back"
    production = store.adapters.production()
    assert production is not None and production.version == "v1"
    assert serving_split(store.adapters, store.rollouts) == Split("v1")
    assert store.rollouts.active() is None
    assert actions(service)[-1] == ("rollback", "running", "rolled_back", CONTROLLER)
    last = store.adapters.transitions("v2")[-1]
    assert (last.from_state, last.to_state, last.actor) == ("canary", "rolled_back", CONTROLLER)
    assert "degradation" in last.reason


def test_an_error_spike_rolls_back(service: RolloutService, store: Store) -> None:
    service.start("v2", actor="deploy-agent", now=T0)
    seed(store, "production", "v1", up=40)
    seed(store, "candidate", "v2", up=14, errors=6)
    result = service.tick(T0 + HOUR / 4)
    assert result.action == "rollback" and result.reason.startswith("error spike: candidate errors 30.0%")
    assert store.adapters.get("v2").state == "rolled_back"
    assert serving_split(store.adapters, store.rollouts) == Split("v1")


def test_degradation_holds_when_rollback_on_degradation_is_off(store: Store) -> None:
    register(store, "v1", state="production")
    register(store, "v2")
    service = RolloutService(store, policy(rollback_on_degradation=False))
    service.start("v2", actor="deploy-agent", now=T0)
    seed(store, "production", "v1", up=36, down=4)
    seed(store, "candidate", "v2", up=12, down=12)
    assert service.tick(T0 + HOUR / 4).action == "hold"
    assert service.tick(T0 + 2 * HOUR).action == "held"
    rollout = store.rollouts.active()
    assert rollout is not None and (rollout.state, rollout.traffic, rollout.stage) == ("held", 0.2, 0)
    assert "rollback_on_degradation is off" in service.status().events[-1].reason
    service.rollback(actor="ana", reason="confirmed worse", now=T0 + 3 * HOUR)
    assert store.adapters.get("v2").state == "rolled_back"


def test_hold_stops_advancing_and_resume_gives_the_time_back(service: RolloutService, store: Store) -> None:
    service.start("v2", actor="deploy-agent", now=T0)
    service.hold(actor="ana", reason="investigating a report", now=T0 + HOUR / 2)
    assert service.tick(T0 + 2 * HOUR).action == "held"
    status = service.status(now=T0 + 2 * HOUR)
    assert (
        status.rollout is not None
        and status.rollout.stage == 0
        and "is held at 20% of users" in status.summary
    )
    assert status.stage_ends_at == T0 + 2.5 * HOUR  # half an hour of the stage was left
    with pytest.raises(InvalidRequest, match="is held; 'hold' needs it running"):
        service.hold(actor="ana", now=T0)
    service.resume(actor="ana", reason="false alarm", now=T0 + 2 * HOUR)
    assert service.tick(T0 + 2.4 * HOUR).action == "continue"
    assert service.tick(T0 + 2.5 * HOUR).action == "advance"
    assert [a[0] for a in actions(service)] == ["start", "hold", "resume", "advance"]
    with pytest.raises(InvalidRequest, match="'resume' needs it held"):
        service.resume(actor="ana", now=T0)


def test_an_operator_rolls_back_a_rollout_then_production(service: RolloutService, store: Store) -> None:
    service.start("v2", actor="deploy-agent", now=T0)
    status = service.rollback(actor="ana", reason="users report odd answers", now=T0 + HOUR / 2)
    assert status.rollout is not None and status.rollout.state == "rolled_back"
    assert status.rollout.outcome == "users report odd answers"
    assert store.adapters.get("v2").state == "rolled_back"
    # With no rollout in progress, rollback takes production back to its backup (here: none).
    status = service.rollback(actor="ana", reason="v1 misbehaves", now=T0 + HOUR)
    assert status.production == "base" and store.adapters.get("v1").state == "rolled_back"
    with pytest.raises(InvalidRequest, match="nothing to roll back"):
        service.rollback(actor="ana", reason="again", now=T0 + HOUR)


def test_at_the_end_a_candidate_that_is_not_better_is_rolled_back(
    service: RolloutService, store: Store
) -> None:
    service.start("v2", actor="deploy-agent", now=T0)
    for hour in (1, 2):
        assert service.tick(T0 + hour * HOUR).action == "advance"
    # Too few judged answers at the end: the test runs on into the extension...
    seed(store, "production", "v1", up=17, down=3)
    seed(store, "candidate", "v2", up=8, down=2)
    extended = service.tick(T0 + 3 * HOUR)
    assert extended.action == "continue" and extended.reason.startswith("test extended: not enough judged")
    # ...and ends when the sample is there: 85% against 85% is not better.
    seed(store, "candidate", "v2", up=9, down=1, at=T0 + 3 * HOUR)
    ended = service.tick(T0 + 3.5 * HOUR)
    assert ended.action == "rollback" and ended.reason.startswith("not better")
    assert store.adapters.get("v2").state == "rolled_back"


def test_an_inconclusive_test_ends_after_the_extension(service: RolloutService, store: Store) -> None:
    service.start("v2", actor="deploy-agent", now=T0)
    for hour in (1, 2):
        service.tick(T0 + hour * HOUR)
    assert service.tick(T0 + 3.9 * HOUR).action == "continue"
    ended = service.tick(T0 + 4 * HOUR)
    assert ended.action == "rollback" and ended.reason.startswith("inconclusive after the extension")


def test_a_production_change_during_the_rollout_ends_it(service: RolloutService, store: Store) -> None:
    service.start("v2", actor="deploy-agent", now=T0)
    store.adapters.rollback(actor="ana", reason="v1 broke")  # production leaves v1 outside the rollout
    result = service.tick(T0 + HOUR / 2)
    assert (
        result.action == "rollback"
        and result.reason == "production changed from v1 to base during the rollout"
    )
    assert store.adapters.get("v2").state == "rolled_back"


def test_the_controller_never_routes_to_a_candidate_it_cannot_load(
    service: RolloutService, store: Store
) -> None:
    """The candidate's files are missing: the controller keeps production serving and the rollout
    is rolled back with the reason (a real llama.cpp engine that refuses the load; no model is loaded)."""
    engine = LlamaCppEngine()
    router = AbRouter(Split("v1"))
    controller = RolloutController(engine, router, store, driver=service, tick_seconds=60, drain_seconds=0)
    service.start("v2", actor="deploy-agent", now=T0)
    # Before start (the engine is loading) nothing changes.
    assert controller.apply() == Split("v1")
    split = controller.start(loop=False)
    assert split == Split("base") == router.split  # v1's files are missing too: the base model serves
    rollout = store.rollouts.latest()
    assert rollout is not None and rollout.state == "rolled_back"
    assert rollout.outcome == "the server could not load adapter v2; see its log"
    assert store.adapters.get("v2").state == "rolled_back"
