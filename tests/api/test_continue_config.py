"""``configs/continue/config.yaml`` as shipped, with only its server address changed, in the Continue
CLI against the real server: the chat reaches Genesys and is stored, and the events of its ``data:``
block land in ``POST /v1/continue/events`` and link to that chat.

What ``cn -p`` does and does not send. The pinned CLI (npm ``@continuedev/cli`` 1.5.47, see
package-lock.json) reads and validates the ``data:`` block — its bundle carries config-yaml's
``dataSchema`` and the dev-data event schemas — but never posts an event: the bundle does not contain
Continue's ``core/data/log.ts`` (``DataLogger.logToOneDestination``), the code with which the VS Code
and JetBrains extensions send each event to every ``data:`` destination. The test asserts that cn
sent none, then sends what the extension's ``logToOneDestination`` sends for this chat, built from
the config's own ``data:`` entry: its destination, its ``schema``, ``level`` and ``events`` filter,
``Authorization: Bearer <apiKey>``, and a body ``{name, data, schema, level, profileId}`` whose
``data`` passes Continue's own zod schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.api.test_continue_cli import (
    SHIPPED_CONFIG,
    assert_answered_and_stored,
    interactions_for,
    require_cn,
    run_cn,
    user_text,
)
from tests.support.continue_events import (
    assert_valid_events,
    event_body,
    new_session_id,
    validate_events,
)
from tests.support.server import RunningServer, started_server

SHIPPED_SERVER = "http://127.0.0.1:8000"
EVENTS_PATH = "/v1/continue/events"


def config_for(server_url: str, path: Path) -> dict[str, Any]:
    """The shipped file with its server address (and nothing else) replaced, written to ``path``."""
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    assert SHIPPED_SERVER in text
    path.write_text(text.replace(SHIPPED_SERVER, server_url), encoding="utf-8")
    shipped, ours = yaml.safe_load(text), yaml.safe_load(path.read_text(encoding="utf-8"))
    assert ours["models"][0].pop("apiBase") == f"{server_url}/v1"
    assert ours["data"][0].pop("destination") == f"{server_url}{EVENTS_PATH}"
    del shipped["models"][0]["apiBase"], shipped["data"][0]["destination"]
    assert ours == shipped  # nothing else differs
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")))


def continue_prompt(messages: list[dict[str, Any]]) -> str:
    """The prompt Continue logs for a chat: ``<role>\\ncontent\\n\\n`` per message (content parts joined)."""
    return "".join(f"<{m['role']}>\n{user_text(m)}\n\n" for m in messages)


def log_to_destination(data_config: dict[str, Any], name: str, data: dict[str, Any]) -> httpx.Response | None:
    """What Continue's ``DataLogger.logToOneDestination`` does with one event and one ``data:`` entry:
    skip events the entry does not list, validate ``data`` with the schema of the entry's version and
    level, post it with the entry's key. None when the entry skips the event."""
    if name not in data_config.get("events", [name]):
        return None
    level = data_config.get("level", "all")
    body = event_body(name, data_config["schema"], level, **data)
    assert_valid_events([body])
    headers = {"Authorization": f"Bearer {data_config['apiKey']}"} if data_config.get("apiKey") else {}
    return httpx.post(data_config["destination"], json=body, headers=headers, timeout=30)


def events_sent_by_cn(server: RunningServer) -> list[dict[str, Any]]:
    return [r for r in server.http_requests() if r.get("path") == EVENTS_PATH]


@pytest.mark.slow
@pytest.mark.continue_cli
def test_the_shipped_config_chats_through_cn_and_its_data_destination_reaches_genesys(
    tmp_path: Path,
) -> None:
    cn = require_cn()
    prompt = "In one sentence, what does Python's built-in zip() do?"
    with started_server(tmp_path / "data") as server:
        config = config_for(server.base_url, tmp_path / "config.yaml")
        (data_config,) = config["data"]
        assert validate_events([data_config], data_config=True) == [{"ok": True}]

        run = run_cn(cn, tmp_path, server, prompt, tmp_path / "config.yaml")
        assert_answered_and_stored(run, prompt)  # chat, edit and autocomplete go to this model
        assert not events_sent_by_cn(server), (
            "cn now posts dev data itself: assert on its events instead of sending the extension's\n"
            + run.describe()
        )

        turns = interactions_for(server, prompt)
        assert "tools" in turns[0].context, "Continue's agent mode is expected to send its tools"
        assert turns[0].context.get("system_prompt"), "Continue's system prompt should be kept as context"
        chat = turns[-1]
        session = new_session_id()
        fields = {
            "sessionId": session,
            "prompt": continue_prompt(chat.request_messages),
            "completion": chat.answer,
            "modelName": config["models"][0]["model"],
            "modelTitle": config["models"][0]["name"],
        }
        interaction = log_to_destination(data_config, "chatInteraction", fields)
        thumbs = log_to_destination(data_config, "chatFeedback", {**fields, "feedback": False})
        skipped = log_to_destination(data_config, "toolUsage", {})
        assert skipped is None  # not among the entry's events: Continue would not send it

        for response in (interaction, thumbs):
            assert response is not None and response.status_code == 200, response and response.text
            receipt = response.json()
            assert receipt["interaction_id"] == chat.id, receipt  # linked to the chat cn had
        assert thumbs is not None and thumbs.json()["feedback"]["thumbs"] == "down"

        detail = httpx.get(f"{server.api_base}/interactions/{chat.id}", timeout=30).json()
        assert [e["name"] for e in detail["ide_events"]] == ["chatInteraction", "chatFeedback"]
        assert {(f["source"], f["thumbs"]) for f in detail["feedback"]} == {("continue", "down")}
        posted = [r for r in server.http_requests() if r.get("path") == EVENTS_PATH]
        assert [r["status"] for r in posted] == [200, 200]
