"""The adapter versions a server answers with: production (and a canary in test) from the registry.

At start-up, once the base model is loaded, the server loads the adapter of every version that serves
(``production`` and ``canary``) from its directory under ``data/adapters/`` and routes to production.
A version whose files cannot be loaded is reported and skipped: the server then answers with the
previous routing (the base model at start-up), never with an error for every request.

A rollout in progress (running or held) gets its candidate and traffic back after a restart.
``serving_split`` is the one place that says what may serve: production is the registry's
``production`` version, and a candidate takes traffic only while an active rollout runs it and the
registry has it in ``canary`` (which only a ``validated`` version can reach).
"""

from __future__ import annotations

from pathlib import Path

import structlog

from genesys.errors import GenesysError
from genesys.runtime.ab_router import BASE_VERSION, Split
from genesys.runtime.engines.base import InferenceEngine
from genesys.runtime.store.adapters import AdapterRegistry, AdapterVersion
from genesys.runtime.store.rollouts import RolloutStore

log = structlog.get_logger(__name__)


def load_version(engine: InferenceEngine, adapter: AdapterVersion) -> None:
    """Load one registered version into ``engine`` under its version name; raises ``GenesysError``."""
    engine.load_adapter(adapter.version, Path(adapter.path))
    log.info("adapter.loaded", version=adapter.version, engine=engine.kind, path=adapter.path)


def serving_split(registry: AdapterRegistry, rollouts: RolloutStore | None = None) -> Split:
    """The split the registry and the rollouts call for: production, and the candidate of a running
    (or held) rollout at its traffic, provided the registry has it in canary."""
    production = registry.production()
    split = Split(production=production.version if production else BASE_VERSION)
    rollout = rollouts.active() if rollouts is not None else None
    if rollout is None or not rollout.serving or rollout.traffic <= 0:
        return split
    candidate = registry.get(rollout.candidate)
    if candidate.state != "canary":
        log.warning("rollout.candidate_not_canary", version=candidate.version, state=candidate.state)
        return split
    return Split(production=split.production, candidate=candidate.version, traffic=rollout.traffic)


def load_serving_versions(
    engine: InferenceEngine, registry: AdapterRegistry, rollouts: RolloutStore | None = None
) -> Split:
    """Load production and canary into a loaded ``engine``; the split routes everyone to production,
    or, while a rollout is in progress (``rollouts``), its share of users to the candidate."""
    production = registry.production()
    canary = registry.canary()
    desired = serving_split(registry, rollouts)
    loaded: set[str] = set()
    for adapter in (production, canary):
        if adapter is None:
            continue
        try:
            load_version(engine, adapter)
        except GenesysError as exc:
            log.error("adapter.load_failed", version=adapter.version, reason=str(exc))
            continue
        loaded.add(adapter.version)
    serving = desired.production if desired.production in loaded else BASE_VERSION
    if desired.candidate is not None and desired.candidate in loaded:
        return Split(production=serving, candidate=desired.candidate, traffic=desired.traffic)
    return Split(production=serving)
