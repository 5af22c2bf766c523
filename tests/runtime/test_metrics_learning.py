"""The learning side of ``/metrics``, read from the store at scrape time: satisfaction per model version
and A/B arm, training runs by state, the latest dataset's size, the rollout's state and traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from genesys.runtime.metrics import Metrics
from genesys.runtime.store import Store, utcnow
from tests.support.dashboard_seed import seed_dashboard


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_learning_state_is_exported_per_version_and_arm(tmp_path: Path, settings: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'genesys.db'}")
    seeded = seed_dashboard(store, settings, utcnow())
    metrics = Metrics()
    metrics.watch_store(store)

    got = samples(metrics)

    def verdicts(version: str, arm: str, verdict: str) -> float:
        labels = (("arm", arm), ("model_version", version), ("verdict", verdict))
        return got[("genesys_feedback_verdicts_total", labels)]

    by_arm = {(i.model_version, i.ab_arm): 0 for i in seeded.interactions}
    assert set(by_arm) == {("v1", "production"), ("v3", "candidate")}
    total_up = verdicts("v1", "production", "up") + verdicts("v3", "candidate", "up")
    total_down = verdicts("v1", "production", "down") + verdicts("v3", "candidate", "down")
    assert (total_up, total_down) == (sum(seeded.positive.values()), sum(seeded.negative.values()))
    for version, arm in by_arm:
        up, down = verdicts(version, arm, "up"), verdicts(version, arm, "down")
        ratio = got[("genesys_satisfaction_ratio", (("arm", arm), ("model_version", version)))]
        assert ratio == up / (up + down)
    # One finished run and one running, every state named (bounded labels).
    runs = {labels[0][1]: v for (name, labels), v in got.items() if name == "genesys_training_runs"}
    assert runs == {"queued": 0, "running": 1, "succeeded": 1, "failed": 0, "cancelled": 0}
    rows = {labels[0][1]: v for (name, labels), v in got.items() if name == "genesys_dataset_rows"}
    assert rows == {"train": 412, "validation": 52, "test": 51}
    # The seeded rollout serves v3 to 20% of users.
    states = {labels[0][1]: v for (name, labels), v in got.items() if name == "genesys_rollout_state"}
    assert states["running"] == 1 and sum(states.values()) == 1
    assert got[("genesys_rollout_candidate_traffic_share", ())] == 0.2
    store.close()
