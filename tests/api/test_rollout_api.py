"""``/v1/rollout`` on a real server on loopback, with API keys and real GGUF LoRA adapters loaded
into llama.cpp: the operator role is required, each step is applied to the router at once and
audited with the key's name, and a step that does not fit is an OpenAI-style 400."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from genesys.runtime.ab_router import AbRouter, Split
from genesys.runtime.settings import ApiKey, DeployConfig
from genesys.runtime.store import AdapterVersion, Store
from tests.conftest import LiveServer, start_live_server

USER_KEY = "user-key-0123456789abcdef"
OPERATOR_KEY = "operator-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
KEYS = [
    ApiKey(name="dev", role="user", key=USER_KEY),
    ApiKey(name="ops", role="operator", key=OPERATOR_KEY),
    ApiKey(name="root", role="admin", key=ADMIN_KEY),
]


def tiny_gguf_adapter(out_dir: Path, seed: int, *, strength: float = 0.01) -> Path:
    """A real peft LoRA (rank 4, one MLP projection of SmolLM2's first layer) and its GGUF export in
    ``out_dir``: loads into llama.cpp in a fraction of a second, without loading the base in torch."""
    import torch
    from safetensors.torch import save_file

    from genesys.tools.gguf_lora import export_lora_to_gguf

    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    module = "base_model.model.model.layers.0.mlp.down_proj"
    tensors = {
        f"{module}.lora_A.weight": torch.randn((4, 1536), generator=generator) / 1536**0.5,
        f"{module}.lora_B.weight": torch.randn((576, 4), generator=generator) * strength,
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out_dir / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["down_proj"], "bias": "none"}
    (out_dir / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    return export_lora_to_gguf(out_dir, out_dir / "adapter.gguf")


@pytest.fixture(scope="session")
def tiny_adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-adapters")
    return {name: tiny_gguf_adapter(root / name, seed).parent for seed, name in enumerate(("r1", "r2", "r3"))}


def register(store: Store, version: str, path: Path | str, *, state: str = "validated") -> None:
    registry = store.adapters
    registry.register(
        AdapterVersion(version=version, path=str(path), base_model="embedded"),
        actor="trainer",
        reason="trained",
    )
    if state != "candidate":
        registry.transition(version, "validated", actor="validator", reason="passed the gates")
    if state == "production":
        registry.promote(version, actor="deploy", reason="first production version")


def rollout_server(
    settings: Any, engine: Any, adapters: dict[str, Path], *, approval: str = "operator"
) -> Iterator[LiveServer]:
    """A keyed server whose registry has r1 in production, r2 validated and r3 only a candidate; the
    controller's own loop is idle (a tick an hour), so every change here comes from a request."""
    settings.auth.keys = KEYS
    settings.deploy = DeployConfig(approval=approval, tick_seconds=3600, drain_seconds=0)  # type: ignore[arg-type]
    store = Store(settings.database_url)
    register(store, "r1", adapters["r1"], state="production")
    register(store, "r2", adapters["r2"])
    register(store, "r3", adapters["r3"], state="candidate")
    store.close()
    try:
        yield from start_live_server(settings, engine)
    finally:
        for version in ("r1", "r2", "r3"):
            engine.unload_adapter(version)


@pytest.fixture()
def server(settings: Any, llama_engine: Any, tiny_adapters: dict[str, Path]) -> Iterator[LiveServer]:
    yield from rollout_server(settings, llama_engine, tiny_adapters)


def call(
    server: LiveServer, method: str, path: str, key: str | None = OPERATOR_KEY, **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, f"{server.base_url}{path}", headers=headers, timeout=60, **kwargs)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def test_the_rollout_needs_the_operator_role(server: LiveServer) -> None:
    assert error_of(call(server, "GET", "/v1/rollout", key=None), 401)["type"] == "authentication_error"
    assert error_of(call(server, "GET", "/v1/rollout", key="wrong-key-0123456789abcdef"), 401)
    forbidden = error_of(
        call(server, "POST", "/v1/rollout/start", key=USER_KEY, json={"candidate": "r2"}), 403
    )
    assert forbidden["message"] == "this needs the 'operator' role; your key has 'user'"
    assert error_of(call(server, "POST", "/v1/rollout/rollback", key=USER_KEY), 403)
    status = call(server, "GET", "/v1/rollout")
    assert status.status_code == 200
    assert status.json()["production"] == "r1" and status.json()["rollout"] is None
    # An admin may do what an operator may.
    started = call(server, "POST", "/v1/rollout/start", key=ADMIN_KEY, json={"candidate": "r2"})
    assert started.status_code == 200 and started.json()["rollout"]["created_by"] == "root"


def test_an_operator_steers_a_rollout_and_the_router_follows(server: LiveServer) -> None:
    services = server.services
    assert services.router.split == Split("r1")
    started = call(server, "POST", "/v1/rollout/start", json={"candidate": "r2", "reason": "7 points better"})
    assert started.status_code == 200, started.text
    assert started.json()["rollout"]["state"] == "awaiting_approval"
    assert services.router.split == Split("r1")  # nothing serves r2 before approval

    approved = call(server, "POST", "/v1/rollout/approve", json={"reason": "go"}).json()
    assert (approved["rollout"]["state"], approved["rollout"]["traffic"]) == ("running", 0.2)
    assert services.router.split == Split("r1", "r2", 0.2)
    assert "r2" in services.host.engine.info().adapters
    metrics = call(server, "GET", "/metrics", key=ADMIN_KEY).text
    assert 'genesys_ab_traffic_share{arm="candidate",model_version="r2"} 0.2' in metrics

    assert call(server, "POST", "/v1/rollout/hold").json()["rollout"]["state"] == "held"
    assert call(server, "POST", "/v1/rollout/resume").json()["rollout"]["state"] == "running"
    rolled = call(server, "POST", "/v1/rollout/rollback", json={"reason": "odd answers"}).json()
    assert rolled["rollout"]["state"] == "rolled_back" and rolled["rollout"]["outcome"] == "odd answers"
    assert services.router.split == Split("r1")
    assert "r2" not in services.host.engine.info().adapters  # drained (drain_seconds 0) and unloaded

    events = call(server, "GET", "/v1/rollout").json()["events"]
    assert [(e["action"], e["actor"]) for e in events] == [
        ("start", "ops"),
        ("approve", "ops"),
        ("hold", "ops"),
        ("resume", "ops"),
        ("rollback", "ops"),
    ]
    assert events[0]["reason"] == "7 points better" and events[1]["reason"] == "go"


def test_steps_that_do_not_fit_are_openai_errors(server: LiveServer) -> None:
    nothing = error_of(call(server, "POST", "/v1/rollout/approve"), 400)
    assert nothing["message"] == "no rollout is waiting for approval, so there is nothing to approve"
    assert nothing["code"] == "nothing_waiting"
    assert error_of(call(server, "POST", "/v1/rollout/hold"), 400)["code"] == "no_rollout"
    unvalidated = error_of(call(server, "POST", "/v1/rollout/start", json={"candidate": "r3"}), 400)
    assert unvalidated["code"] == "not_validated" and unvalidated["param"] == "candidate"
    assert "r3 is candidate, not validated" in unvalidated["message"]
    assert (
        error_of(call(server, "POST", "/v1/rollout/start", json={"candidate": "r404"}), 404)["param"]
        == "version"
    )
    missing = error_of(call(server, "POST", "/v1/rollout/start", json={}), 400)
    assert missing["message"] == "you must provide 'candidate'"
    wrong = error_of(call(server, "POST", "/v1/rollout/start", json={"candidate": 5}), 400)
    assert wrong["param"] == "candidate" and wrong["code"] == "invalid_value"
    call(server, "POST", "/v1/rollout/start", json={"candidate": "r2"})
    busy = error_of(call(server, "POST", "/v1/rollout/resume"), 400)
    assert "is awaiting_approval; 'resume' needs it held" in busy["message"]
    assert server.services.router.split == Split("r1")


def test_a_rollout_in_progress_survives_a_restart(
    settings: Any, llama_engine: Any, tiny_adapters: dict[str, Path]
) -> None:
    for first in rollout_server(settings, llama_engine, tiny_adapters, approval="auto"):
        assert call(first, "POST", "/v1/rollout/start", json={"candidate": "r2"}).status_code == 200
        assert first.services.router.split == Split("r1", "r2", 0.2)
    llama_engine.unload_adapter("r2")
    for second in start_live_server(settings, llama_engine):
        assert second.services.router.split == Split("r1", "r2", 0.2)
        assert "r2" in llama_engine.info().adapters
    for version in ("r1", "r2"):
        llama_engine.unload_adapter(version)


@pytest.mark.slow
def test_hot_swap_fails_no_request_and_keeps_users_on_their_arm(
    settings: Any, llama_engine: Any, tmp_path_factory: pytest.TempPathFactory, tiny_adapters: dict[str, Path]
) -> None:
    """Requests flow from a thread while the rollout goes 20% -> 50% -> 100% and is rolled back:
    none fails, and while a split holds every user gets the arm the router's hash gives them."""
    from tests.support.adapters import random_adapter

    candidate_dir = settings.data_dir / "adapters" / "h1"
    random_adapter(tmp_path_factory.mktemp("cache"), candidate_dir, seed=11, strength=0.12)
    settings.deploy = DeployConfig(tick_seconds=3600, drain_seconds=0.5)
    store = Store(settings.database_url)
    register(store, "p1", tiny_adapters["r1"], state="production")
    register(store, "h1", candidate_dir)
    store.close()

    # Users whose bucket puts them on the candidate at 20%, from 50%, and only at 100%.
    def bucket_of(user: str) -> float:
        for share in (0.2, 0.5):
            if AbRouter(Split("p1", "h1", share)).route(user=user, conversation_id="-").arm == "candidate":
                return share
        return 1.0

    pool = [f"user-{i}" for i in range(200)]
    users = [u for u in pool if bucket_of(u) == 0.2][:2] + [u for u in pool if bucket_of(u) == 0.5][:2]
    users += [u for u in pool if bucket_of(u) == 1.0][:2]
    results: list[tuple[int, int, str, int, str]] = []  # phase before, phase after, user, status, version
    failures: list[str] = []
    phase = [0]
    stop = threading.Event()

    def traffic(base_url: str) -> None:
        with httpx.Client(timeout=120) as client:
            for user in itertools.cycle(users):
                if stop.is_set():
                    return
                before = phase[0]
                body = {
                    "model": "genesys-local",
                    "user": user,
                    "messages": [{"role": "user", "content": "Say hi."}],
                    "max_tokens": 2,
                    "temperature": 0,
                }
                try:
                    response = client.post(f"{base_url}/v1/chat/completions", json=body)
                except httpx.HTTPError as exc:
                    failures.append(f"{user}: {exc!r}")
                    continue
                if response.status_code != 200:
                    failures.append(f"{user}: {response.status_code} {response.text[:200]}")
                version = response.headers.get("X-Genesys-Model-Version", "?")
                results.append((before, phase[0], user, response.status_code, version))

    def switch(step: Callable[[], object]) -> None:
        phase[0] += 1  # odd: a switch is under way
        step()
        phase[0] += 1
        # Let every user ask at least twice under the new split.
        seen = len(results)
        deadline = time.monotonic() + 120
        while len(results) < seen + 2 * len(users) + 1 and time.monotonic() < deadline:
            time.sleep(0.1)

    servers = start_live_server(settings, llama_engine)
    try:
        server = next(servers)
        services = server.services
        controller = services.controller
        assert controller is not None and services.router.split == Split("p1")
        worker = threading.Thread(target=traffic, args=(server.base_url,), daemon=True)
        worker.start()
        switch(lambda: None)
        switch(lambda: call(server, "POST", "/v1/rollout/start", key=None, json={"candidate": "h1"}))
        assert services.router.split == Split("p1", "h1", 0.2)
        rollout = services.store.rollouts.active()
        assert rollout is not None and rollout.started_at is not None
        for stage, share in ((1, 0.5), (2, 1.0)):
            later = rollout.started_at + timedelta(hours=8 * stage, seconds=1)
            switch(lambda at=later: controller.run_once(now=at))  # type: ignore[misc]
            assert services.router.split == Split("p1", "h1", share)
        switch(lambda: call(server, "POST", "/v1/rollout/rollback", key=None, json={"reason": "drill"}))
        assert services.router.split == Split("p1")
        stop.set()
        worker.join(timeout=120)
        deadline = time.monotonic() + 10
        while "h1" in llama_engine.info().adapters and time.monotonic() < deadline:
            time.sleep(0.1)  # the controller's loop unloads it once drained
        assert "h1" not in llama_engine.info().adapters and "p1" in llama_engine.info().adapters
        errors = [i for i in services.store.interactions.list(limit=10_000) if i.status != "completed"]
    finally:
        stop.set()
        servers.close()
        for version in ("p1", "h1"):
            llama_engine.unload_adapter(version)

    assert failures == [] and errors == []
    splits = {
        2: Split("p1"),
        4: Split("p1", "h1", 0.2),
        6: Split("p1", "h1", 0.5),
        8: Split("p1", "h1", 1.0),
        10: Split("p1"),
    }
    stable = [r for r in results if r[0] == r[1] and r[0] % 2 == 0]
    for phase_id, split in splits.items():
        served = [(user, version) for before, _, user, _, version in stable if before == phase_id]
        assert {user for user, _ in served} == set(users), f"phase {phase_id}: {served}"
        for user, version in served:
            expected = AbRouter(split).route(user=user, conversation_id="-").model_version
            assert version == expected, f"phase {phase_id}: {user} got {version}, not {expected}"
    # Every user moved to the candidate exactly at their stage and back on the rollback.
    assert {v for _, _, _, _, v in stable} == {"p1", "h1"}
