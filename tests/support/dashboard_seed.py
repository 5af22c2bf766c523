"""A store with something in every panel of the dashboard: an hour of traffic from three users and
an anonymous client (with feedback and errors), a dataset version, a finished training run and a
running one with its loss curve, adapter versions promoted, rolled back and restored, and a rollout
of a third version at 20% of users with both A/B arms answering; and one alert firing, one resolved."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from genesys.runtime.store import (
    AdapterVersion,
    DatasetVersion,
    Feedback,
    Interaction,
    Store,
    TrainingProgress,
    TrainingRun,
)
from genesys.runtime.store.adapters import AdapterTransitionRow
from genesys.runtime.store.alerts import AlertActionRecord
from genesys.tools.rollout import RolloutService

USERS = ("alice", "bob", "carol", None)
DATASET = "ds-20250301-101500-a1b2c3"
RUNNING_RUN = "run-20250301-1100-live"
FINISHED_RUN = "run-20250228-0900-done"


@dataclass
class Seeded:
    """What the seed put in, for the tests to compare with."""

    now: datetime
    interactions: list[Interaction] = field(default_factory=list)
    errors: int = 0
    per_user: dict[str, int] = field(default_factory=dict)
    positive: dict[str, int] = field(default_factory=dict)
    negative: dict[str, int] = field(default_factory=dict)
    loss_points: int = 0
    rollout_id: str = ""


def seed_dashboard(store: Store, settings: Any, now: datetime) -> Seeded:
    """Fill ``store`` as of ``now``; see the module docstring."""
    seeded = Seeded(now=now)
    _adapters_and_rollout(store, settings, now, seeded)
    _traffic(store, now, seeded)
    _dataset_and_runs(store, now, seeded)
    _alerts(store, now)
    return seeded


def _alerts(store: Store, now: datetime) -> None:
    firing, _ = store.alerts.fire(
        rule="error_rate",
        key="all",
        kind="critical_failure",
        severity="critical",
        summary="6.7% of the requests of the last 30 min failed (threshold 5%)",
        value=0.067,
        threshold=0.05,
        details={},
        now=now - timedelta(minutes=4),
    )
    store.alerts.add_actions(
        firing.id,
        [
            AlertActionRecord(
                action="notify", event="firing", status="done", detail="logged", at=now - timedelta(minutes=4)
            )
        ],
    )
    resolved, _ = store.alerts.fire(
        rule="latency_p95",
        key="all",
        kind="performance_drop",
        severity="warning",
        summary="p95 latency 5.6 s over the 5 s target",
        value=5.6,
        threshold=5.0,
        details={},
        now=now - timedelta(hours=2),
    )
    store.alerts.resolve(resolved.id, now=now - timedelta(hours=1))


def _traffic(store: Store, now: datetime, seeded: Seeded) -> None:
    """90 answers over the last 30 minutes, 3 a minute; one in five on the candidate (v3)."""
    for k in range(90):
        user = USERS[k % 4]
        candidate = k % 5 == 0
        status = "error" if k % 15 == 7 else "completed"
        interaction = Interaction(
            id=f"chatcmpl-dash-{k:03d}",
            conversation_id=f"conv-{user or 'anon'}-{k // 12}",
            user=user,
            request_messages=[{"role": "user", "content": f"question {k}"}],
            answer="answer",
            model_version="v3" if candidate else "v1",
            ab_arm="candidate" if candidate else "production",
            latency_ms=600.0 + 35.0 * (k % 20) + (2500.0 if k % 23 == 0 else 0.0),
            completion_tokens=40 + k % 30,
            status=status,
            interaction_type="code" if k % 3 == 0 else "chat",
            created_at=now - timedelta(minutes=k / 3, seconds=5),
        )
        store.interactions.record(interaction)
        seeded.interactions.append(interaction)
        name = user or "anonymous"
        seeded.per_user[name] = seeded.per_user.get(name, 0) + 1
        seeded.errors += status == "error"
        if status == "error":
            continue
        if k % 6 == 1:
            store.feedback.upsert(
                Feedback(
                    interaction_id=interaction.id,
                    thumbs="down",
                    correction="Use pathlib.Path.read_text instead of opening the file by hand.",
                )
            )
            seeded.negative[name] = seeded.negative.get(name, 0) + 1
        elif k % 2 == 0:
            store.feedback.upsert(Feedback(interaction_id=interaction.id, thumbs="up"))
            seeded.positive[name] = seeded.positive.get(name, 0) + 1


def _dataset_and_runs(store: Store, now: datetime, seeded: Seeded) -> None:
    store.datasets.add(
        DatasetVersion(
            version=DATASET,
            created_at=now - timedelta(days=1, hours=2),
            config_hash="c" * 64,
            manifest_path="/nonexistent/manifest.json",
            counts={
                "kind": "curated",
                "splits": {
                    "train": {"sft": 412, "preference": 36, "kto": 12},
                    "validation": {"sft": 52, "preference": 4, "kto": 2},
                    "test": {"sft": 51, "preference": 5, "kto": 1},
                },
            },
        )
    )
    done = store.training_runs.create(
        TrainingRun(
            id=FINISHED_RUN,
            dataset_version=DATASET,
            output_dir="/nonexistent/done",
            created_at=now - timedelta(days=1),
        )
    )
    store.training_runs.mark_running(done.id, phase="sft")
    store.training_runs.add_progress(done.id, TrainingProgress(step=120, total_steps=120, loss=0.61))
    store.training_runs.finish(done.id, "succeeded", adapter_dir="/nonexistent/v3")
    run = store.training_runs.create(
        TrainingRun(
            id=RUNNING_RUN,
            dataset_version=DATASET,
            output_dir="/nonexistent/live",
            created_at=now - timedelta(minutes=12),
        )
    )
    store.training_runs.mark_running(run.id, phase="sft")
    for step in range(5, 205, 5):
        store.training_runs.add_progress(
            run.id,
            TrainingProgress(
                step=step,
                total_steps=300,
                epoch=step / 100,
                loss=round(0.55 + 1.9 * 0.985**step + 0.03 * ((step // 5) % 3), 4),
                eval_loss=round(0.7 + 1.6 * 0.985**step, 4) if step % 50 == 0 else None,
                learning_rate=2e-4,
                tokens_per_s=1480.0,
                eta_s=(300 - step) * 1.5,
            ),
        )
        seeded.loss_points += 1


def _adapters_and_rollout(store: Store, settings: Any, now: datetime, seeded: Seeded) -> None:
    registry = store.adapters

    def register(version: str, days_ago: float) -> None:
        registry.register(
            AdapterVersion(
                version=version,
                path=f"/nonexistent/adapters/{version}",
                base_model="SmolLM2-135M-Instruct",
                dataset_version=DATASET if version == "v3" else None,
                run_id=FINISHED_RUN if version == "v3" else None,
                created_at=now - timedelta(days=days_ago),
            ),
            actor="trainer-agent",
            reason="trained",
        )
        registry.transition(version, "validated", actor="validator-agent", reason="gates passed")

    register("v1", 6)
    registry.promote("v1", actor="ops", reason="first adapter")
    register("v2", 4)
    registry.transition("v2", "canary", actor="deploy-agent", reason="A/B test on 20% of users")
    registry.promote("v2", actor="deploy-agent", reason="A/B test won: satisfaction 0.91 vs 0.86")
    registry.rollback(actor="ops", reason="latency p95 over 5 s after the promotion")
    register("v3", 1)
    # The registry stamps transitions with the clock; spread them over the week they stand for.
    times = [
        now - timedelta(days=6, hours=1),  # v1 registered
        now - timedelta(days=6),  # v1 validated
        now - timedelta(days=5, hours=20),  # v1 promoted
        now - timedelta(days=4, hours=1),  # v2 registered
        now - timedelta(days=4),  # v2 validated
        now - timedelta(days=3, hours=12),  # v2 canary
        now - timedelta(days=2, hours=20),  # v1 retired (replaced by v2)
        now - timedelta(days=2, hours=20),  # v2 promoted
        now - timedelta(days=2, hours=2),  # v2 rolled back
        now - timedelta(days=2, hours=2),  # v1 restored
        now - timedelta(days=1, hours=1),  # v3 registered
        now - timedelta(days=1),  # v3 validated
    ]
    with store.db.session() as session:
        rows = session.scalars(select(AdapterTransitionRow).order_by(AdapterTransitionRow.id)).all()
        assert len(rows) == len(times), [(r.version, r.to_state) for r in rows]
        for row, at in zip(rows, times, strict=True):
            row.at = at
    status = RolloutService.from_settings(store, settings).start(
        "v3",
        actor="deploy-agent",
        reason="validated; A/B test against production",
        now=now - timedelta(hours=1),
    )
    assert status.rollout is not None
    seeded.rollout_id = status.rollout.id
    with store.db.session() as session:
        canary = session.scalars(
            select(AdapterTransitionRow).order_by(AdapterTransitionRow.id.desc())
        ).first()
        assert canary is not None and (canary.version, canary.to_state) == ("v3", "canary")
        canary.at = now - timedelta(hours=1)
