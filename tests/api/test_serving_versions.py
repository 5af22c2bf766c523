"""A server starts with the registry's production adapter loaded and routes everyone to it; a version
whose files are gone is skipped with an error in the log, and the base model answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from genesys.runtime.store import Store
from genesys.runtime.store.adapters import AdapterVersion
from tests.conftest import start_live_server
from tests.support.adapters import random_adapter

pytestmark = pytest.mark.slow


def _promote(store: Store, version: str, path: Path) -> None:
    registry = store.adapters
    registry.register(
        AdapterVersion(version=version, path=str(path), base_model="embedded"), actor="trainer", reason="test"
    )
    registry.transition(version, "validated", actor="validator", reason="test")
    registry.promote(version, actor="deploy", reason="test")


def _ask(base_url: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "Name a prime number."}],
            "temperature": 0,
            "max_tokens": 12,
        },
        timeout=60,
    )


def test_the_production_adapter_serves_after_a_restart(
    settings: Any, llama_engine: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    adapter_dir = settings.data_dir / "adapters" / "p1"
    random_adapter(tmp_path_factory.mktemp("cache"), adapter_dir, seed=7, strength=0.5)
    store = Store(settings.database_url)
    _promote(store, "p1", adapter_dir)
    store.close()
    try:
        for server in start_live_server(settings, llama_engine):
            assert "p1" in llama_engine.info().adapters
            assert server.services.router.split.production == "p1"
            routed, base = _ask(server.base_url, "genesys-local"), _ask(server.base_url, "genesys-local@base")
            assert routed.status_code == 200 and base.status_code == 200
            assert routed.headers["X-Genesys-Model-Version"] == "p1"
            assert base.headers["X-Genesys-Model-Version"] == "base"
            # The adapter (strong enough to change greedy tokens) is what answered.
            assert (
                routed.json()["choices"][0]["message"]["content"]
                != base.json()["choices"][0]["message"]["content"]
            )
    finally:
        llama_engine.unload_adapter("p1")


def test_a_production_version_without_files_leaves_the_base_serving(settings: Any, llama_engine: Any) -> None:
    store = Store(settings.database_url)
    _promote(store, "p2", settings.data_dir / "adapters" / "p2")  # nothing was ever written there
    store.close()
    for server in start_live_server(settings, llama_engine):
        assert server.services.router.split.production == "base"
        response = _ask(server.base_url, "genesys-local")
        assert response.status_code == 200
        assert response.headers["X-Genesys-Model-Version"] == "base"
    assert "p2" not in llama_engine.info().adapters
