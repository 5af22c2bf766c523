"""``genesys rollout ...`` against a real server on loopback: the commands steer the rollout, print
a readable status (or JSON), and any error is one line on stderr with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genesys.runtime.ab_router import Split
from tests.api.test_rollout_api import OPERATOR_KEY, USER_KEY, rollout_server, tiny_adapters
from tests.conftest import LiveServer

REPO = Path(__file__).resolve().parents[1]
__all__ = ["tiny_adapters"]  # the session fixture, shared with the API tests


def genesys(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("GENESYS_")}
    child.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "genesys.cli", *args],
        capture_output=True,
        text=True,
        env=child,
        cwd=REPO,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("genesys: error: "), result.stderr
    return lines[0]


@pytest.fixture()
def server(settings: Any, llama_engine: Any, tiny_adapters: dict[str, Path]) -> Iterator[LiveServer]:
    yield from rollout_server(settings, llama_engine, tiny_adapters)


def test_operators_steer_a_rollout_from_the_shell(server: LiveServer) -> None:
    at = ["--server", server.base_url]
    key = {"GENESYS_API_KEY": OPERATOR_KEY}
    status = genesys("rollout", "status", *at, env=key)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[:2] == [
        "no rollout yet; r1 serves everyone",
        "production: r1   backup: none",
    ]

    started = genesys("rollout", "start", "r2", *at, "--reason", "7 points better", "--api-key", OPERATOR_KEY)
    assert started.returncode == 0, started.stderr
    assert "waits for an operator's approval" in started.stdout
    approved = genesys("rollout", "approve", *at, "-r", "go", "--json", env=key)
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["rollout"]["traffic"] == 0.2
    assert server.services.router.split == Split("r1", "r2", 0.2)

    for command, state in (("hold", "held"), ("resume", "running")):
        result = genesys("rollout", command, *at, env=key)
        assert result.returncode == 0 and f"{state}, traffic 20%" in result.stdout, (
            result.stdout + result.stderr
        )
    rolled = genesys("rollout", "rollback", *at, "-r", "odd answers", env=key)
    assert rolled.returncode == 0 and "rolled back: odd answers; r1 in production" in rolled.stdout
    assert server.services.router.split == Split("r1")
    trail = genesys("rollout", "status", *at, env=key).stdout
    for action in ("start", "approve", "hold", "resume", "rollback"):
        assert f"  {action:<8} " in trail and "by ops:" in trail


def test_errors_are_one_line(server: LiveServer) -> None:
    at = ["--server", server.base_url]
    key = {"GENESYS_API_KEY": OPERATOR_KEY}
    nothing = one_line_error(genesys("rollout", "approve", *at, env=key))
    assert (
        nothing == "genesys: error: 400: no rollout is waiting for approval, so there is nothing to approve"
    )
    assert "r3 is candidate, not validated" in one_line_error(genesys("rollout", "start", "r3", *at, env=key))
    assert "401: You didn't provide an API key" in one_line_error(genesys("rollout", "status", *at))
    forbidden = one_line_error(genesys("rollout", "rollback", *at, "--api-key", USER_KEY))
    assert forbidden == "genesys: error: 403: this needs the 'operator' role; your key has 'user'"
    gone = one_line_error(genesys("rollout", "status", "--server", "http://127.0.0.1:9", env=key))
    assert "cannot reach the Genesys server at http://127.0.0.1:9" in gone


def test_the_client_key_in_the_environment_does_not_upset_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """``GENESYS_API_KEY`` is often exported in the shell that also runs ``genesys serve``."""
    from genesys.runtime.settings import load_settings

    for var in list(os.environ):
        if var.startswith("GENESYS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("GENESYS_API_KEY", OPERATOR_KEY)
    assert load_settings().deploy.approval == "auto"
