"""The adapter registry: lineage, allowed state changes, the audit trail, the production backup."""

from __future__ import annotations

import itertools

import pytest

from genesys.errors import InvalidRequest, NotFound
from genesys.runtime.store import Store
from genesys.runtime.store.adapters import ALLOWED_TRANSITIONS, AdapterRegistry, AdapterVersion


@pytest.fixture()
def registry(store_url: str) -> AdapterRegistry:
    """On both backends (SQLite, PostgreSQL)."""
    store = Store(store_url)
    return store.adapters


def _register(registry: AdapterRegistry, version: str | None = None, **lineage: object) -> AdapterVersion:
    version = version or registry.next_version()
    return registry.register(
        AdapterVersion(
            version=version,
            path=f"/data/adapters/{version}",
            base_model="SmolLM2-135M-Instruct.Q4_1.gguf",
            dataset_version=lineage.get("dataset_version", "ds-1"),  # type: ignore[arg-type]
            run_id=lineage.get("run_id", f"run-{version}"),  # type: ignore[arg-type]
            parent_version=lineage.get("parent_version"),  # type: ignore[arg-type]
            hyperparameters={"learning_rate": 1e-3, "epochs": 8},
            metrics={"sft": {"train_loss": 0.4}},
        ),
        actor="trainer",
        reason="trained",
    )


def _to_production(registry: AdapterRegistry, version: str) -> None:
    registry.transition(version, "validated", actor="validator", reason="passed the gates")
    registry.promote(version, actor="deploy", reason="approved by ana")


def test_a_version_keeps_its_lineage(registry: AdapterRegistry) -> None:
    first = _register(registry)
    second = _register(registry, parent_version="v1", dataset_version="ds-2", run_id="run-42")

    assert (first.version, second.version) == ("v1", "v2")
    stored = registry.get("v2")
    assert stored.state == "candidate"
    assert (stored.dataset_version, stored.run_id, stored.parent_version) == ("ds-2", "run-42", "v1")
    assert stored.base_model == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert stored.hyperparameters == {"learning_rate": 1e-3, "epochs": 8}
    registry.set_metrics("v2", {"bleu": 0.31})
    assert registry.get("v2").metrics == {"sft": {"train_loss": 0.4}, "bleu": 0.31}


def test_names_are_checked(registry: AdapterRegistry) -> None:
    _register(registry, "v1")
    with pytest.raises(InvalidRequest, match="exists already"):
        _register(registry, "v1")
    with pytest.raises(InvalidRequest, match="cannot name an adapter version"):
        _register(registry, "base")  # the A/B router's name for "no adapter"
    with pytest.raises(InvalidRequest, match="cannot name"):
        _register(registry, "../etc")
    with pytest.raises(NotFound):
        _register(registry, "v9", parent_version="v404")
    with pytest.raises(NotFound):
        registry.get("v404")


def test_a_candidate_cannot_skip_validation(registry: AdapterRegistry) -> None:
    _register(registry, "v1")
    with pytest.raises(InvalidRequest, match="candidate -> production is not allowed"):
        registry.promote("v1", actor="deploy", reason="hurry")
    with pytest.raises(InvalidRequest, match="candidate -> canary is not allowed"):
        registry.transition("v1", "canary", actor="deploy", reason="hurry")
    assert registry.get("v1").state == "candidate"
    # A refused move leaves no trace in the audit either.
    assert [t.to_state for t in registry.transitions("v1")] == ["candidate"]


def test_a_rejected_candidate_goes_nowhere(registry: AdapterRegistry) -> None:
    _register(registry, "v1")
    registry.transition("v1", "rejected", actor="validator", reason="BLEU fell 12%")
    for state in ("validated", "canary", "production", "retired"):
        with pytest.raises(InvalidRequest, match="not allowed"):
            registry.transition("v1", state, actor="deploy", reason="try")  # type: ignore[arg-type]


def test_every_change_is_audited_with_who_when_why(registry: AdapterRegistry) -> None:
    _register(registry, "v1")
    registry.transition("v1", "validated", actor="validator", reason="ROUGE-L +8%")
    registry.transition("v1", "canary", actor="deploy", reason="20% of users")
    registry.promote("v1", actor="ana", reason="canary held for 24 h")

    trail = registry.transitions("v1")
    assert [(t.from_state, t.to_state, t.actor, t.reason) for t in trail] == [
        (None, "candidate", "trainer", "trained"),
        ("candidate", "validated", "validator", "ROUGE-L +8%"),
        ("validated", "canary", "deploy", "20% of users"),
        ("canary", "production", "ana", "canary held for 24 h"),
    ]
    assert all(a.at <= b.at for a, b in itertools.pairwise(trail))
    with pytest.raises(InvalidRequest, match="who made it and why"):
        registry.transition("v1", "retired", actor="", reason="")


def test_promotion_keeps_the_previous_production_as_backup(registry: AdapterRegistry) -> None:
    _register(registry, "v1")
    _to_production(registry, "v1")
    assert registry.production() is not None and registry.production().version == "v1"  # type: ignore[union-attr]
    assert registry.backup() is None

    _register(registry, "v2", parent_version="v1")
    _to_production(registry, "v2")

    assert registry.production().version == "v2"  # type: ignore[union-attr]
    old = registry.get("v1")
    assert (old.state, old.is_backup) == ("retired", True)
    assert registry.backup().version == "v1"  # type: ignore[union-attr]
    assert [v.version for v in registry.versions(state="production")] == ["v2"]
    assert registry.transitions("v1")[-1].reason == "replaced by v2: approved by ana"

    # A third promotion moves the backup flag: only one backup at a time.
    _register(registry, "v3")
    _to_production(registry, "v3")
    assert registry.backup().version == "v2"  # type: ignore[union-attr]
    assert not registry.get("v1").is_backup


def test_rollback_restores_the_backup(registry: AdapterRegistry) -> None:
    _register(registry, "v1")
    _to_production(registry, "v1")
    _register(registry, "v2")
    _to_production(registry, "v2")

    restored = registry.rollback(actor="deploy", reason="satisfaction fell to 0.70")

    assert restored is not None and restored.version == "v1"
    assert registry.get("v2").state == "rolled_back"
    assert registry.production().version == "v1"  # type: ignore[union-attr]
    assert registry.backup() is None
    # The first production had no backup: rolling it back leaves the base model serving.
    assert registry.rollback(actor="deploy", reason="again") is None
    assert registry.production() is None
    with pytest.raises(InvalidRequest, match="nothing is in production"):
        registry.rollback(actor="deploy", reason="again")


def test_one_canary_at_a_time(registry: AdapterRegistry) -> None:
    for version in ("v1", "v2"):
        _register(registry, version)
        registry.transition(version, "validated", actor="validator", reason="ok")
    registry.transition("v1", "canary", actor="deploy", reason="test")
    with pytest.raises(InvalidRequest, match="v1 is already in canary"):
        registry.transition("v2", "canary", actor="deploy", reason="test")
    registry.transition("v1", "rolled_back", actor="deploy", reason="worse")
    registry.transition("v2", "canary", actor="deploy", reason="test")
    assert registry.canary().version == "v2"  # type: ignore[union-attr]


def test_the_transition_table_is_closed() -> None:
    states = set(ALLOWED_TRANSITIONS)
    assert states == {"candidate", "validated", "rejected", "canary", "production", "retired", "rolled_back"}
    assert all(targets <= states for targets in ALLOWED_TRANSITIONS.values())
    assert "production" not in ALLOWED_TRANSITIONS["candidate"]
