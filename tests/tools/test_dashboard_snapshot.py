"""The dashboard's snapshot from a real SQLite store seeded with a known history (tests/support/
dashboard_seed.py): traffic per minute, users, training with its loss curve, datasets, the adapter
timeline and the A/B arms, each compared with what was seeded; and an empty store."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from genesys.runtime.store import Store, TrainingProgress, utcnow
from genesys.tools.dashboard_snapshot import dashboard_snapshot, loss_curve
from tests.support.dashboard_seed import DATASET, FINISHED_RUN, RUNNING_RUN, seed_dashboard


def test_snapshot_of_a_seeded_store(store: Store, settings: Any) -> None:
    now = utcnow()
    seeded = seed_dashboard(store, settings, now)
    snapshot = dashboard_snapshot(store, settings, now=now)

    traffic = snapshot.traffic
    assert len(traffic.series) == 60
    assert traffic.series[-1].minute == now.replace(second=0, microsecond=0)
    assert sum(p.requests for p in traffic.series) == 90
    assert sum(p.errors for p in traffic.series) == seeded.errors == 6
    assert sum(p.completion_tokens for p in traffic.series) == sum(
        i.completion_tokens for i in seeded.interactions
    )
    assert all(p.latency_p95_ms is None for p in traffic.series[:29])  # nothing before 30 min ago
    latencies = [p for p in traffic.series if p.latency_p50_ms is not None]
    assert all(p.latency_p95_ms is not None and p.latency_p95_ms >= p.latency_p50_ms for p in latencies)
    assert max(p.latency_p95_ms or 0 for p in traffic.series) == 3415.0  # the slowest answer, k=69
    # The last 5 minutes: k = 0..14, one error (k=7).
    assert traffic.now.requests_per_minute == 3.0
    assert traffic.now.error_rate == pytest.approx(1 / 15)
    assert traffic.now.interactions_total == 90

    users = snapshot.users
    assert (users.window, users.active, users.interactions) == ("24h", 4, 90)
    assert [u.user for u in users.data] == ["alice", "bob", "anonymous", "carol"]
    for user in users.data:
        mine = [i for i in seeded.interactions if (i.user or "anonymous") == user.user]
        assert user.interactions == seeded.per_user[user.user] == len(mine)
        assert user.conversations == len({i.conversation_id for i in mine})
        assert user.positive == seeded.positive.get(user.user, 0)
        assert user.negative == seeded.negative.get(user.user, 0)
        assert user.corrected == user.negative  # every negative answer was corrected
        assert user.errors == sum(i.status == "error" for i in mine)
        assert user.last_seen == max(i.created_at for i in mine)
    assert sum(u.share for u in users.data) == pytest.approx(1.0)

    training = snapshot.training
    assert training.current is not None
    current = training.current
    assert (current.id, current.state, current.step, current.total_steps) == (
        RUNNING_RUN,
        "running",
        200,
        300,
    )
    assert current.progress == pytest.approx(200 / 300)
    assert current.dataset_version == DATASET
    assert len(training.loss) == seeded.loss_points == 40
    assert [p.x for p in training.loss] == list(range(5, 205, 5))
    assert training.loss[0].loss is not None and training.loss[-1].loss is not None
    assert training.loss[-1].loss < training.loss[0].loss
    assert sum(p.eval_loss is not None for p in training.loss) == 4
    assert training.stages == ["sft"]
    assert [(r.id, r.state, r.adapter_version) for r in training.recent] == [
        (RUNNING_RUN, "running", None),
        (FINISHED_RUN, "succeeded", "v3"),
    ]
    assert training.recent[1].progress == 1.0

    [dataset] = snapshot.datasets
    assert (dataset.version, dataset.kind, dataset.rows) == (
        DATASET,
        "curated",
        {"train": 412, "validation": 52, "test": 51},
    )
    assert (dataset.preference, dataset.kto, dataset.adapters) == (45, 15, ["v3"])

    adapters = snapshot.adapters
    assert [(v.version, v.state) for v in adapters.versions] == [
        ("v1", "production"),
        ("v2", "rolled_back"),
        ("v3", "canary"),
    ]
    assert [(e.version, e.kind) for e in adapters.events] == [
        ("v1", "registered"),
        ("v1", "validated"),
        ("v1", "promotion"),
        ("v2", "registered"),
        ("v2", "validated"),
        ("v2", "canary"),
        ("v1", "retired"),
        ("v2", "promotion"),
        ("v2", "rollback"),
        ("v1", "restore"),
        ("v3", "registered"),
        ("v3", "validated"),
        ("v3", "canary"),
    ]
    rollback = next(e for e in adapters.events if e.kind == "rollback")
    assert (rollback.actor, rollback.reason) == ("ops", "latency p95 over 5 s after the promotion")
    assert [e.at for e in adapters.events] == sorted(e.at for e in adapters.events)

    rollout = snapshot.rollout
    assert (rollout.production, rollout.backup) == ("v1", None)
    assert rollout.rollout is not None
    assert (rollout.rollout.id, rollout.rollout.state, rollout.rollout.traffic) == (
        seeded.rollout_id,
        "running",
        0.2,
    )
    assert rollout.evaluation is not None
    arms = rollout.evaluation
    assert (arms.production.model_version, arms.candidate.model_version) == ("v1", "v3")
    on_candidate = [i for i in seeded.interactions if i.ab_arm == "candidate"]
    assert (arms.production.requests, arms.candidate.requests) == (90 - len(on_candidate), len(on_candidate))

    kpis = {k.name: k for k in snapshot.kpis.data}
    ended = seeded.interactions
    assert kpis["success_rate"].samples == len(ended)
    assert kpis["success_rate"].value == pytest.approx(
        sum(i.status == "completed" for i in ended) / len(ended) - sum(seeded.negative.values()) / len(ended)
    )


def test_snapshot_leaves_out_what_is_outside_its_windows(store: Store, settings: Any) -> None:
    """Interactions of yesterday count for users (24 h) but not for the hour of traffic."""
    now = utcnow()
    seed_dashboard(store, settings, now - timedelta(hours=3))
    snapshot = dashboard_snapshot(store, settings, now=now)
    assert sum(p.requests for p in snapshot.traffic.series) == 0
    assert snapshot.traffic.now.requests_per_minute == 0
    assert snapshot.traffic.now.error_rate is None
    assert snapshot.users.interactions == 90
    later = dashboard_snapshot(store, settings, now=now + timedelta(hours=22))
    assert later.users.interactions == 0 and later.users.data == []


def test_snapshot_of_an_empty_store(store: Store, settings: Any) -> None:
    snapshot = dashboard_snapshot(store, settings)
    assert sum(p.requests for p in snapshot.traffic.series) == 0
    assert snapshot.users.data == []
    assert snapshot.training.current is None and snapshot.training.loss == []
    assert snapshot.training.cycle is None
    assert snapshot.datasets == []
    assert snapshot.adapters.versions == [] and snapshot.adapters.events == []
    assert (snapshot.rollout.production, snapshot.rollout.rollout) == ("base", None)
    assert Counter(k.status for k in snapshot.kpis.data) == {"no_data": 6}
    with pytest.raises(ValueError, match="positive"):
        dashboard_snapshot(store, settings, traffic_minutes=0)


def test_loss_curve_runs_on_across_stages_and_is_downsampled() -> None:
    sft = [TrainingProgress(step=s, total_steps=100, loss=2.0 - s / 100) for s in range(10, 110, 10)]
    dpo = [TrainingProgress(stage="dpo", step=s, total_steps=50, loss=0.7) for s in range(10, 60, 10)]
    no_loss = [TrainingProgress(stage="dpo", step=55, total_steps=50)]
    curve = loss_curve([*sft, *dpo, *no_loss])
    assert [(p.stage, p.x) for p in curve] == [("sft", s) for s in range(10, 110, 10)] + [
        ("dpo", 100 + s) for s in range(10, 60, 10)
    ]

    long = [TrainingProgress(step=s, total_steps=1001, loss=1.0) for s in range(1, 1002)]
    sampled = loss_curve(long, max_points=400)
    assert len(sampled) <= 401
    assert sampled[0].step == 1 and sampled[-1].step == 1001
    assert [p.x for p in sampled] == sorted(p.x for p in sampled)
