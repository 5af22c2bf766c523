"""Two replicas: two `genesys serve` processes on loopback sharing one PostgreSQL database and one Chroma
server (both started for the test session). Both answer and log every interaction to the shared store;
exactly one holds the society's lease; when it is killed (SIGKILL), the other takes the lease over."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from genesys.agents.scheduler import SOCIETY_LEASE
from genesys.runtime.store import Store
from tests.support.server import RunningServer, started_server

LEASE_SECONDS = 2.0
TAKEOVER_BOUND_S = 60.0  # far above lease + renewal (about 3 s): a bound, not a timing


def society(server: RunningServer) -> dict[str, Any]:
    body = httpx.get(f"{server.base_url}/readyz", timeout=10, trust_env=False).json()
    return dict(body["society"])


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def chat(server: RunningServer, text: str) -> str:
    client = OpenAI(base_url=server.api_base, api_key="unused", timeout=120, max_retries=0)
    reply = client.chat.completions.create(
        model="genesys-local", max_tokens=8, messages=[{"role": "user", "content": text}]
    )
    assert reply.choices[0].message.content
    return reply.id


@pytest.mark.slow
def test_two_replicas_share_the_store_and_hand_over_the_society(
    tmp_path: Path, postgres_server: Any, chroma_server: Any, settings: Any
) -> None:
    database_url = postgres_server.create_database("replicas")
    chroma_server.clear()
    env = {
        "GENESYS_STORAGE__DATABASE_URL": database_url,
        "GENESYS_STORAGE__CHROMA_URL": chroma_server.url,
        "GENESYS_AUTOGEN_AGENTS__SCHEDULE": "true",  # both try to lead
        "GENESYS_AUTOGEN_AGENTS__LEASE_SECONDS": str(LEASE_SECONDS),
        "GENESYS_AUTOGEN_AGENTS__POLL_SECONDS": "0.5",
        # No cycle starts by itself here: the test is about who may run one.
        "GENESYS_AUTOGEN_AGENTS__DATA_ANALYST__TRIGGER_THRESHOLD": "100000",
    }
    with (
        started_server(tmp_path / "replica-a", env=env) as a,
        started_server(tmp_path / "replica-b", env=env) as b,
    ):
        replicas = {f"{socket.gethostname()}:{server.process.pid}": server for server in (a, b)}

        # Both answer, and both interactions land in the one shared store.
        ids = {chat(a, "Name a Python builtin."): a, chat(b, "Name a JavaScript keyword."): b}
        store = Store(database_url)
        for interaction_id in ids:
            stored = store.interactions.get(interaction_id)
            assert stored is not None and stored.status == "completed"
        for server in (a, b):  # and each logged its own request
            assert any(
                r["path"] == "/v1/chat/completions" and r["status"] == 200 for r in server.http_requests()
            )

        # Exactly one leads; the other stands by and names it.
        def settled() -> tuple[str, str] | None:
            roles = {name: society(server) for name, server in replicas.items()}
            leaders = [name for name, s in roles.items() if s["role"] == "leader"]
            if len(leaders) != 1:
                return None
            follower = next(name for name in replicas if name != leaders[0])
            return (leaders[0], follower) if roles[follower]["leader"] == leaders[0] else None

        leader, follower = wait_until(settled, TAKEOVER_BOUND_S, "one leader and one standby")
        assert society(replicas[follower])["role"] == "standby"
        lease = store.leases.get(SOCIETY_LEASE)
        assert lease is not None and lease.holder == leader

        # The leader dies without a word; the other takes the lease once it expires.
        assert replicas[leader].kill() == -9
        wait_until(lambda: society(replicas[follower])["role"] == "leader", TAKEOVER_BOUND_S, "the takeover")
        lease = store.leases.get(SOCIETY_LEASE)
        assert lease is not None and (lease.holder, lease.previous_holder) == (follower, leader)
        assert lease.term == 2
        survivor_answer = chat(replicas[follower], "Name a SQL keyword.")
        assert store.interactions.get(survivor_answer) is not None

    # The shared Chroma server indexes what every replica logged.
    from genesys.runtime.vectors import INTERACTIONS, VectorStore
    from genesys.tools.analysis import analyze_interactions

    vectors = VectorStore(url=chroma_server.url)
    summary = analyze_interactions(store, vectors, settings)
    assert summary.analyzed == 3
    indexed = vectors.collection(INTERACTIONS).get(ids=[*ids, survivor_answer])["ids"]
    assert sorted(indexed) == sorted([*ids, survivor_answer])
    store.close()
