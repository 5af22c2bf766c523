"""Small helpers for tests that talk to a live server: a real chat turn, waiting for a condition."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def chat(
    api: str,
    messages: list[dict[str, Any]],
    *,
    max_tokens: int = 24,
    stream: bool = False,
    headers: dict[str, str] | None = None,
) -> tuple[str, str]:
    """One real chat request against ``api`` (``.../v1``); returns (interaction id, answer text)."""
    body = {
        "model": "genesys-local",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    response = httpx.post(f"{api}/chat/completions", json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    if not stream:
        payload = response.json()
        return payload["id"], payload["choices"][0]["message"]["content"] or ""
    text: list[str] = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                text.append(choice["delta"].get("content") or "")
    return response.headers["x-genesys-interaction-id"], "".join(text)


def wait_for(probe: Callable[[], T | None], *, timeout_s: float = 15.0, what: str = "a condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)
