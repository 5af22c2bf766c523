"""kill -9 right after a reply completed: the interaction is in the store all the same."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from genesys.runtime.store import Store
from tests.support.server import started_server


@pytest.mark.slow
def test_a_completed_reply_survives_kill_9(tmp_path: Path) -> None:
    with started_server(tmp_path / "data") as server:
        seen: dict[str, str] = {}
        with httpx.Client(base_url=server.api_base, timeout=120) as client:
            for i in range(3):
                body = client.post(
                    "/chat/completions",
                    json={
                        "model": "genesys-local",
                        "max_tokens": 16,
                        "messages": [{"role": "user", "content": f"Name a Python builtin ({i})."}],
                    },
                ).json()
                seen[body["id"]] = body["choices"][0]["message"]["content"]
            # Stream one more and kill the server the moment its finishing chunk arrives,
            # before it even sends [DONE].
            request = {
                "model": "genesys-local",
                "max_tokens": 24,
                "stream": True,
                "messages": [{"role": "user", "content": "Write a haiku about SQLite."}],
            }
            with client.stream("POST", "/chat/completions", json=request) as response:
                text: list[str] = []
                for line in response.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    choice = chunk["choices"][0]
                    text.append(choice["delta"].get("content") or "")
                    if choice["finish_reason"] is not None:
                        assert server.kill() == -9
                        break
                seen[chunk["id"]] = "".join(text)
    store = Store(server.database_url).interactions
    for interaction_id, answer in seen.items():
        stored = store.get(interaction_id)
        assert stored is not None, f"{interaction_id} was lost"
        assert stored.answer == answer and stored.status == "completed"
    assert store.count() == 4
