"""`genesys monitor` beside the training run (KPIs, alerts firing, the rollout's arms) and
`genesys alerts`, run as a user runs them (subprocesses) on a seeded data directory."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from genesys.runtime.settings import load_settings
from genesys.runtime.store import AdapterVersion, Feedback, Interaction, Store, TrainingRun, utcnow
from genesys.tools.rollout import RolloutService
from tests.test_cli import genesys, one_line_error


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 answers (19 liked), a finished training run, a rollout of v2 against v1 with both arms
    answering, an alert firing and one resolved."""
    root = tmp_path_factory.mktemp("monitor")
    store = Store(f"sqlite:///{root / 'genesys.db'}")
    now = utcnow()
    registry = store.adapters
    for version in ("v1", "v2"):
        registry.register(AdapterVersion(version=version, path=f"/nowhere/{version}", base_model="embedded"),
                          actor="trainer", reason="trained")  # fmt: skip
        registry.transition(version, "validated", actor="validator", reason="passed")
    registry.promote("v1", actor="deploy", reason="first")
    settings = load_settings(data_dir=root)
    RolloutService.from_settings(store, settings).start("v2", actor="deploy", now=now - timedelta(minutes=30))
    for k in range(20):
        arm, version = ("candidate", "v2") if k % 4 == 0 else ("production", "v1")
        interaction = Interaction(
            id=f"chatcmpl-mon{k}",
            conversation_id=f"conv-{k}",
            request_messages=[{"role": "user", "content": "how do I sort?"}],
            answer="sorted()",
            model_version=version,
            ab_arm=arm,
            latency_ms=1500,
            created_at=now - timedelta(minutes=20 - k),
        )
        store.interactions.record(interaction)
        store.feedback.upsert(Feedback(interaction_id=interaction.id, thumbs="up" if k else "down"))
    store.training_runs.create(TrainingRun(id="run-1", output_dir=str(root / "runs" / "run-1")))
    store.training_runs.finish("run-1", "succeeded")
    store.alerts.fire(
        rule="error_rate", key="all", kind="critical_failure", severity="critical",
        summary="40% of the requests failed", value=0.4, threshold=0.1, details={}, now=now,
    )  # fmt: skip
    old, _ = store.alerts.fire(
        rule="latency_shift", key="all", kind="anomaly", severity="warning",
        summary="slow", value=2.0, threshold=1.0, details={}, now=now - timedelta(hours=2),
    )  # fmt: skip
    store.alerts.resolve(old.id, now=now - timedelta(hours=1))
    store.close()
    return root


def test_monitor_shows_kpis_alerts_and_the_rollout_beside_the_run(data_dir: Path) -> None:
    shown = json.loads(genesys("monitor", "--once", "--json", "--data-dir", str(data_dir)).stdout)
    assert set(shown) == {"run", "kpis", "alerts", "rollout"}
    assert (shown["run"]["id"], shown["run"]["state"]) == ("run-1", "succeeded")
    kpis = {k["name"]: k for k in shown["kpis"]["data"]}
    assert len(kpis) == 6
    assert (kpis["success_rate"]["value"], kpis["success_rate"]["status"]) == (0.95, "ok")
    assert (kpis["response_time"]["value"], kpis["response_time"]["target"]) == (1.5, 5.0)
    assert [(a["rule"], a["state"]) for a in shown["alerts"]] == [("error_rate", "firing")]  # firing only
    rollout = shown["rollout"]
    assert (rollout["production"], rollout["rollout"]["candidate"], rollout["rollout"]["state"]) == (
        "v1",
        "v2",
        "running",
    )
    arms = rollout["evaluation"]
    assert (arms["production"]["requests"], arms["candidate"]["requests"]) == (15, 5)

    lines = genesys("monitor", "--once", "--data-dir", str(data_dir)).stdout.splitlines()
    assert lines[0] == "run-1: succeeded"
    assert lines[1].startswith("KPIs: success_rate 95.0% (> 90.0%) ok; response_time 1.50 s (< 5.00 s) ok;")
    assert lines[2:4] == [
        "alerts: 1 firing",
        "  [critical] critical_failure/error_rate: 40% of the requests failed",
    ]
    assert lines[4].startswith("rollout: rollout ro-") and "runs on 20% of users" in lines[4]
    assert (
        lines[5] == "  production v1: 15 requests, errors 0.0%, satisfaction 100.0% (15 judged), p95 1.50 s"
    )
    assert lines[6].startswith("  candidate v2: 5 requests, errors 0.0%, satisfaction 80.0% (5 judged)")

    # Live, following a run that has ended: one screen, then it exits.
    live = genesys(
        "monitor", "--run", "run-1", "--interval", "0.2", "--data-dir", str(data_dir), env={"COLUMNS": "200"}
    )
    assert live.returncode == 0, live.stderr
    for text in (
        "Training",
        "run-1",
        "KPIs",
        "success_rate",
        "Alerts firing: 1",
        "40% of the requests failed",
    ):
        assert text in live.stdout, text
    assert "candidate v2: 5 requests" in live.stdout


def test_alerts_command_lists_alerts_newest_first(data_dir: Path) -> None:
    lines = genesys("alerts", "--data-dir", str(data_dir)).stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("firing   critical critical_failure/error_rate")
    assert lines[1].startswith("resolved warning  anomaly/latency_shift") and "->" in lines[1]
    body = json.loads(genesys("alerts", "--state", "firing", "--json", "--data-dir", str(data_dir)).stdout)
    assert [a["summary"] for a in body["alerts"]] == ["40% of the requests failed"]
    assert set(body["alerts"][0]) >= {"id", "kind", "severity", "state", "started_at", "actions"}
    assert "--state" in one_line_error(genesys("alerts", "--state", "burning", "--data-dir", str(data_dir)))
